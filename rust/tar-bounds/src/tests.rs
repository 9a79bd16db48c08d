use super::*;

fn header(kind: u8, size: u64) -> [u8; BLOCK] {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..1].copy_from_slice(b"f");
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    *h.as_bytes()
}

fn ustar(kind: u8, size: u64) -> [u8; BLOCK] {
    let mut h = tar::Header::new_ustar();
    h.set_path("f").unwrap();
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    *h.as_bytes()
}

/// Writes a header's checksum again after a test changed its bytes.
fn reseal(h: &mut [u8; BLOCK]) {
    let sum = super::checksum(h);
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

#[test]
fn a_member_spans_its_data_padded_to_the_block() {
    let mut w = Walk::new();
    let m = w.header(&header(b'0', 1)).unwrap().unwrap();
    assert_eq!((m.data, m.pad, m.pax, m.span()), (1, 511, false, 512));
    let m = w.header(&header(b'0', 1024)).unwrap().unwrap();
    assert_eq!((m.data, m.pad), (1024, 0));
    let m = w.header(&header(b'5', 0)).unwrap().unwrap();
    assert_eq!(m.span(), 0);
}

#[test]
fn the_zero_block_ends_the_archive() {
    assert_eq!(Walk::new().header(&[0; BLOCK]), Ok(None));
}

#[test]
fn a_wrong_checksum_or_size_is_corrupt() {
    let mut h = header(b'0', 1);
    h[0] ^= 1;
    assert_eq!(Walk::new().header(&h), Err(Refusal::Checksum));
    let mut h = header(b'0', 1);
    h[124..136].copy_from_slice(b"zzzzzzzzzzz\0");
    reseal(&mut h);
    assert_eq!(Walk::new().header(&h), Err(Refusal::Size));
}

#[test]
fn long_names_and_pax_headers_are_bounded_at_their_limits() {
    for (kind, max) in [
        (b'L', MAX_NAME),
        (b'K', MAX_NAME),
        (b'x', MAX_PAX),
        (b'g', MAX_PAX),
    ] {
        assert!(
            Walk::new().header(&header(kind, max)).is_ok(),
            "{}",
            kind as char
        );
        let e = Walk::new().header(&header(kind, max + 1)).unwrap_err();
        assert!(
            matches!(e, Refusal::TooLong { size, .. } if size == max + 1),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.len() < 200 && text.contains(&format!("of {} bytes", max + 1)),
            "{text}"
        );
    }
}

#[test]
fn a_base_256_size_is_read_and_an_overflowing_one_refused() {
    let mut h = tar::Header::new_gnu();
    h.set_size(1 << 40); // past the 11 octal digits: base-256
    h.set_cksum();
    let m = Walk::new().header(h.as_bytes()).unwrap().unwrap();
    assert_eq!(m.data, 1 << 40);
    h.as_gnu_mut().unwrap().size = [
        0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    h.set_cksum();
    assert_eq!(Walk::new().header(h.as_bytes()), Err(Refusal::Overflow));
}

#[test]
fn sparse_members_are_refused() {
    assert_eq!(Walk::new().header(&header(b'S', 0)), Err(Refusal::Sparse));
}

#[test]
fn a_pax_size_applies_to_the_next_member_only() {
    let mut w = Walk::new();
    let pax = w.header(&ustar(b'x', 20)).unwrap().unwrap();
    assert!(pax.pax);
    w.pax_data(&pax_record("size", "4096"));
    // A GNU long name in between is an extension: it keeps its own size.
    let long = w.header(&ustar(b'L', 7)).unwrap().unwrap();
    assert_eq!(long.data, 7);
    let member = w.header(&ustar(b'0', 0)).unwrap().unwrap();
    assert_eq!((member.data, member.pad), (4096, 0));
    let next = w.header(&ustar(b'0', 3)).unwrap().unwrap();
    assert_eq!(next.data, 3);
}

#[test]
fn a_global_pax_header_sets_no_size_and_an_unrecognised_magic_no_pax() {
    let mut w = Walk::new();
    assert!(!w.header(&ustar(b'g', 20)).unwrap().unwrap().pax);
    let mut old = header(b'x', 20);
    old[257..265].copy_from_slice(&[0; 8]);
    reseal(&mut old);
    assert!(!w.header(&old).unwrap().unwrap().pax);
}

#[test]
fn malformed_pax_records_set_nothing() {
    for data in [&b"5 size=1\n"[..], b"x size=1\n", b"11 size\n", b"\n", b""] {
        let mut w = Walk::new();
        w.header(&ustar(b'x', data.len() as u64)).unwrap();
        w.pax_data(data);
        assert_eq!(
            w.header(&ustar(b'0', 1)).unwrap().unwrap().data,
            1,
            "{data:?}"
        );
    }
}

fn archive() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "a".repeat(300), &b"hello"[..])
        .unwrap(); // a GNU long name
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut h, "d/", &[][..]).unwrap();
    b.into_inner().unwrap()
}

/// Reads `r` in reads of `chunk` bytes.
fn read_all(mut r: impl Read, chunk: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0; chunk];
    loop {
        match r.read(&mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn a_sound_archive_passes_through_unchanged_in_any_read_size() {
    let tar = archive();
    for chunk in [1, 7, 512, 513, 4096, 1 << 20] {
        assert_eq!(
            read_all(Bounded::new(&tar[..]), chunk).unwrap(),
            tar,
            "{chunk}"
        );
    }
}

#[test]
fn a_refused_header_fails_the_read_before_its_bytes_and_every_read_after() {
    let mut tar = archive();
    tar.truncate(tar.len() - 1024);
    let member_end = tar.len();
    tar.extend_from_slice(&header(b'L', 1 << 30));
    for chunk in [1, 100, 512, 4096] {
        let mut r = Bounded::new(&tar[..]);
        let mut got = Vec::new();
        let mut buf = vec![0; chunk];
        let err = loop {
            match r.read(&mut buf) {
                Ok(0) => panic!("no refusal"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        // At most the refused header itself (a header split over reads is
        // handed out as it comes), never a byte of the record it announces.
        assert!(
            got.len() < member_end + BLOCK,
            "{chunk}: {} bytes",
            got.len()
        );
        assert_eq!(got[..member_end], tar[..member_end], "{chunk}");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("of 1073741824 bytes"), "{err}");
        assert_eq!(r.read(&mut buf).unwrap_err().to_string(), err.to_string());
    }
}

#[test]
fn the_tar_crate_reads_through_the_bound() {
    let tar = archive();
    let mut a = tar::Archive::new(Bounded::new(&tar[..]));
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["a".repeat(300), "d/".to_owned()]);
}
