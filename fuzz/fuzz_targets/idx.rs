//! The IDX reader on arbitrary bytes, raw or gzip (a file starting with the
//! gzip magic `1f 8b` takes the bounded-inflate path).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.idx");
    if let Ok(a) = bregman_data::idx::decode_idx(data, path) {
        // A parsed array always has the bytes its header declares.
        assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
    }
});
