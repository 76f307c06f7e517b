//! The CIFAR-10 record reader on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let path = std::path::Path::new("fuzz.bin");
    let ok = bregman_data::cifar::parse_cifar_records(data, path, &mut images, &mut labels);
    match ok {
        Ok(()) => {
            assert_eq!(images.len(), labels.len() * 3072);
            assert!(labels.iter().all(|&l| l < 10));
        }
        Err(_) => assert!(images.is_empty() && labels.is_empty()),
    }
});
