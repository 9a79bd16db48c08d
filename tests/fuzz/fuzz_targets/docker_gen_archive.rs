//! docker-artifact-gen's readers of `docker save` archives and tarred OCI
//! layouts. What they accept is written as a payload, and the device's
//! filter (docker-module's TagStripper) must take that payload.
#![no_main]

use std::io;

use composable_fuzz::archive::{Archive, Kind};
use composable_fuzz::{check_anyhow, check_error, Scratch};
use docker_module::archive::TagStripper;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, tar)) = data.split_first() else {
        return;
    };
    let kind = if flags & 1 == 0 {
        Kind::Docker
    } else {
        Kind::Oci
    };
    let scratch = Scratch::new("docker_gen_archive");
    let src = scratch.path().join("in.tar");
    std::fs::write(&src, tar).unwrap();
    let read = if flags & 2 == 0 {
        Archive::read(&src, kind)
    } else {
        Archive::read_one(&src, kind)
    };
    let archive = match read {
        Ok(archive) => archive,
        Err(e) => return check_anyhow("read", &e),
    };
    let dest = scratch.path().join("payload.tar");
    if let Err(e) = archive.write_to(&dest, 0) {
        return check_anyhow("write", &e);
    }
    let payload = std::fs::read(&dest).unwrap();
    let mut filter = TagStripper::new(&payload[..], Some(payload.len() as u64));
    if let Err(e) = io::copy(&mut filter, &mut io::sink()) {
        check_error("device filter", &e);
        panic!("the device refuses the payload the generator wrote");
    }
});
