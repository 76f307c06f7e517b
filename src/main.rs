//! The `bregman` command-line tool.

fn main() {
    bregman::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("--help") | Some("-h") | Some("help") => print_help(),
        Some("--version") | Some("-V") => println!("bregman {}", env!("CARGO_PKG_VERSION")),
        Some(other) => {
            eprintln!("error: unknown or not yet available subcommand '{other}'");
            print_help();
            std::process::exit(2);
        }
    }
}

fn print_help() {
    println!(
        "bregman {}\nSparse neural networks trained with Bregman iterations.\n\n\
         Subcommands (in progress): train, eval, export, inspect\n\
         Options: --help, --version",
        env!("CARGO_PKG_VERSION")
    );
}
