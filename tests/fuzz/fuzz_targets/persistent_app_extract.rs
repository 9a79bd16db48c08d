//! persistent-app's extractor: one tar payload, bounded at its headers
//! (archive/bounds.rs) and unpacked into a fresh staging directory, with the
//! counts the meta-data announces taken from the first 2 bytes.
#![no_main]

use composable_fuzz::{check_error, Scratch};
use libfuzzer_sys::fuzz_target;
use module_kit::fs::Dir;
use persistent_app::archive::{Durability, Expect, Extractor};

fuzz_target!(|data: &[u8]| {
    let Some((&[entries, bytes], tar)) = data.split_first_chunk::<2>() else {
        return;
    };
    let expect = if entries == 0 {
        Expect::default()
    } else {
        Expect {
            entries: Some(u64::from(entries)),
            bytes: Some(u64::from(bytes) << 4),
        }
    };
    let scratch = Scratch::new("persistent_app_extract");
    let root = Dir::open(scratch.path()).unwrap();
    let mut extractor = Extractor::new(root, expect, Durability::SyncFs);
    if let Err(e) = extractor.extract_tar(tar) {
        check_error("extract", &e);
        return;
    }
    if let Err(e) = extractor.finish() {
        check_error("finish", &e);
    }
});
