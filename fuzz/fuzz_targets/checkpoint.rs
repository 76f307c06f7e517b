//! The checkpoint loader on arbitrary bytes: safetensors header, metadata
//! (format tag, TOML config, JSON state), tensors, and restoring them into
//! the model the config names (not ResNet-18, whose 11M weights would make
//! every execution slow).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.safetensors");
    let Ok(ck) = bregman_train::checkpoint::from_bytes(data, path) else {
        return;
    };
    if ck.config.experiment == "cifar-resnet18" || ck.config.validate().is_err() {
        return;
    }
    if let Ok(mut model) = bregman_train::build_model(&ck.config) {
        let _ = ck.restore_model(&mut model, path);
    }
});
