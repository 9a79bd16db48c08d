//! The docker module's inline archive filter (`TagStripper`), which reads
//! the tar from the client's stream and hands the engine the same tar
//! without tags. The first byte says whether a payload length is declared.
#![no_main]

use std::io;

use composable_fuzz::check_error;
use docker_module::archive::TagStripper;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, tar)) = data.split_first() else {
        return;
    };
    let declared = match flags % 3 {
        0 => None,
        1 => Some(tar.len() as u64),
        _ => Some(tar.len() as u64 / 2),
    };
    let mut filter = TagStripper::new(tar, declared);
    let mut out = Vec::new();
    match io::copy(&mut filter, &mut out) {
        Ok(_) => {
            let summary = filter.summary().clone();
            assert_eq!(summary.bytes, tar.len() as u64);
            // What passed holds no tags any more: filtering it again
            // changes nothing.
            let mut again = TagStripper::new(&out[..], None);
            let mut twice = Vec::new();
            if io::copy(&mut again, &mut twice).is_ok() {
                assert_eq!(twice, out, "a second pass changed the filtered archive");
            }
        }
        Err(e) => check_error("filter", &e),
    }
});
