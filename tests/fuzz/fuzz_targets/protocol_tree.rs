//! The Update Module protocol crate reading the file tree the client
//! prepares: the format version, the header files (JSON parsed as JSON), the
//! current artifact and a `stream-next` line naming a payload.
#![no_main]

use std::fs;
use std::io;

use composable_fuzz::{check_error, parts, Scratch};
use libfuzzer_sys::fuzz_target;
use mender_module_protocol::{FileTree, Payloads};

const FILES: &[&str] = &[
    "version",
    "header/artifact_name",
    "header/artifact_group",
    "header/payload_type",
    "header/header-info",
    "header/type-info",
    "header/meta-data",
    "current_artifact_name",
    "stream-next",
    "streams/p",
];

fuzz_target!(|data: &[u8]| {
    let scratch = Scratch::new("protocol_tree");
    let root = scratch.path();
    fs::create_dir_all(root.join("header")).unwrap();
    fs::create_dir_all(root.join("streams")).unwrap();
    for (name, content) in FILES.iter().zip(parts(data, FILES.len())) {
        fs::write(root.join(name), content).unwrap();
    }
    let tree = FileTree::new(root);
    for result in [
        tree.version().map(drop),
        tree.require_v3(),
        tree.header().map(drop),
        tree.meta_data().map(drop),
        tree.artifact_name().map(drop),
        tree.current_artifact_name().map(drop),
    ] {
        if let Err(e) = result {
            check_error("tree", &e);
        }
    }
    for with_sizes in [false, true] {
        let mut payloads = Payloads::streamed(&tree, with_sizes);
        match payloads.next_payload() {
            Ok(Some(mut payload)) => {
                io::copy(&mut payload, &mut io::sink()).unwrap();
            }
            Ok(None) => {}
            Err(e) => check_error("stream-next", &e),
        }
    }
});
