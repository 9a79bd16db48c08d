//! docker-spec's value parsers one by one (durations, memory sizes, cpus,
//! ports, binds, devices, restart policies, image references, names): the
//! first byte picks the parser, the rest is the value. Errors are checked as
//! they reach the log: inside the crate's error, which names where.
#![no_main]

use composable_fuzz::check_error;
use docker_spec::container::*;
use docker_spec::{ImageRef, Path, SpecError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let result: Result<(), String> = match pick % 14 {
        0 => parse_go_duration(text).map(drop),
        1 => parse_memory(text).map(|b| assert!(b > 0)),
        2 => parse_cpus(text).map(|n| assert!(n > 0, "cpus {text:?} gave 0 nano CPUs")),
        3 => parse_port(text).map(drop),
        4 => parse_bind(text).map(drop),
        5 => parse_device(text).map(drop),
        6 => parse_restart(text).map(drop),
        7 => check_network_mode(text),
        8 => check_capability(text),
        9 => ImageRef::parse(text).map(drop),
        10 => check_container_name(text),
        11 => check_label(text),
        12 => check_env_key(text),
        _ => check_absolute("path", text),
    };
    if let Err(e) = result {
        let at = Path::root().key("docker-stack").key("value");
        check_error("value", &SpecError::invalid(&at, e));
    }
});
