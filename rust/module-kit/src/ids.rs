//! Ids no other install shares: a token per Download or install, so that a
//! tree or a container set can be told apart from an earlier one of an
//! artifact with the same name.

use std::io::Read;

/// `bytes` random bytes as lower-case hex, from the kernel's generator; the
/// clock and the process id where /dev/urandom cannot be read (very early in
/// boot on some systems).
pub fn new_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if random.is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mixed = (now.as_nanos() ^ ((std::process::id() as u128) << 64)).to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = mixed[i % mixed.len()].wrapping_add(i as u8);
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_hex_of_the_asked_length_and_differ() {
        let a = super::new_id(16);
        let b = super::new_id(16);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(super::new_id(5).len(), 10);
    }
}
