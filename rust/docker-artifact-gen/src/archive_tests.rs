use std::fs;

use super::*;

pub const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const M: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
/// A blob no manifest names, as umoci leaves behind.
const U: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

const EPOCH: u64 = 1_700_000_000;

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("dag-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One member of a fixture tar. Names are written as given (the tar
/// crate's builder would drop `./`).
#[derive(Debug, Clone)]
pub enum Fx {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
    Fifo(String),
}

/// What the tools that write image archives (umoci, GNU tar, Go's
/// archive/tar, docker save) differ in; none of it may reach a payload.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    mtime: u64,
    uid: u64,
    owner: &'static str,
    /// Of files; directories get the execute bits added.
    mode: u32,
    /// GNU headers with `././@LongLink` records for long names; else ustar
    /// headers with PAX records.
    gnu: bool,
    /// A PAX global header first, as `git archive` writes.
    pax_global: bool,
}

const PLAIN: Style = Style {
    mtime: 0,
    uid: 0,
    owner: "",
    mode: 0o644,
    gnu: false,
    pax_global: false,
};

const UMOCI_LIKE: Style = Style {
    mtime: 1_712_345_678,
    uid: 1000,
    owner: "builder",
    mode: 0o664,
    gnu: true,
    pax_global: false,
};

const GO_LIKE: Style = Style {
    mtime: 1_234,
    uid: 0,
    owner: "root",
    mode: 0o600,
    gnu: false,
    pax_global: true,
};

/// A PAX extended-header record: `<length> <key>=<value>\n`, the length
/// counting itself.
fn pax(key: &str, value: &str) -> Vec<u8> {
    let rest = format!(" {key}={value}\n");
    let mut len = rest.len() + 1;
    while len.to_string().len() + rest.len() != len {
        len = len.to_string().len() + rest.len();
    }
    format!("{len}{rest}").into_bytes()
}

fn put(field: &mut [u8], value: &str) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value.as_bytes()[..n]);
}

fn extension(b: &mut tar::Builder<File>, kind: u8, name: &str, data: &[u8], gnu: bool) {
    let mut h = if gnu {
        tar::Header::new_gnu()
    } else {
        tar::Header::new_ustar()
    };
    put(&mut h.as_old_mut().name, name);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

pub fn write_tar(path: &Path, members: &[Fx], style: Style) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    if style.pax_global {
        extension(
            &mut b,
            b'g',
            "pax_global_header",
            &pax("comment", "made by a test"),
            false,
        );
    }
    for m in members {
        use tar::EntryType as T;
        let (kind, name, link, data) = match m {
            Fx::File(n, d) => (T::Regular, n, "", d.as_slice()),
            Fx::Dir(n) => (T::Directory, n, "", &b""[..]),
            Fx::Symlink(n, t) => (T::Symlink, n, t.as_str(), &b""[..]),
            Fx::Hardlink(n, t) => (T::Link, n, t.as_str(), &b""[..]),
            Fx::Fifo(n) => (T::Fifo, n, "", &b""[..]),
        };
        let long = |v: &str| v.len() > 100;
        if style.gnu {
            for (t, v) in [(b'L', name.as_str()), (b'K', link)] {
                if long(v) {
                    let mut d = v.as_bytes().to_vec();
                    d.push(0);
                    extension(&mut b, t, "././@LongLink", &d, true);
                }
            }
        } else if long(name) || long(link) {
            let mut records = Vec::new();
            if long(name) {
                records.extend(pax("path", name));
            }
            if long(link) {
                records.extend(pax("linkpath", link));
            }
            extension(&mut b, b'x', "PaxHeaders.0/long", &records, false);
        }
        let mut h = if style.gnu {
            tar::Header::new_gnu()
        } else {
            tar::Header::new_ustar()
        };
        put(&mut h.as_old_mut().name, name);
        put(&mut h.as_old_mut().linkname, link);
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind.is_dir() {
            style.mode | 0o111
        } else {
            style.mode
        });
        h.set_mtime(style.mtime);
        h.set_uid(style.uid);
        h.set_gid(style.uid);
        h.set_username(style.owner).unwrap();
        h.set_groupname(style.owner).unwrap();
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap();
}

/// A plain tar of (name, content); names ending in `/` are directories.
pub fn tar_file(path: &Path, members: &[(&str, &[u8])]) {
    let members: Vec<Fx> = members
        .iter()
        .map(|(name, data)| {
            if name.ends_with('/') {
                Fx::Dir(name.to_string())
            } else {
                Fx::File(name.to_string(), data.to_vec())
            }
        })
        .collect();
    write_tar(path, &members, PLAIN);
}

/// What a payload holds: (name, entry type, link target, data), in order.
fn contents(path: &Path) -> Vec<(String, char, String, Vec<u8>)> {
    let mut a = tar::Archive::new(File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let kind = char::from(e.header().entry_type().as_byte());
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, kind, link, data)
        })
        .collect()
}

fn names(path: &Path) -> Vec<String> {
    contents(path).into_iter().map(|(n, ..)| n).collect()
}

fn member(path: &Path, name: &str) -> Vec<u8> {
    contents(path)
        .into_iter()
        .find(|(n, ..)| n == name)
        .unwrap_or_else(|| panic!("{name} not in {}", path.display()))
        .3
}

/// Every header of a payload, for failure messages: what differs.
fn listing(path: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            format!(
                "{} {:?} mode {:o} mtime {} uid {} {:?} size {}",
                e.path().unwrap().display(),
                h.entry_type(),
                h.mode().unwrap(),
                h.mtime().unwrap(),
                h.uid().unwrap(),
                h.username().ok().flatten(),
                e.size()
            )
        })
        .collect()
}

pub fn docker_save(path: &Path, config: &str, tags: &[&str]) {
    let manifest = json!([{"Config": config, "RepoTags": tags, "Layers": ["l1/layer.tar"]}]);
    tar_file(
        path,
        &[
            (config, b"{}"),
            ("l1/", b""),
            ("l1/layer.tar", b"layer"),
            ("manifest.json", manifest.to_string().as_bytes()),
        ],
    );
}

/// The files of an OCI layout holding one image (config A, layer B,
/// manifest M): (name in the layout, content).
fn layout_files(ref_name: Option<&str>) -> Vec<(String, Vec<u8>)> {
    let manifest = json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{A}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{B}"), "size": 5}]});
    let mut entry = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{M}"), "size": 1});
    if let Some(r) = ref_name {
        entry["annotations"] = json!({"org.opencontainers.image.ref.name": r});
    }
    let index = json!({"schemaVersion": 2, "manifests": [entry]});
    vec![
        (format!("blobs/sha256/{A}"), b"{}".to_vec()),
        (format!("blobs/sha256/{B}"), b"\x1f\x8bgz".to_vec()),
        (
            format!("blobs/sha256/{M}"),
            manifest.to_string().into_bytes(),
        ),
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_owned(), index.to_string().into_bytes()),
    ]
}

/// A tarred OCI layout: its directories (with `dirs`), then `files`, all
/// under `prefix`.
fn layout_tar(path: &Path, prefix: &str, dirs: bool, files: &[(String, Vec<u8>)], style: Style) {
    let mut members = Vec::new();
    if dirs {
        for d in ["", "blobs/", "blobs/sha256/"] {
            let d = format!("{prefix}{d}");
            if !d.is_empty() {
                members.push(Fx::Dir(d));
            }
        }
    }
    for (name, data) in files {
        members.push(Fx::File(format!("{prefix}{name}"), data.clone()));
    }
    write_tar(path, &members, style);
}

fn oci_layout(path: &Path, prefix: &str, ref_name: Option<&str>) {
    layout_tar(path, prefix, true, &layout_files(ref_name), PLAIN);
}

/// The names an OCI payload holds, in order.
fn oci_payload_names() -> Vec<String> {
    let mut names = vec!["blobs/".to_owned(), "blobs/sha256/".to_owned()];
    names.extend([A, B, M].map(|h| format!("blobs/sha256/{h}")));
    names.extend(["index.json", "manifest.json", "oci-layout"].map(String::from));
    names
}

#[test]
fn a_docker_save_archive_names_its_image() {
    let dir = TempDir::new("docker-save");
    for (config, tags, name) in [
        (format!("{A}.json"), vec!["web/app:1.0"], "web/app:1.0"),
        (format!("blobs/sha256/{A}"), vec![], "my-app-v1"),
    ] {
        let src = dir.0.join("My_App.v1.tar");
        docker_save(&src, &config, &tags);
        let a = Archive::read_one(&src, Kind::Docker).unwrap();
        assert_eq!(
            a.images,
            [Image {
                id: format!("sha256:{A}"),
                name: name.into(),
                config: config.clone(),
                layers: vec!["l1/layer.tar".into()],
            }]
        );
        let out = dir.0.join("out.tar");
        let len = a.write_to(&out, 0).unwrap();
        assert_eq!(len, fs::metadata(&out).unwrap().len());
        assert_eq!(member(&out, &config), b"{}");
        assert_eq!(member(&out, "l1/layer.tar"), b"layer");
    }
}

#[test]
fn an_oci_layout_gets_the_engines_manifest_with_the_blob_paths() {
    let dir = TempDir::new("oci");
    // ./-prefixed (tar -C layout .), in a top-level directory (tar layout), and plain.
    for prefix in ["./", "app-oci/", ""] {
        let src = dir.0.join("app-oci.tar");
        oci_layout(&src, prefix, Some("latest"));
        let a = Archive::read_one(&src, Kind::Oci).unwrap();
        assert_eq!(
            a.images,
            [Image {
                id: format!("sha256:{A}"),
                name: "app-oci:latest".into(),
                config: format!("blobs/sha256/{A}"),
                layers: vec![format!("blobs/sha256/{B}")],
            }],
            "{prefix}"
        );
        let out = dir.0.join("out.tar");
        let len = a.write_to(&out, EPOCH).unwrap();
        assert_eq!(len, fs::metadata(&out).unwrap().len());
        assert_eq!(names(&out), oci_payload_names(), "the layout at the top");
        let manifest: Value = serde_json::from_slice(&member(&out, "manifest.json")).unwrap();
        assert_eq!(
            manifest,
            json!([{
                "Config": format!("blobs/sha256/{A}"),
                "RepoTags": ["app-oci:latest"],
                "Layers": [format!("blobs/sha256/{B}")],
            }])
        );
        for (name, data) in layout_files(Some("latest")) {
            assert_eq!(member(&out, &name), data, "{name} byte for byte");
        }
    }
}

#[test]
fn oci_layouts_that_differ_only_in_their_tar_give_identical_payloads() {
    let dir = TempDir::new("repro-oci");
    let files = layout_files(Some("latest"));
    let mut with_leftovers = files.clone();
    with_leftovers.push((
        format!("blobs/sha256/{U}"),
        br#"{"created":"2024-05-06T07:08:09Z"}"#.to_vec(),
    ));
    let mut reversed = with_leftovers.clone();
    reversed.reverse();
    // (prefix, header style, directory entries, files in tar order)
    let variants = [
        ("./", UMOCI_LIKE, true, &files),
        ("app-oci/", GO_LIKE, false, &reversed),
        ("", PLAIN, true, &with_leftovers),
    ];
    let mut payloads = Vec::new();
    for (i, (prefix, style, dirs, files)) in variants.into_iter().enumerate() {
        // The same file name: the payload's display name comes from it.
        let src_dir = dir.0.join(i.to_string());
        fs::create_dir_all(&src_dir).unwrap();
        let src = src_dir.join("app-oci.tar");
        layout_tar(&src, prefix, dirs, files, style);
        let a = Archive::read_one(&src, Kind::Oci).unwrap();
        assert_eq!(a.images[0].id, format!("sha256:{A}"));
        let out = src_dir.join("payload.tar");
        a.write_to(&out, EPOCH).unwrap();
        payloads.push(out);
    }
    for out in &payloads[1..] {
        assert!(
            fs::read(out).unwrap() == fs::read(&payloads[0]).unwrap(),
            "{:#?}\n!=\n{:#?}",
            listing(out),
            listing(&payloads[0])
        );
    }
    assert_eq!(names(&payloads[0]), oci_payload_names(), "no leftover blob");
}

#[test]
fn a_payload_is_a_sorted_ustar_archive_stamped_with_the_given_time() {
    let dir = TempDir::new("normalised");
    let src = dir.0.join("app-oci.tar");
    let mut files = layout_files(None);
    files.reverse();
    layout_tar(&src, "app-oci/", false, &files, UMOCI_LIKE);
    let out = dir.0.join("payload.tar");
    let len = Archive::read_one(&src, Kind::Oci)
        .unwrap()
        .write_to(&out, EPOCH)
        .unwrap();

    let bytes = fs::read(&out).unwrap();
    assert_eq!(len % 512, 0);
    assert!(
        bytes[bytes.len() - 1024..].iter().all(|b| *b == 0),
        "two zero blocks end it"
    );
    let mut a = tar::Archive::new(File::open(&out).unwrap());
    let mut seen = Vec::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        assert!(h.as_ustar().is_some(), "{name}: a ustar header");
        assert_eq!(h.mtime().unwrap(), EPOCH, "{name}");
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0), "{name}");
        assert_eq!(h.username().unwrap(), Some(""), "{name}");
        assert_eq!(h.groupname().unwrap(), Some(""), "{name}");
        let mode = if h.entry_type().is_dir() {
            0o755
        } else {
            0o644
        };
        assert_eq!(h.mode().unwrap(), mode, "{name}");
        seen.push(name);
    }
    assert_eq!(seen, oci_payload_names());
    for (name, data) in layout_files(None) {
        assert_eq!(member(&out, &name), data, "{name} byte for byte");
    }
}

#[test]
fn a_docker_save_archive_keeps_every_member_and_its_bytes() {
    let dir = TempDir::new("repro-docker");
    let config = format!("{A}.json");
    // A layer two images share: docker save links it.
    let manifest = json!([{"Config": config, "RepoTags": ["web/app:1.0"],
        "Layers": ["l1/layer.tar", "l2/layer.tar", "l3/layer.tar"]}])
    .to_string();
    let members = |p: &str, dirs: bool| -> Vec<Fx> {
        let n = |s: &str| format!("{p}{s}");
        let mut m = vec![
            Fx::File(n(&config), b"{}".to_vec()),
            Fx::File(n("l1/layer.tar"), b"layer".to_vec()),
            Fx::File(n("l1/json"), b"{\"id\":1}".to_vec()),
            Fx::Symlink(n("l2/layer.tar"), "../l1/layer.tar".to_owned()),
            Fx::Hardlink(n("l3/layer.tar"), n("l1/layer.tar")),
            Fx::File(n("manifest.json"), manifest.clone().into_bytes()),
            Fx::File(n("repositories"), b"{}".to_vec()),
        ];
        if dirs {
            m.splice(0..0, ["l1/", "l2/", "l3/"].map(|d| Fx::Dir(n(d))));
        }
        m
    };
    let mut dotted = members("./", true);
    dotted.reverse();
    let mut payloads = Vec::new();
    for (i, (members, style)) in [(dotted, UMOCI_LIKE), (members("", false), GO_LIKE)]
        .into_iter()
        .enumerate()
    {
        let src = dir.0.join(format!("{i}.tar"));
        write_tar(&src, &members, style);
        let out = dir.0.join(format!("{i}.payload.tar"));
        Archive::read_one(&src, Kind::Docker)
            .unwrap()
            .write_to(&out, EPOCH)
            .unwrap();
        payloads.push(out);
    }
    assert!(
        fs::read(&payloads[0]).unwrap() == fs::read(&payloads[1]).unwrap(),
        "{:#?}\n!=\n{:#?}",
        listing(&payloads[0]),
        listing(&payloads[1])
    );
    let got: Vec<(String, char, String, Vec<u8>)> = contents(&payloads[0]);
    let f = |n: &str, d: &[u8]| (n.to_owned(), '0', String::new(), d.to_vec());
    let d = |n: &str| (n.to_owned(), '5', String::new(), Vec::new());
    assert_eq!(
        got,
        [
            f(&config, b"{}"),
            d("l1/"),
            f("l1/json", b"{\"id\":1}"),
            f("l1/layer.tar", b"layer"),
            d("l2/"),
            (
                "l2/layer.tar".to_owned(),
                '2',
                "../l1/layer.tar".to_owned(),
                Vec::new()
            ),
            d("l3/"),
            f("l3/layer.tar", b"layer"),
            f("manifest.json", manifest.as_bytes()),
            f("repositories", b"{}"),
        ]
    );
}

#[test]
fn long_names_are_written_the_same_way_whatever_the_source_used() {
    let dir = TempDir::new("long-names");
    let config = format!("{A}.json");
    let manifest = json!([{"Config": config, "Layers": []}]).to_string();
    // Fits ustar's prefix and name fields; fits neither; a long link target.
    let split = format!("{}/{}", "p".repeat(120), "n".repeat(60));
    let unsplittable = format!("{}/{}", "p".repeat(60), "n".repeat(140));
    let target = format!("../{}", "t".repeat(120));
    let members = vec![
        Fx::File(config.clone(), b"{}".to_vec()),
        Fx::File("manifest.json".to_owned(), manifest.into_bytes()),
        Fx::File(split.clone(), b"split".to_vec()),
        Fx::File(unsplittable.clone(), b"long".to_vec()),
        Fx::Symlink("link".to_owned(), target.clone()),
    ];
    let mut payloads = Vec::new();
    for (i, style) in [UMOCI_LIKE, GO_LIKE].into_iter().enumerate() {
        let src = dir.0.join(format!("{i}.tar"));
        write_tar(&src, &members, style);
        let out = dir.0.join(format!("{i}.payload.tar"));
        Archive::read_one(&src, Kind::Docker)
            .unwrap()
            .write_to(&out, EPOCH)
            .unwrap();
        payloads.push(out);
    }
    assert!(fs::read(&payloads[0]).unwrap() == fs::read(&payloads[1]).unwrap());
    let got = contents(&payloads[0]);
    let find = |n: &str| got.iter().find(|(name, ..)| name == n).cloned();
    assert_eq!(find(&split).unwrap().3, b"split");
    assert_eq!(find(&unsplittable).unwrap().3, b"long");
    assert_eq!(find("link").unwrap().2, target);
}

#[test]
fn members_a_payload_cannot_carry_are_refused_by_name() {
    let dir = TempDir::new("refused");
    let config = format!("{A}.json");
    let manifest = json!([{"Config": config, "Layers": []}]).to_string();
    let with = |extra: Vec<Fx>| -> Vec<Fx> {
        let mut m = vec![
            Fx::File(config.clone(), b"{}".to_vec()),
            Fx::File("manifest.json".to_owned(), manifest.clone().into_bytes()),
        ];
        m.extend(extra);
        m
    };
    let src = dir.0.join("x.tar");
    let read = |extra: Vec<Fx>| {
        write_tar(&src, &with(extra), PLAIN);
        Archive::read_one(&src, Kind::Docker)
    };
    for (extra, expected) in [
        (vec![Fx::Fifo("pipe".into())], "member \"pipe\" is a FIFO"),
        (
            vec![Fx::File("../evil".into(), b"x".to_vec())],
            "member \"../evil\" points outside the archive",
        ),
        (
            vec![Fx::Hardlink("l".into(), "gone".into())],
            "l is a hard link to gone, which is not in the archive",
        ),
        (
            vec![
                Fx::Hardlink("a".into(), "b".into()),
                Fx::Hardlink("b".into(), "a".into()),
            ],
            "leads to itself",
        ),
    ] {
        let e = format!("{:#}", read(extra).unwrap_err());
        assert!(e.contains(expected) && e.contains("x.tar"), "{e}");
    }
    let a = read(vec![
        Fx::File("x".into(), b"x".to_vec()),
        Fx::File("x/y".into(), b"y".to_vec()),
    ])
    .unwrap();
    let e = format!("{:#}", a.write_to(&dir.0.join("out.tar"), 0).unwrap_err());
    assert!(
        e.contains("x is a file and also the directory of x/y"),
        "{e}"
    );
}

#[test]
fn oci_names_come_from_the_annotations_or_the_file() {
    let dir = TempDir::new("oci-names");
    let src = dir.0.join("Core Image.rootfs-oci.tar");
    oci_layout(&src, "", Some("registry.example.com:5000/apps/core:2.1"));
    let a = Archive::read_one(&src, Kind::Oci).unwrap();
    assert_eq!(a.images[0].name, "registry.example.com:5000/apps/core:2.1");
    oci_layout(&src, "", None);
    let a = Archive::read_one(&src, Kind::Oci).unwrap();
    assert_eq!(a.images[0].name, "core-image-rootfs-oci");
    let Some(Member::Added(added)) = a.members.get("manifest.json") else {
        panic!("no manifest.json added: {:?}", a.members);
    };
    let manifest: Value = serde_json::from_slice(added).unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        json!([]),
        "untagged: nothing to tag"
    );
}

fn err(path: &Path, kind: Kind) -> String {
    format!("{:#}", Archive::read_one(path, kind).unwrap_err())
}

#[test]
fn unusable_archives_are_named_with_what_to_do() {
    let dir = TempDir::new("bad");
    let missing = dir.0.join("missing.tar");
    assert!(err(&missing, Kind::Docker).contains("cannot read"));

    let oci = dir.0.join("layout.tar");
    oci_layout(&oci, "", None);
    let e = err(&oci, Kind::Docker);
    assert!(
        e.contains("OCI image layout") && e.contains("oci-archive:"),
        "{e}"
    );

    let plain = dir.0.join("plain.tar");
    tar_file(&plain, &[("etc/hostname", b"x")]);
    let e = err(&plain, Kind::Oci);
    assert!(e.contains("no index.json"), "{e}");
    let e = err(&plain, Kind::Docker);
    assert!(
        e.contains("no manifest.json") && e.contains("docker save"),
        "{e}"
    );

    let gz = dir.0.join("x.tar.gz");
    fs::write(&gz, b"\x1f\x8b\x08\x00rest").unwrap();
    assert!(err(&gz, Kind::Docker).contains("gzip-compressed"));

    let junk = dir.0.join("junk.tar");
    fs::write(&junk, vec![b'x'; 1024]).unwrap();
    assert!(err(&junk, Kind::Oci).contains("not a readable tar"));

    let two = dir.0.join("two.tar");
    let manifest = json!([
        {"Config": format!("{A}.json"), "RepoTags": [], "Layers": []},
        {"Config": format!("{B}.json"), "RepoTags": [], "Layers": []},
    ]);
    let (ca, cb) = (format!("{A}.json"), format!("{B}.json"));
    tar_file(
        &two,
        &[
            (&ca, b"{}"),
            (&cb, b"{}"),
            ("manifest.json", manifest.to_string().as_bytes()),
        ],
    );
    assert!(err(&two, Kind::Docker).contains("holds 2 images"));
    assert_eq!(Archive::read(&two, Kind::Docker).unwrap().images.len(), 2);

    let incomplete = dir.0.join("incomplete.tar");
    let manifest = json!([{"Config": format!("{A}.json"), "Layers": ["l/layer.tar"]}]);
    tar_file(
        &incomplete,
        &[
            (&ca, b"{}"),
            ("manifest.json", manifest.to_string().as_bytes()),
        ],
    );
    let e = err(&incomplete, Kind::Docker);
    assert!(e.contains("layer l/layer.tar is not in the archive"), "{e}");
}

#[test]
fn a_multi_platform_index_is_refused() {
    let dir = TempDir::new("multi");
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": format!("sha256:{M}"), "size": 1}]});
    let src = dir.0.join("multi.tar");
    tar_file(&src, &[("index.json", index.to_string().as_bytes())]);
    let e = err(&src, Kind::Oci);
    assert!(e.contains("several platforms"), "{e}");
}

#[test]
fn names_are_normalised() {
    assert_eq!(normalise("./blobs/sha256/x"), "blobs/sha256/x");
    assert_eq!(normalise("./"), "");
    assert_eq!(normalise("."), "");
    assert_eq!(normalise("/manifest.json"), "manifest.json");
    assert_eq!(normalise(".//a/./b//c/"), "a/b/c");
    assert_eq!(config_id(&format!("{A}.json")), Some(format!("sha256:{A}")));
    assert_eq!(
        config_id(&format!("blobs/sha256/{A}")),
        Some(format!("sha256:{A}"))
    );
    assert_eq!(config_id("config.json"), None);
    assert_eq!(repository_from("--Web_App 1.0--"), "web-app-1-0");
    assert_eq!(repository_from("___"), "image");
}

/// A `docker save` archive with, after its members, a header announcing
/// `size` bytes of `kind` (GNU long name, PAX, …); the file is sparse, so
/// the gigabyte costs no disk.
fn with_huge_record(path: &Path, kind: u8, size: u64) {
    docker_save(path, &format!("{A}.json"), &[]);
    let mut bytes = fs::read(path).unwrap();
    bytes.truncate(bytes.len() - 1024);
    let mut h = tar::Header::new_gnu();
    put(&mut h.as_old_mut().name, "././@LongLink");
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    bytes.extend_from_slice(h.as_bytes());
    fs::write(path, &bytes).unwrap();
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(bytes.len() as u64 + size.div_ceil(512) * 512 + 1024)
        .unwrap();
}

fn short_and_printable(text: &str) {
    assert!(text.len() <= 300, "{} bytes: {text}", text.len());
    assert!(
        text.chars()
            .all(|c| c == ' ' || c == '…' || c.is_ascii_graphic()),
        "{text:?}"
    );
}

#[test]
fn a_gigabyte_long_name_or_pax_header_is_refused_at_its_header() {
    let dir = TempDir::new("huge");
    for kind in [b'L', b'K', b'x', b'g'] {
        let src = dir.0.join("huge.tar");
        with_huge_record(&src, kind, 1 << 30);
        let started = std::time::Instant::now();
        let e = err(&src, Kind::Docker);
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{e}");
        assert!(e.contains("the tar header at byte 3584: "), "{e}");
        assert!(e.contains(" of 1073741824 bytes; "), "{e}");
        short_and_printable(&e.replace(&dir.0.display().to_string(), "DIR"));
    }
}

#[test]
fn peak_memory_stays_flat_for_a_gigabyte_record() {
    // Measured in a child process (this test binary again), so that other
    // tests running beside do not count.
    if std::env::var_os("DAG_ARCHIVE_RSS_CHILD").is_some() {
        let dir = TempDir::new("rss");
        for kind in [b'L', b'x'] {
            let src = dir.0.join("huge.tar");
            with_huge_record(&src, kind, 1 << 30);
            let _ = Archive::read_one(&src, Kind::Docker);
        }
        let status = fs::read_to_string("/proc/self/status").unwrap();
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
        .env("DAG_ARCHIVE_RSS_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .find_map(|l| l.split("CHILD VmHWM:").nth(1))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no measurement: {text}"));
    eprintln!("peak RSS of the child: {kib} KiB");
    assert!(kib < 64 * 1024, "peak RSS {kib} KiB");
}

#[test]
fn archive_text_in_errors_is_short_and_escaped() {
    let dir = TempDir::new("names");
    let src = dir.0.join("names.tar");
    let mut b = tar::Builder::new(File::create(&src).unwrap());
    let long = format!("\u{1b}[31m{}/../../x", "n".repeat(3000));
    extension(&mut b, b'x', "PaxHeaders/x", &pax("path", &long), false);
    let mut h = tar::Header::new_ustar();
    put(&mut h.as_old_mut().name, "x");
    h.set_size(0);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b""[..]).unwrap();
    b.into_inner().unwrap();
    let e = err(&src, Kind::Docker).replace(&dir.0.display().to_string(), "DIR");
    assert!(e.contains("points outside the archive"), "{e}");
    assert!(e.contains("\"\\u{1b}[31mnnn"), "{e}");
    short_and_printable(&e);
}

#[test]
fn a_pax_size_record_is_followed_as_the_tar_crate_follows_it() {
    // The walk must find each header where the tar crate does, or a huge
    // record behind a PAX size would pass unseen.
    let dir = TempDir::new("pax-size");
    let src = dir.0.join("pax.tar");
    docker_save(&src, &format!("{A}.json"), &[]);
    let mut bytes = fs::read(&src).unwrap();
    bytes.truncate(bytes.len() - 1024);
    let mut b = tar::Builder::new(Vec::new());
    let body = pax("size", "5");
    let mut x = tar::Header::new_ustar();
    put(&mut x.as_old_mut().name, "PaxHeaders/extra");
    x.set_entry_type(tar::EntryType::XHeader);
    x.set_size(body.len() as u64);
    x.set_mode(0o644);
    x.set_cksum();
    b.append(&x, body.as_slice()).unwrap();
    let mut f = tar::Header::new_ustar();
    put(&mut f.as_old_mut().name, "extra");
    f.set_size(0);
    f.set_mode(0o644);
    f.set_cksum();
    b.append(&f, &b""[..]).unwrap();
    let mut more = b.into_inner().unwrap();
    more.truncate(more.len() - 1024);
    bytes.extend_from_slice(&more);
    bytes.extend_from_slice(b"hello");
    bytes.resize(bytes.len() + 507, 0);
    let good = [bytes.clone(), vec![0u8; 1024]].concat();
    fs::write(&src, &good).unwrap();
    let a = Archive::read_one(&src, Kind::Docker).unwrap();
    let out = dir.0.join("out.tar");
    a.write_to(&out, 0).unwrap();
    assert_eq!(member(&out, "extra"), b"hello");
    // The same with a huge record behind it.
    let mut h = tar::Header::new_gnu();
    put(&mut h.as_old_mut().name, "././@LongLink");
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(1 << 30);
    h.set_cksum();
    bytes.extend_from_slice(h.as_bytes());
    let len = bytes.len() as u64;
    fs::write(&src, &bytes).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&src).unwrap();
    f.set_len(len + (1 << 30) + 1024).unwrap();
    let e = err(&src, Kind::Docker);
    assert!(e.contains("of 1073741824 bytes"), "{e}");
}

#[test]
fn archive_text_is_bounded_in_bytes_not_characters() {
    // One escaped character takes up to 10 bytes; a bound in characters let
    // 100 of them fill 1000 (found by fuzzing the other archive readers).
    let face = "\u{1f600}".repeat(300);
    let text = quoted(&face);
    assert!(text.len() <= 110, "{} bytes: {text}", text.len());
    short_and_printable(&text);
    assert_eq!(printable("plain", 5), "plain");
    assert_eq!(printable("plain!", 5), "plain…");
}

fn diff(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// Image X (layers 0, 1) and image Y (layers 0, 9, 1): Y's top layer is
/// X's layer 1 over other layers, so `docker save` links it to X's file.
fn two_images(path: &Path) {
    let config = |ids: &[char]| {
        let ids: Vec<String> = ids.iter().map(|c| diff(*c)).collect();
        json!({"rootfs": {"type": "layers", "diff_ids": ids}}).to_string()
    };
    let manifest = json!([
        {"Config": format!("{A}.json"), "RepoTags": ["x:1"], "Layers": ["l0/layer.tar", "l1/layer.tar"]},
        {"Config": format!("{U}.json"), "RepoTags": ["y:1"], "Layers": ["l0/layer.tar", "l2/layer.tar", "l3/layer.tar"]}
    ]);
    let members = vec![
        Fx::File(format!("{A}.json"), config(&['0', '1']).into_bytes()),
        Fx::File(format!("{U}.json"), config(&['0', '9', '1']).into_bytes()),
        Fx::Dir("l0/".into()),
        Fx::File("l0/layer.tar".into(), b"base".to_vec()),
        Fx::File("l0/json".into(), b"{}".to_vec()),
        Fx::Dir("l1/".into()),
        Fx::File("l1/layer.tar".into(), b"one".to_vec()),
        Fx::Dir("l2/".into()),
        Fx::File("l2/layer.tar".into(), b"nine".to_vec()),
        Fx::Dir("l3/".into()),
        Fx::Symlink("l3/layer.tar".into(), "../l1/layer.tar".into()),
        Fx::File("manifest.json".into(), manifest.to_string().into_bytes()),
    ];
    write_tar(path, &members, PLAIN);
}

#[test]
fn a_delta_leaves_out_the_bottom_layers_a_base_image_has_under_the_same_layers() {
    let dir = TempDir::new("delta");
    let src = dir.0.join("two.tar");
    two_images(&src);
    let x = format!("sha256:{A}");
    let y = format!("sha256:{U}");
    let stacks = |s: &[&[char]]| {
        let mut b = BaseLayers::default();
        for ids in s {
            b.add(ids.iter().map(|c| diff(*c)).collect());
        }
        b
    };
    let d = |s: &[char]| -> Vec<String> { s.iter().map(|c| diff(*c)).collect() };
    let cases: Vec<(BaseLayers, [usize; 2], Vec<&str>)> = vec![
        // X itself is in the base; Y shares only layer 0. Y's top layer is
        // X's file through a link: the file stays, though X leaves it out.
        (stacks(&[&['0', '1']]), [2, 1], vec!["l0/layer.tar"]),
        // The same diff ID over other layers is not the same layer.
        (stacks(&[&['9'], &['5', '1']]), [0, 0], vec![]),
        (
            stacks(&[&['0', '9', '1'], &['0', '1']]),
            [2, 3],
            vec![
                "l0/layer.tar",
                "l1/layer.tar",
                "l2/layer.tar",
                "l3/layer.tar",
            ],
        ),
        (BaseLayers::default(), [0, 0], vec![]),
    ];
    for (base, held, gone) in cases {
        let mut a = Archive::read(&src, Kind::Docker).unwrap();
        let all = names_of(&a);
        let out = a.leave_out(&base).unwrap();
        assert_eq!(
            out,
            [
                (x.clone(), d(&['0', '1']), held[0]),
                (y.clone(), d(&['0', '9', '1']), held[1])
            ],
            "{base:?}"
        );
        let want: Vec<String> = all
            .into_iter()
            .filter(|n| !gone.contains(&n.as_str()))
            .collect();
        assert_eq!(names_of(&a), want, "{base:?}");
        // What is written loads: every member left is what manifest.json
        // needs or the engine wrote beside it.
        let out = dir.0.join("out.tar");
        a.write_to(&out, 0).unwrap();
        assert_eq!(member(&out, "manifest.json"), member(&src, "manifest.json"));
    }
    // A payload of an earlier delta reads without its left-out layers.
    let mut a = Archive::read(&src, Kind::Docker).unwrap();
    a.leave_out(&stacks(&[&['0', '1']])).unwrap();
    let out = dir.0.join("delta.tar");
    a.write_to(&out, 0).unwrap();
    assert!(Archive::read(&out, Kind::Docker)
        .unwrap_err()
        .to_string()
        .contains("layer l0/layer.tar is not in the archive"));
    let again = Archive::read_payload(&out).unwrap();
    assert_eq!(again.diff_ids(1).unwrap(), d(&['0', '9', '1']));
}

#[test]
fn an_image_without_diff_ids_for_each_layer_is_refused_for_a_delta() {
    let dir = TempDir::new("delta-bad");
    let src = dir.0.join("app.tar");
    docker_save(&src, &format!("{A}.json"), &["app:1"]);
    let mut a = Archive::read(&src, Kind::Docker).unwrap();
    let e = a.leave_out(&BaseLayers::default()).unwrap_err().to_string();
    assert!(
        e.contains(
            "lists 1 layer(s) but its configuration's rootfs.diff_ids holds 0 valid diff ID(s)"
        ),
        "{e}"
    );
}

fn names_of(a: &Archive) -> Vec<String> {
    a.members_names()
}
