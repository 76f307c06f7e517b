//! The config loader (`--config FILE.toml`) on arbitrary text: merged over a
//! preset, then validated, as `train` does.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz.toml");
    let Ok(base) = bregman_train::TrainConfig::preset("mnist-mlp", None) else {
        return;
    };
    if let Ok(cfg) = base.merge_toml(text, path) {
        let _ = cfg.validate();
        // What validates must survive a round trip through config.toml.
        if cfg.validate().is_ok() {
            let again = base.merge_toml(&cfg.to_toml(), path).expect("round trip");
            assert_eq!(again, cfg);
        }
    }
});
