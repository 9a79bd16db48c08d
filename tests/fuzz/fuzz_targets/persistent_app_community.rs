//! persistent-app's community format: the `dest_dir` payload naming the
//! destination, then flat payload files (`NAME\nCONTENT`, parts split by two
//! NUL bytes) added beside one another in the staging directory.
#![no_main]

use composable_fuzz::{check_error, parts, Scratch};
use libfuzzer_sys::fuzz_target;
use module_kit::fs::Dir;
use persistent_app::archive::{Durability, Expect, Extractor};
use persistent_app_format::spec::{community_name, parse_community_dest};

fuzz_target!(|data: &[u8]| {
    let all = parts(data, 9);
    let (dest, files) = all.split_first().unwrap();
    match parse_community_dest(dest) {
        Ok(dest) => {
            let name = community_name(&dest);
            assert!(!name.is_empty() && !name.contains('/'), "{dest:?}");
        }
        Err(e) => check_error("dest_dir", &e),
    }
    let scratch = Scratch::new("persistent_app_community");
    let root = Dir::open(scratch.path()).unwrap();
    let mut extractor = Extractor::new(root, Expect::default(), Durability::SyncFs);
    for (i, file) in files.iter().enumerate() {
        let (name, mut content) = match file.iter().position(|&b| b == b'\n') {
            Some(at) => (&file[..at], &file[at + 1..]),
            None => (&file[..], &b""[..]),
        };
        let name = String::from_utf8_lossy(name);
        let size = (i % 2 == 0).then_some(content.len() as u64);
        if let Err(e) = extractor.add_file(&name, &mut content, size) {
            check_error("add_file", &e);
            return;
        }
    }
    if let Err(e) = extractor.finish() {
        check_error("finish", &e);
    }
});
