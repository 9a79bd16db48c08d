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
