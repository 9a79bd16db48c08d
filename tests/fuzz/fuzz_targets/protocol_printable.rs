//! The protocol crate's log-line escaping: whatever the text (artifact
//! names, paths, engine messages), the line is printable and at most `max`
//! bytes; text that needs neither comes back unchanged.
#![no_main]

use composable_fuzz::check_line;
use libfuzzer_sys::fuzz_target;
use mender_module_protocol::{one_line, printable, MAX_LINE};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = usize::from(u16::from_le_bytes([data[0], data[1]])) % (2 * MAX_LINE);
    let text = String::from_utf8_lossy(&data[2..]);
    let out = printable(&text, max);
    assert!(out.len() <= max, "{} bytes for max {max}", out.len());
    assert!(!out.chars().any(char::is_control), "{out:?}");
    if text.len() <= max && !text.chars().any(char::is_control) {
        assert_eq!(out, text);
    }
    let full = printable(&text, MAX_LINE);
    if !full.is_empty() {
        check_line("printable", &full);
    }
    let err = std::io::Error::other(text.into_owned());
    let line = printable(&one_line(&err), MAX_LINE);
    if !line.is_empty() {
        check_line("one_line", &line);
    }
});
