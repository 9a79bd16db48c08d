use std::io::{Cursor, Read};

use super::*;

const CONFIG_HEX: &str = "9a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728e1";

/// A tar shaped like `docker save`'s: layer, layer json, config, manifest
/// with tags, repositories.
fn docker_save_archive(layer_len: usize, long_name: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    };
    let layer: Vec<u8> = (0..layer_len).map(|i| (i * 7 % 251) as u8).collect();
    add(&mut b, "0123abcd/layer.tar", &layer);
    add(&mut b, "0123abcd/json", b"{}");
    if long_name {
        let deep = format!("{}/file", "d".repeat(150));
        add(&mut b, &deep, b"long");
    }
    add(&mut b, &format!("{CONFIG_HEX}.json"), b"{\"config\":{}}");
    let manifest = format!(
        r#"[{{"Config":"{CONFIG_HEX}.json","RepoTags":["demo/web:1.0"],"Layers":["0123abcd/layer.tar"]}}]"#
    );
    add(&mut b, "manifest.json", manifest.as_bytes());
    add(
        &mut b,
        "repositories",
        br#"{"demo/web":{"1.0":"0123abcd"}}"#,
    );
    b.into_inner().unwrap()
}

fn filter_all(input: &[u8], declared: Option<u64>, chunk: usize) -> io::Result<(Vec<u8>, Summary)> {
    let mut f = TagStripper::new(Cursor::new(input.to_vec()), declared);
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok((out, f.summary().clone()))
}

fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(Cursor::new(archive));
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

#[test]
fn tags_and_repositories_are_dropped_and_everything_else_passes_unchanged() {
    let input = docker_save_archive(300_000, true);
    for chunk in [1, 511, 512, 4096, 1 << 20] {
        let (out, summary) = filter_all(&input, Some(input.len() as u64), chunk).unwrap();
        assert_eq!(summary.bytes, input.len() as u64);
        assert_eq!(summary.configs, vec![format!("{CONFIG_HEX}.json")]);
        let before = entries(&input);
        let after = entries(&out);
        let names: Vec<&str> = after.iter().map(|(n, _)| n.as_str()).collect();
        assert!(!names.contains(&"repositories"), "{names:?}");
        for (name, data) in &before {
            if name == "repositories" {
                continue;
            }
            let (_, got) = after.iter().find(|(n, _)| n == name).expect(name);
            if name == "manifest.json" {
                let m: Value = serde_json::from_slice(got).unwrap();
                assert!(m[0].get("RepoTags").is_none(), "{m}");
                assert_eq!(m[0]["Layers"][0], "0123abcd/layer.tar");
            } else {
                assert_eq!(got, data, "{name} passes unchanged (chunk {chunk})");
            }
        }
    }
}

#[test]
fn an_archive_cut_anywhere_is_refused_as_truncated() {
    let input = docker_save_archive(5_000, false);
    // Every block boundary and points inside blocks, up to the last byte of
    // the end marker.
    let mut cuts: Vec<usize> = (0..input.len()).step_by(512).collect();
    cuts.extend((100..input.len()).step_by(997));
    cuts.push(input.len() - 1);
    for cut in cuts {
        let e = filter_all(&input[..cut], None, 4096).unwrap_err();
        assert!(e.to_string().contains("truncated"), "cut at {cut}: {e}");
    }
}

#[test]
fn a_length_other_than_the_stated_one_is_refused() {
    let input = docker_save_archive(5_000, false);
    let len = input.len() as u64;
    let e = filter_all(&input, Some(len + 512), 4096).unwrap_err();
    assert!(e.to_string().contains("artifact states"), "{e}");
    let e = filter_all(&input, Some(len - 512), 4096).unwrap_err();
    assert!(e.to_string().contains("longer than"), "{e}");
    // Extra zero padding after the end marker is still the stated length.
    let mut padded = input.clone();
    padded.extend_from_slice(&[0u8; 10240]);
    let (out, _) = filter_all(&padded, Some(padded.len() as u64), 4096).unwrap();
    assert_eq!(entries(&out).len(), 4);
}

#[test]
fn an_archive_without_manifest_or_with_a_broken_header_is_refused() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_cksum();
    b.append_data(&mut h, "layer.tar", &b"abc"[..]).unwrap();
    let no_manifest = b.into_inner().unwrap();
    let e = filter_all(&no_manifest, None, 4096).unwrap_err();
    assert!(e.to_string().contains("no manifest.json"), "{e}");

    let mut broken = docker_save_archive(1000, false);
    broken[10] ^= 0x55;
    let e = filter_all(&broken, None, 4096).unwrap_err();
    assert!(e.to_string().contains("wrong checksum"), "{e}");

    let e = filter_all(b"", None, 4096).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn a_manifest_that_is_not_a_docker_manifest_is_refused() {
    for bad in [&b"{}"[..], b"not json", b"[1]"] {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(bad.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, "manifest.json", bad).unwrap();
        let e = filter_all(&b.into_inner().unwrap(), None, 4096).unwrap_err();
        assert!(e.to_string().contains("manifest.json"), "{e}");
    }
}

#[test]
fn config_entries_name_image_ids() {
    assert_eq!(
        config_id(&format!("{CONFIG_HEX}.json")),
        Some(format!("sha256:{CONFIG_HEX}"))
    );
    assert_eq!(
        config_id(&format!("blobs/sha256/{CONFIG_HEX}")),
        Some(format!("sha256:{CONFIG_HEX}"))
    );
    assert_eq!(config_id("config.json"), None);
}

// ---- archives written byte by byte: the encodings an attacker chooses ----

/// One header block with a valid checksum; `magic` is the 8 bytes at 257.
fn hdr(name: &[u8], size: u64, kind: u8, prefix: &[u8], magic: &[u8; 8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[156] = kind;
    h[257..265].copy_from_slice(magic);
    h[345..345 + prefix.len()].copy_from_slice(prefix);
    set_checksum(&mut h);
    h.to_vec()
}

const POSIX: &[u8; 8] = b"ustar\x0000";
const GNU: &[u8; 8] = b"ustar  \0";

fn pad(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(padded(data.len() as u64) as usize, 0);
    v
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    [
        hdr(name.as_bytes(), data.len() as u64, b'0', b"", POSIX),
        pad(data),
    ]
    .concat()
}

fn pax_records(records: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        let text = format!(" {k}={v}\n");
        let mut len = text.len() + 1;
        while len.to_string().len() + text.len() != len {
            len = len.to_string().len() + text.len();
        }
        body.extend_from_slice(format!("{len}{text}").as_bytes());
    }
    body
}

fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let body = pax_records(records);
    [
        hdr(b"PaxHeaders/x", body.len() as u64, b'x', b"", POSIX),
        pad(&body),
    ]
    .concat()
}

fn long_name(name: &str) -> Vec<u8> {
    let data = [name.as_bytes(), b"\0"].concat();
    [
        hdr(b"././@LongLink", data.len() as u64, b'L', b"", GNU),
        pad(&data),
    ]
    .concat()
}

fn symlink(name: &str, target: &str) -> Vec<u8> {
    let mut h = hdr(name.as_bytes(), 0, b'2', b"", POSIX);
    h[157..157 + target.len()].copy_from_slice(target.as_bytes());
    let mut block = [0u8; 512];
    block.copy_from_slice(&h);
    set_checksum(&mut block);
    block.to_vec()
}

fn end() -> Vec<u8> {
    vec![0u8; 1024]
}

const TAGGED: &str = r#"[{"Config":"c.json","RepoTags":["postgres:15"],"Layers":[]}]"#;
const PLAIN: &str = r#"[{"Config":"c.json","Layers":[]}]"#;

/// Archives whose tagged manifest.json only a reader that reads names as the
/// engine does can see, each after a plain one.
fn tricks() -> Vec<(&'static str, Vec<u8>)> {
    let first = file("manifest.json", PLAIN.as_bytes());
    let inner = file("manifest.json", TAGGED.as_bytes());
    let mut symlink_with_data = symlink("cover", "x");
    symlink_with_data[124..136].copy_from_slice(format!("{:011o}\0", inner.len()).as_bytes());
    let mut block = [0u8; 512];
    block.copy_from_slice(&symlink_with_data);
    set_checksum(&mut block);
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "PAX path",
            vec![
                pax(&[("path", "manifest.json")]),
                file("innocent", TAGGED.as_bytes()),
            ],
        ),
        (
            "GNU long name",
            vec![
                long_name("manifest.json"),
                file("innocent", TAGGED.as_bytes()),
            ],
        ),
        (
            "./ spelling",
            vec![file("./manifest.json", TAGGED.as_bytes())],
        ),
        (
            "x/.. spelling",
            vec![file("x/../manifest.json", TAGGED.as_bytes())],
        ),
        (
            "absolute spelling",
            vec![file("/manifest.json", TAGGED.as_bytes())],
        ),
        (
            "ustar prefix",
            vec![[
                hdr(b"manifest.json", TAGGED.len() as u64, b'0', b".", POSIX),
                pad(TAGGED.as_bytes()),
            ]
            .concat()],
        ),
        (
            "symlinked manifest",
            vec![
                file("evil", TAGGED.as_bytes()),
                symlink("manifest.json", "evil"),
            ],
        ),
        (
            "symlinked directory",
            vec![
                symlink("d", "."),
                file("d/manifest.json", TAGGED.as_bytes()),
            ],
        ),
        (
            "PAX size hides a header",
            vec![
                pax(&[("size", "0")]),
                hdr(b"cover", inner.len() as u64, b'0', b"", POSIX),
                inner.clone(),
            ],
        ),
        (
            "symlink header claims data",
            vec![block.to_vec(), inner.clone()],
        ),
        (
            "second repositories",
            vec![file("repositories", b"{}"), file("./repositories", b"{}")],
        ),
        (
            "second index.json",
            vec![file("index.json", b"{}"), file("index.json", b"{}")],
        ),
        (
            "directory named manifest.json",
            vec![hdr(b"manifest.json/", 0, b'5', b"", POSIX)],
        ),
        (
            "hard link named manifest.json",
            vec![hdr(b"manifest.json", 0, b'1', b"", POSIX)],
        ),
        ("PAX global header named manifest.json", {
            let body = pax_records(&[("comment", "x")]);
            vec![
                hdr(b"manifest.json", body.len() as u64, b'g', b"", POSIX),
                pad(&body),
            ]
        }),
        ("PAX global header with a path record", {
            let body = pax_records(&[("path", "./manifest.json")]);
            vec![hdr(b"g", body.len() as u64, b'g', b"", POSIX), pad(&body)]
        }),
        ("PAX global header through a symlink", {
            let body = pax_records(&[("path", "d/manifest.json")]);
            vec![
                symlink("d", "."),
                hdr(b"g", body.len() as u64, b'g', b"", POSIX),
                pad(&body),
            ]
        }),
    ];
    cases
        .into_iter()
        .map(|(what, parts)| {
            let mut a = first.clone();
            for p in parts {
                a.extend(p);
            }
            a.extend(end());
            (what, a)
        })
        .collect()
}

fn assert_short_and_printable(e: &io::Error) {
    let text = e.to_string();
    assert!(text.len() <= 220, "{} bytes: {text}", text.len());
    assert!(
        text.chars()
            .all(|c| c == ' ' || c.is_ascii_graphic() || c == '…'),
        "{text:?}"
    );
}

#[test]
fn every_spelling_that_would_hide_a_manifest_from_the_filter_is_refused() {
    for (what, archive) in tricks() {
        let e = filter_all(&archive, Some(archive.len() as u64), 4096)
            .err()
            .unwrap_or_else(|| panic!("{what}: passed"));
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
        assert_short_and_printable(&e);
    }
}

#[test]
fn names_from_pax_and_gnu_records_pass_unchanged_for_ordinary_members() {
    let deep = format!("{}/layer.tar", "d".repeat(200));
    let mut a = file("manifest.json", TAGGED.as_bytes());
    a.extend(pax(&[("path", deep.as_str()), ("mtime", "1.5")]));
    a.extend(file("short", b"layer data"));
    a.extend(long_name(&format!("{deep}2")));
    a.extend(file("short2", b"more"));
    a.extend(pax(&[("comment", "hi")]));
    a.extend(file("c.json", b"{}"));
    a.extend(end());
    let (out, summary) = filter_all(&a, None, 4096).unwrap();
    assert_eq!(summary.configs, ["c.json"]);
    let got = entries(&out);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "manifest.json",
            deep.as_str(),
            &format!("{deep}2"),
            "c.json"
        ]
    );
    assert_eq!(got[1].1, b"layer data");
    let m: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert!(m[0].get("RepoTags").is_none(), "{m}");
}

#[test]
fn index_json_loses_the_annotations_that_name_images() {
    let index = r#"{"schemaVersion":2,"annotations":{"io.containerd.image.name":"x:1"},"manifests":[{"digest":"sha256:00","annotations":{"org.opencontainers.image.ref.name":"15","io.containerd.image.name":"docker.io/library/postgres:15","org.example.keep":"yes"}}]}"#;
    let mut a = file("blobs/sha256/00", b"{}");
    a.extend(file("index.json", index.as_bytes()));
    a.extend(file("manifest.json", PLAIN.as_bytes()));
    a.extend(end());
    let (out, _) = filter_all(&a, None, 4096).unwrap();
    let got = entries(&out);
    let (_, data) = got.iter().find(|(n, _)| n == "index.json").unwrap();
    let doc: Value = serde_json::from_slice(data).unwrap();
    assert_eq!(doc["annotations"], serde_json::json!({}));
    assert_eq!(
        doc["manifests"][0]["annotations"],
        serde_json::json!({"org.example.keep": "yes"})
    );
}

/// Bytes made as they are read: a header announcing `size` bytes of an
/// extended record (GNU long name or PAX), then that many bytes.
struct Huge {
    head: Vec<u8>,
    at: usize,
    left: u64,
    read: u64,
}

impl Huge {
    fn new(kind: u8, size: u64) -> Huge {
        let magic = if kind == b'L' { GNU } else { POSIX };
        Huge {
            head: [
                file("manifest.json", PLAIN.as_bytes()),
                hdr(b"././@LongLink", size, kind, b"", magic),
            ]
            .concat(),
            at: 0,
            left: size,
            read: 0,
        }
    }
}

impl Read for Huge {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = if self.at < self.head.len() {
            let n = buf.len().min(self.head.len() - self.at);
            buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
            self.at += n;
            n
        } else {
            let n = buf
                .len()
                .min(usize::try_from(self.left).unwrap_or(usize::MAX));
            buf[..n].fill(b'a');
            self.left -= n as u64;
            n
        };
        self.read += n as u64;
        Ok(n)
    }
}

#[test]
fn a_gigabyte_long_name_or_pax_header_is_refused_at_its_header() {
    for kind in [b'L', b'x', b'K', b'g'] {
        let started = std::time::Instant::now();
        let mut f = TagStripper::new(Huge::new(kind, 1 << 30), None);
        let e = io::copy(&mut f, &mut io::sink()).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            f.summary().bytes <= 4096,
            "read {} bytes",
            f.summary().bytes
        );
        assert!(e.to_string().contains("1073741824 bytes"), "{e}");
        assert_short_and_printable(&e);
    }
}

#[test]
fn unprintable_and_long_names_are_shown_short_and_escaped() {
    let name = format!("\u{1b}[31m\u{202e}{}", "n".repeat(3000));
    let mut a = file("manifest.json", PLAIN.as_bytes());
    a.extend(long_name(&name));
    a.extend(hdr(b"x", 3, b'2', b"", POSIX));
    a.extend(end());
    let e = filter_all(&a, None, 4096).unwrap_err();
    assert_short_and_printable(&e);
    assert!(e.to_string().contains("\\u{1b}[31m\\u{202e}nnn"), "{e}");
    assert_eq!(shown(b"ab\xffc", 11), "\"ab\\u{fffd}c\"");
    assert_eq!(shown(b"ab\xffc", 10), "\"ab\\u{fffd}…\" (4 bytes)");
    assert_eq!(shown(b"abcdef", 3), "\"abc…\" (6 bytes)");
}

#[test]
fn structure_the_engine_reads_differently_is_refused() {
    let m = file("manifest.json", PLAIN.as_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "gzip magic",
            [hdr(b"\x1f\x8b\x08x", 0, b'0', b"", POSIX), m.clone(), end()].concat(),
            "compressed",
        ),
        (
            "lone zero block",
            [m.clone(), vec![0; 512], file("a", b"x"), end()].concat(),
            "single zero block",
        ),
        (
            "two PAX headers",
            [
                m.clone(),
                pax(&[("mtime", "1")]),
                pax(&[("mtime", "2")]),
                file("a", b"x"),
                end(),
            ]
            .concat(),
            "two PAX",
        ),
        (
            "two long names",
            [
                m.clone(),
                long_name("a"),
                long_name("b"),
                file("a", b"x"),
                end(),
            ]
            .concat(),
            "two GNU",
        ),
        (
            "PAX and GNU name",
            [
                m.clone(),
                pax(&[("path", "a")]),
                long_name("b"),
                file("c", b"x"),
                end(),
            ]
            .concat(),
            "both",
        ),
        (
            "dangling PAX",
            [m.clone(), pax(&[("path", "a")]), end()].concat(),
            "describes no member",
        ),
        (
            "sparse",
            [m.clone(), hdr(b"s", 0, b'S', b"", GNU), end()].concat(),
            "sparse",
        ),
        (
            "PAX sparse",
            [
                m.clone(),
                pax(&[("GNU.sparse.major", "1")]),
                file("a", b""),
                end(),
            ]
            .concat(),
            "sparse",
        ),
        (
            "malformed PAX",
            [
                m.clone(),
                hdr(b"p", 4, b'x', b"", POSIX),
                pad(b"9 a\n"),
                file("a", b""),
                end(),
            ]
            .concat(),
            "PAX",
        ),
        (
            "climbs out",
            [m.clone(), file("../x", b""), end()].concat(),
            "climbs out",
        ),
        (
            "negative size",
            {
                let mut h = hdr(b"a", 0, b'0', b"", POSIX);
                h[124] = 0xff;
                let mut b = [0u8; 512];
                b.copy_from_slice(&h);
                set_checksum(&mut b);
                [m.clone(), b.to_vec(), end()].concat()
            },
            "size field",
        ),
    ];
    for (what, archive, want) in cases {
        let e = filter_all(&archive, None, 4096)
            .err()
            .unwrap_or_else(|| panic!("{what}: passed"));
        assert!(e.to_string().contains(want), "{what}: {e}");
        assert_short_and_printable(&e);
    }
}

#[test]
fn peak_memory_stays_flat_for_a_gigabyte_record() {
    // Measured in a child process (this test binary again), so other tests
    // running beside do not count.
    if std::env::var_os("DM_ARCHIVE_RSS_CHILD").is_some() {
        for kind in [b'L', b'x'] {
            let mut f = TagStripper::new(Huge::new(kind, 1 << 30), None);
            let _ = io::copy(&mut f, &mut io::sink());
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        println!("CHILD {hwm}");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "archive::tests::peak_memory_stays_flat_for_a_gigabyte_record",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DM_ARCHIVE_RSS_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .find_map(|l| l.split("CHILD VmHWM:").nth(1))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no measurement: {text}"));
    assert!(kib < 64 * 1024, "peak RSS {kib} KiB");
}

#[test]
fn a_sole_manifest_named_by_a_pax_or_gnu_record_is_found_and_stripped() {
    for naming in [
        pax(&[("path", "./manifest.json")]),
        long_name("manifest.json"),
    ] {
        let mut a = naming;
        a.extend(file("innocent", TAGGED.as_bytes()));
        a.extend(end());
        let (out, summary) = filter_all(&a, None, 4096).unwrap();
        assert_eq!(summary.configs, ["c.json"]);
        let got = entries(&out);
        assert_eq!(
            got.len(),
            1,
            "{:?}",
            got.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        assert_eq!(got[0].0, "manifest.json");
        let m: Value = serde_json::from_slice(&got[0].1).unwrap();
        assert!(m[0].get("RepoTags").is_none(), "{m}");
    }
}

#[test]
fn archive_text_is_bounded_in_bytes_not_characters() {
    // One escaped character takes up to 10 bytes; a bound in characters let
    // 100 of them fill 1000 (found by fuzzing the other archive readers).
    let face = "\u{1f600}".repeat(300);
    let text = shown(face.as_bytes(), 100);
    assert!(text.len() <= 120, "{} bytes: {text}", text.len());
    assert!(
        text.starts_with("\"\\u{1f600}") && text.ends_with("…\" (1200 bytes)"),
        "{text}"
    );
    assert_eq!(printable(b"plain", 5), "plain");
    assert_eq!(printable(b"plain!", 5), "plain…");
}
