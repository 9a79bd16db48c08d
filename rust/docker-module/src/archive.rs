//! The inline image archive on its way from the client to the engine.
//!
//! [`TagStripper`] wraps the payload stream and hands the engine the same tar
//! with three changes: `manifest.json` loses its `RepoTags`, `index.json`
//! loses the annotations that name images (`org.opencontainers.image.ref.name`,
//! `io.containerd.image.name`), and the legacy `repositories` file is dropped.
//! The engine then loads the images without tagging anything, so an archive
//! can never move a tag an existing image holds.
//!
//! That only holds if the filter sees every member under the name the
//! engine's loader will give it. The loader (Docker 20.10's
//! `image/tarexport`) extracts the whole tar with Go's `archive/tar` into a
//! scratch directory and then reads `manifest.json` there, so the filter
//! reads names as Go does and as extraction lands them: a PAX `path` record or
//! a GNU long-name record replaces the header's name (the GNU one wins), a
//! ustar prefix is joined in front, `./`, `//` and `a/..` are cleaned, a
//! leading `/` lands at the top, a PAX `size` record replaces the header's
//! size, link, directory and device headers carry no data whatever their size
//! field says, and a later member of a name replaces an earlier one. What it
//! cannot be sure of, it refuses rather than guesses:
//!
//! * a second `manifest.json`, `index.json` or `repositories`, under any
//!   spelling (a later one would replace the one that was stripped), or a
//!   PAX global header named like one of them;
//! * any of them as a link, directory or anything but a regular file (the
//!   loader follows a symlinked `manifest.json`);
//! * a member below a path an earlier member made a symlink (extraction
//!   writes through it, e.g. `d -> .` then `d/manifest.json`);
//! * a name that climbs out with `..`, sparse files, PAX GNU-sparse records,
//!   a PAX and a GNU name for one member, two extended headers of one kind in
//!   a row, an extended header that describes no member, a link or directory
//!   header that claims data, a lone zero block before more headers, and an
//!   archive whose first bytes look like a compressed stream (the engine
//!   would decompress it and read another tar than the filter did).
//!
//! Every header and name is bounded before anything is buffered: names and
//! link targets at [`MAX_NAME`] bytes (PATH_MAX), PAX headers at [`MAX_PAX`],
//! `manifest.json` and `index.json` at [`MAX_MANIFEST`]; a larger one is
//! refused as soon as its header is read. Member data passes through block by
//! block, so memory stays flat whatever the archive holds.
//!
//! On the way it checks the tar structure itself: a payload that ends before
//! the tar's end marker, has no `manifest.json`, or differs from the length
//! the artifact states fails the read, which aborts the upload and the
//! engine's load. Every error names archive-controlled text only through
//! [`shown`]: short and printable.

use std::collections::HashSet;
use std::io::{self, Read};

use serde_json::Value;

const BLOCK: usize = tar_bounds::BLOCK;
/// A `docker save` manifest lists configs and layer paths; even hundreds of
/// images stay far below this. The same bound holds for `index.json`.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Longest member name or link target (Linux's PATH_MAX): a GNU long-name or
/// long-link record beyond it is refused before it is read.
pub const MAX_NAME: u64 = 4096;
/// Largest PAX extended header (all its records together).
pub const MAX_PAX: u64 = 64 << 10;
/// Bytes of symlink names remembered to spot members written through one; a
/// `docker save` archive links only shared layers, a few per image.
const MAX_LINK_NAMES: usize = 1 << 20;

/// The names the engine's loaders read besides the blobs they point to.
const MANIFEST: &[u8] = b"manifest.json";
const INDEX: &[u8] = b"index.json";
const REPOSITORIES: &[u8] = b"repositories";

/// OCI index annotations from which Docker 25+ (containerd image store) and
/// containerd name the images they import.
const NAMING_ANNOTATIONS: &[&str] = &[
    "org.opencontainers.image.ref.name",
    "io.containerd.image.name",
];

/// The magic numbers the engine's loader recognises to decompress an archive
/// before reading it as a tar (gzip, bzip2, xz, zstd).
const COMPRESSED: &[&[u8]] = &[
    b"\x1f\x8b\x08",
    b"BZh",
    b"\xfd\x37\x7a\x58\x5a\x00",
    b"\x28\xb5\x2f\xfd",
];

/// What the archive turned out to be, once read to its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Payload bytes read.
    pub bytes: u64,
    /// The `Config` entries of `manifest.json`, as written.
    pub configs: Vec<String>,
}

enum State {
    /// At a header boundary.
    Header,
    /// Passing `left` bytes of entry data and padding through.
    Pass { left: u64 },
    /// Dropping `left` bytes of entry data and padding.
    Skip { left: u64 },
    /// After the end marker: whatever follows passes through (the engine's
    /// loader stops reading the tar at the marker).
    Trailer,
}

/// Extended headers read for the member that follows them.
#[derive(Default)]
struct Pending {
    /// Their bytes as read, handed on with the member they describe.
    raw: Vec<u8>,
    long_name: Option<Vec<u8>>,
    long_link: bool,
    pax: Option<Pax>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// The records of one PAX header that change how the member is read.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    size: Option<u64>,
}

/// The filtering reader. Read it to EOF; [`TagStripper::summary`] then says
/// what passed.
pub struct TagStripper<R> {
    inner: R,
    declared: Option<u64>,
    state: State,
    /// Bytes ready for the engine.
    out: Vec<u8>,
    out_at: usize,
    zero_blocks: u8,
    pending: Pending,
    /// Names (cleaned) of the symlinks seen so far, and their total length.
    links: HashSet<Vec<u8>>,
    link_bytes: usize,
    manifest_seen: bool,
    index_seen: bool,
    repositories_seen: bool,
    finished: bool,
    summary: Summary,
}

fn corrupt(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Archive-controlled bytes for a message: everything but printable ASCII
/// escaped (control characters, bidirectional overrides, invalid UTF-8 as
/// U+FFFD), cut to at most `max` bytes with `…` where it was cut. Bytes, not
/// characters: one escaped character takes up to 10 (`\u{1f600}`).
pub fn printable(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    for c in String::from_utf8_lossy(bytes).chars() {
        let before = out.len();
        if (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
        if out.len() > max {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}

/// [`printable`], quoted, with the full length when cut.
pub fn shown(bytes: &[u8], max: usize) -> String {
    let text = printable(bytes, max);
    if text.ends_with('…') {
        format!("\"{text}\" ({} bytes)", bytes.len())
    } else {
        format!("\"{text}\"")
    }
}

/// A numeric header field as Go's `archive/tar` reads it: base-256 when the
/// top bit is set, else octal with spaces and NULs trimmed on both sides and
/// the text cut at the first NUL left. Negative and oversized values, which
/// the engine refuses too, are refused.
fn numeric(field: &[u8], what: &str) -> io::Result<u64> {
    let bad = || {
        corrupt(format!(
            "a tar header's {what} field is not a number the engine reads"
        ))
    };
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return Err(bad());
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(*b)))
                .ok_or_else(bad)?;
        }
        return i64::try_from(v).map(|_| v).map_err(|_| bad());
    }
    let start = field.iter().position(|b| *b != b' ' && *b != 0);
    let Some(start) = start else { return Ok(0) };
    let end = field
        .iter()
        .rposition(|b| *b != b' ' && *b != 0)
        .unwrap_or(start)
        + 1;
    let text = &field[start..end];
    let text = &text[..text.iter().position(|b| *b == 0).unwrap_or(text.len())];
    if text.is_empty() || !text.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return Err(bad());
    }
    let text = std::str::from_utf8(text).map_err(|_| bad())?;
    let v = u64::from_str_radix(text, 8).map_err(|_| bad())?;
    i64::try_from(v).map(|_| v).map_err(|_| bad())
}

fn checksum_ok(h: &[u8; BLOCK]) -> io::Result<bool> {
    Ok(numeric(&h[148..156], "checksum")? == tar_bounds::checksum(h))
}

fn set_checksum(h: &mut [u8; BLOCK]) {
    let text = format!("{:06o}\0 ", tar_bounds::checksum(h));
    h[148..156].copy_from_slice(text.as_bytes());
}

/// A header field up to its first NUL.
fn field(raw: &[u8]) -> &[u8] {
    &raw[..raw.iter().position(|b| *b == 0).unwrap_or(raw.len())]
}

/// The name in the header itself, with the ustar (or star) prefix joined in
/// front where Go's reader joins it: only for the POSIX magic `ustar\0`, not
/// for GNU's `ustar  \0` or old v7 headers.
fn header_name(h: &[u8; BLOCK]) -> Vec<u8> {
    let name = field(&h[0..100]);
    let prefix: &[u8] = if &h[257..263] == b"ustar\0" {
        if &h[508..512] == b"tar\0" {
            field(&h[345..476])
        } else {
            field(&h[345..500])
        }
    } else {
        b""
    };
    if prefix.is_empty() {
        name.to_vec()
    } else {
        [prefix, b"/", name].concat()
    }
}

/// Where extraction puts a member, as Go's `filepath.Clean` and the engine's
/// untar make it: `.` and empty components dropped, `..` taken back, a
/// leading `/` meaning the top. `None` when it climbs above the top, which
/// the engine refuses too.
fn clean(name: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            c => parts.push(c.to_vec()),
        }
    }
    Some(parts)
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// Parses the records of one PAX header as Go's `parsePAX` does
/// (`<length> <key>=<value>\n`, the length counting the whole record), and
/// keeps those that change how the member is read. Anything Go would reject,
/// or that would need Go's sparse-file handling, is refused.
fn parse_pax(data: &[u8]) -> io::Result<Pax> {
    let bad = |why: &str| corrupt(format!("a PAX extended header {why}"));
    let mut pax = Pax::default();
    let mut rest = data;
    let mut seen: Vec<&[u8]> = Vec::new();
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| bad("has a record without a length"))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("has a record whose length is not a number"))?;
        if len < space + 3 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad("has a record whose length does not match it"));
        }
        let record = &rest[space + 1..len - 1];
        rest = &rest[len..];
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| bad("has a record without ="))?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        if key.is_empty() || key.contains(&0) {
            return Err(bad("has a record with an empty or NUL key"));
        }
        if key.starts_with(b"GNU.sparse.") {
            return Err(bad(
                "describes a sparse file, which an image archive never holds",
            ));
        }
        let relevant = matches!(key, b"path" | b"linkpath" | b"size");
        if relevant && seen.contains(&key) {
            return Err(bad(&format!("sets {} twice", shown(key, 16))));
        }
        seen.push(key);
        match key {
            b"path" | b"linkpath" if value.is_empty() || value.contains(&0) => {
                return Err(bad("has an empty path or one with a NUL byte"))
            }
            b"path" => pax.path = Some(value.to_vec()),
            b"size" => {
                let size = std::str::from_utf8(value)
                    .ok()
                    .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|t| t.parse::<i64>().ok())
                    .ok_or_else(|| bad("has a size that is not a number"))?;
                pax.size = Some(size as u64);
            }
            _ => {}
        }
    }
    Ok(pax)
}

/// `manifest.json` without tags; also returns its `Config` entries.
fn strip_tags(data: &[u8]) -> io::Result<(Vec<u8>, Vec<String>)> {
    let mut doc: Value = serde_json::from_slice(data).map_err(|e| {
        corrupt(format!(
            "manifest.json is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let entries = doc
        .as_array_mut()
        .ok_or_else(|| corrupt("manifest.json is not a list of images"))?;
    let mut configs = Vec::new();
    for e in entries.iter_mut() {
        let obj = e
            .as_object_mut()
            .ok_or_else(|| corrupt("manifest.json lists something that is not an image"))?;
        obj.remove("RepoTags");
        if let Some(c) = obj.get("Config").and_then(Value::as_str) {
            configs.push(c.to_owned());
        }
    }
    Ok((serde_json::to_vec(&doc).expect("JSON serialises"), configs))
}

/// `index.json` without the annotations that name images.
fn strip_annotations(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut doc: Value = serde_json::from_slice(data).map_err(|e| {
        corrupt(format!(
            "index.json is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let index = doc
        .as_object_mut()
        .ok_or_else(|| corrupt("index.json is not an OCI image index"))?;
    if let Some(annotations) = index.get_mut("annotations").and_then(Value::as_object_mut) {
        for key in NAMING_ANNOTATIONS {
            annotations.remove(*key);
        }
    }
    if let Some(manifests) = index.get_mut("manifests").and_then(Value::as_array_mut) {
        for m in manifests {
            if let Some(annotations) = m.get_mut("annotations").and_then(Value::as_object_mut) {
                for key in NAMING_ANNOTATIONS {
                    annotations.remove(*key);
                }
            }
        }
    }
    Ok(serde_json::to_vec(&doc).expect("JSON serialises"))
}

/// A plain ustar header for a member the filter rewrote.
fn fresh_header(name: &[u8], size: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    set_checksum(&mut h);
    h
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        b'1' => "a hard link",
        b'2' => "a symlink",
        b'3' | b'4' => "a device node",
        b'5' => "a directory",
        b'6' => "a FIFO",
        0 | b'0' => "a directory (trailing /)",
        _ => "not a regular file",
    }
}

impl<R: Read> TagStripper<R> {
    /// `declared`: the payload length the artifact or the client states.
    pub fn new(inner: R, declared: Option<u64>) -> TagStripper<R> {
        TagStripper {
            inner,
            declared,
            state: State::Header,
            out: Vec::with_capacity(64 * 1024),
            out_at: 0,
            zero_blocks: 0,
            pending: Pending::default(),
            links: HashSet::new(),
            link_bytes: 0,
            manifest_seen: false,
            index_seen: false,
            repositories_seen: false,
            finished: false,
            summary: Summary::default(),
        }
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Reads exactly `buf.len()` bytes, or fewer only at the payload's end.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            let n = self.inner.read(&mut buf[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        self.summary.bytes += got as u64;
        if let Some(d) = self.declared {
            if self.summary.bytes > d {
                return Err(corrupt(format!(
                    "the payload is longer than the {d} bytes the artifact states"
                )));
            }
        }
        Ok(got)
    }

    /// Reads `size` bytes of member data and its padding; `size` is bounded
    /// by the caller.
    fn read_data(&mut self, size: u64) -> io::Result<(Vec<u8>, Vec<u8>)> {
        let mut data = vec![0u8; size as usize];
        let mut pad = vec![0u8; (padded(size) - size) as usize];
        if self.fill(&mut data)? < data.len() || self.fill(&mut pad)? < pad.len() {
            return Err(self.truncated());
        }
        Ok((data, pad))
    }

    fn truncated(&self) -> io::Error {
        corrupt(format!(
            "the archive ends after {} bytes, inside a tar entry: it is truncated",
            self.summary.bytes
        ))
    }

    /// Reads one extended header's data ('L', 'K', 'x', 'g'), bounded.
    fn extension(&mut self, h: &[u8; BLOCK], kind: u8, size: u64) -> io::Result<Vec<u8>> {
        let (limit, what) = match kind {
            b'L' => (MAX_NAME, "a GNU long-name record"),
            b'K' => (MAX_NAME, "a GNU long-link record"),
            _ => (MAX_PAX, "a PAX extended header"),
        };
        if size > limit {
            return Err(corrupt(format!(
                "{what} of {size} bytes at byte {}; no path is longer than {MAX_NAME} bytes nor a PAX header longer than {MAX_PAX}: the archive is crafted",
                self.summary.bytes - BLOCK as u64
            )));
        }
        let (data, pad) = self.read_data(size)?;
        if kind != b'g' {
            self.pending.raw.extend_from_slice(&h[..]);
            self.pending.raw.extend_from_slice(&data);
            self.pending.raw.extend_from_slice(&pad);
        }
        Ok(data)
    }

    /// Reads a header and decides what happens to its member.
    fn header(&mut self) -> io::Result<()> {
        let mut h = Box::new([0u8; BLOCK]);
        let at = self.summary.bytes;
        let n = self.fill(&mut h[..])?;
        if n == 0 {
            return Err(corrupt(format!(
                "the archive ends after {} bytes without the tar end marker: it is truncated",
                self.summary.bytes
            )));
        }
        if n < BLOCK {
            return Err(self.truncated());
        }
        if at == 0 && COMPRESSED.iter().any(|m| h.starts_with(m)) {
            return Err(corrupt(
                "the archive starts like a compressed stream, which the engine would decompress and read differently: write a plain tar",
            ));
        }
        if h.iter().all(|b| *b == 0) {
            if !self.pending.is_empty() {
                return Err(corrupt("an extended header at the end describes no member"));
            }
            self.zero_blocks += 1;
            self.out.extend_from_slice(&h[..]);
            if self.zero_blocks == 2 {
                if !self.manifest_seen {
                    return Err(corrupt(
                        "the archive has no manifest.json: it is not what `docker save` writes",
                    ));
                }
                self.state = State::Trailer;
            }
            return Ok(());
        }
        if self.zero_blocks != 0 {
            return Err(corrupt(format!(
                "a single zero block at byte {} is followed by more headers: the engine's reader stops there",
                at - BLOCK as u64
            )));
        }
        if !checksum_ok(&h)? {
            return Err(corrupt(format!(
                "the tar header at byte {at} has a wrong checksum: the archive is corrupt"
            )));
        }
        let size = numeric(&h[124..136], "size")?;
        let kind = h[156];
        match kind {
            b'L' | b'K' => {
                let twice = if kind == b'L' {
                    self.pending.long_name.is_some()
                } else {
                    self.pending.long_link
                };
                if twice {
                    return Err(corrupt(format!(
                        "two GNU long-name records in a row at byte {at}: which one names the member is not certain"
                    )));
                }
                let data = self.extension(&h, kind, size)?;
                let end = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                if data[..end].contains(&0) {
                    return Err(corrupt(format!(
                        "a GNU long-name record at byte {at} holds a NUL byte inside the name"
                    )));
                }
                if kind == b'L' {
                    self.pending.long_name = Some(data[..end].to_vec());
                } else {
                    self.pending.long_link = true;
                }
                return Ok(());
            }
            b'x' => {
                if self.pending.pax.is_some() {
                    return Err(corrupt(format!(
                        "two PAX extended headers in a row at byte {at}: which one describes the member is not certain"
                    )));
                }
                let data = self.extension(&h, kind, size)?;
                self.pending.pax = Some(parse_pax(&data)?);
                return Ok(());
            }
            b'g' => {
                if !self.pending.is_empty() {
                    return Err(corrupt(format!(
                        "a PAX global header at byte {at} follows an extended header that then describes nothing"
                    )));
                }
                let data = self.extension(&h, kind, size)?;
                // Go hands a global header out as a member of its own, named
                // by its `path` record or its header. Docker 20.10's untar
                // skips it (checked on the bench); older untar code first
                // removed whatever was at that name. Not worth depending on.
                let pax = parse_pax(&data)?;
                let name = pax.path.unwrap_or_else(|| header_name(&h));
                self.check_path(&name, at)?;
                let cleaned = clean(&name).unwrap_or_default().join(&b'/');
                if [MANIFEST, INDEX, REPOSITORIES].contains(&cleaned.as_slice()) {
                    return Err(corrupt(format!(
                        "a PAX global header at byte {at} is named {}, which some engines' untar would remove",
                        shown(&cleaned, 16)
                    )));
                }
                self.out.extend_from_slice(&h[..]);
                self.out.extend_from_slice(&data);
                self.out
                    .resize(self.out.len() + (padded(size) - size) as usize, 0);
                return Ok(());
            }
            b'S' => {
                return Err(corrupt(format!(
                    "the member at byte {at} is a sparse file, which an image archive never holds"
                )))
            }
            _ => {}
        }
        self.member(h, kind, size, at)
    }

    /// Where extraction puts `name`; refused when that climbs out of the
    /// archive or passes through a symlink the archive made.
    fn check_path(&self, name: &[u8], at: u64) -> io::Result<Vec<Vec<u8>>> {
        let Some(parts) = clean(name) else {
            return Err(corrupt(format!(
                "member {} at byte {at} climbs out of the archive with ..",
                shown(name, 48)
            )));
        };
        for depth in 1..parts.len() {
            if self.links.contains(&parts[..depth].join(&b'/')) {
                return Err(corrupt(format!(
                    "member {} at byte {at} would be written through the symlink {} the archive made",
                    shown(name, 48),
                    shown(&parts[..depth].join(&b'/'), 48)
                )));
            }
        }
        Ok(parts)
    }

    fn member(&mut self, h: Box<[u8; BLOCK]>, kind: u8, size: u64, at: u64) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let pax = pending.pax.unwrap_or_default();
        if pending.long_name.is_some() && pax.path.is_some() {
            return Err(corrupt(format!(
                "the member at byte {at} is named by both a PAX and a GNU long-name record: which name counts is not certain"
            )));
        }
        let name = match (pending.long_name, pax.path) {
            (Some(n), _) if !n.is_empty() => n,
            (_, Some(p)) => p,
            _ => header_name(&h),
        };
        if name.len() as u64 > MAX_NAME {
            return Err(corrupt(format!(
                "member name of {} bytes at byte {at}, longer than any path: the archive is crafted",
                name.len()
            )));
        }
        let size = pax.size.unwrap_or(size);
        let header_only = matches!(kind, b'1'..=b'6');
        if header_only && size != 0 {
            return Err(corrupt(format!(
                "member {} at byte {at} is {} but claims {size} bytes of data: the engine would read them as headers",
                shown(&name, 48),
                kind_name(kind)
            )));
        }
        let parts = self.check_path(&name, at)?;
        let dir = kind == b'5' || (kind == 0 && name.ends_with(b"/"));
        let regular = matches!(kind, 0 | b'0') && !dir;
        let cleaned = parts.join(&b'/');
        if cleaned.is_empty() && !dir {
            return Err(corrupt(format!(
                "member {} at byte {at} names the top of the archive but is not a directory",
                shown(&name, 48)
            )));
        }
        if kind == b'2' {
            self.link_bytes += cleaned.len();
            if self.link_bytes > MAX_LINK_NAMES {
                return Err(corrupt(
                    "the archive holds more symlinks than an image archive does",
                ));
            }
            self.links.insert(cleaned.clone());
        }
        let special = [MANIFEST, INDEX, REPOSITORIES].contains(&cleaned.as_slice());
        if special && !regular {
            return Err(corrupt(format!(
                "{} at byte {at} is {}; the engine's loader would follow or reject it, so it must be a regular file",
                shown(&cleaned, 16),
                kind_name(kind)
            )));
        }
        if special {
            let seen = match cleaned.as_slice() {
                MANIFEST => &mut self.manifest_seen,
                INDEX => &mut self.index_seen,
                _ => &mut self.repositories_seen,
            };
            if std::mem::replace(seen, true) {
                return Err(corrupt(format!(
                    "the archive holds {} twice (the second as {} at byte {at}); a later one would replace the one the module checked",
                    shown(&cleaned, 16),
                    shown(&name, 48)
                )));
            }
        }
        match cleaned.as_slice() {
            MANIFEST | INDEX => {
                if size > MAX_MANIFEST {
                    return Err(corrupt(format!(
                        "{} is {size} bytes, more than an image archive's can be",
                        shown(&cleaned, 16)
                    )));
                }
                let (data, _) = self.read_data(size)?;
                let text = if cleaned == MANIFEST {
                    let (text, configs) = strip_tags(&data)?;
                    self.summary.configs = configs;
                    text
                } else {
                    strip_annotations(&data)?
                };
                let len = text.len() as u64;
                self.out.extend_from_slice(&fresh_header(&cleaned, len)[..]);
                self.out.extend_from_slice(&text);
                self.out
                    .resize(self.out.len() + (padded(len) - len) as usize, 0);
            }
            REPOSITORIES => {
                self.state = State::Skip { left: padded(size) };
            }
            _ => {
                self.out.extend_from_slice(&pending.raw);
                self.out.extend_from_slice(&h[..]);
                self.state = State::Pass { left: padded(size) };
            }
        }
        Ok(())
    }

    /// Produces the next output bytes into `self.out`; false at the end.
    fn step(&mut self) -> io::Result<bool> {
        const CHUNK: usize = 64 * 1024;
        match std::mem::replace(&mut self.state, State::Header) {
            State::Header => {
                self.header()?;
                Ok(true)
            }
            State::Pass { left } | State::Skip { left } if left == 0 => Ok(true),
            State::Pass { left } => {
                let want = left.min(CHUNK as u64) as usize;
                let start = self.out.len();
                self.out.resize(start + want, 0);
                let n = {
                    let mut buf = std::mem::take(&mut self.out);
                    let n = self.fill(&mut buf[start..]);
                    self.out = buf;
                    n?
                };
                self.out.truncate(start + n);
                if n < want {
                    return Err(self.truncated());
                }
                self.state = State::Pass {
                    left: left - n as u64,
                };
                Ok(true)
            }
            State::Skip { left } => {
                let want = left.min(CHUNK as u64) as usize;
                let mut buf = vec![0u8; want];
                let n = self.fill(&mut buf)?;
                if n < want {
                    return Err(self.truncated());
                }
                self.state = State::Skip {
                    left: left - n as u64,
                };
                Ok(true)
            }
            State::Trailer => {
                let mut buf = vec![0u8; CHUNK];
                let n = self.fill(&mut buf)?;
                if n == 0 {
                    if let Some(d) = self.declared {
                        if self.summary.bytes != d {
                            return Err(corrupt(format!(
                                "the payload is {} bytes but the artifact states {d}: it is truncated or was replaced",
                                self.summary.bytes
                            )));
                        }
                    }
                    return Ok(false);
                }
                buf.truncate(n);
                self.out.extend_from_slice(&buf);
                self.state = State::Trailer;
                Ok(true)
            }
        }
    }
}

impl<R: Read> Read for TagStripper<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.out_at == self.out.len() {
            self.out.clear();
            self.out_at = 0;
            // Entry data (nearly all of an archive) goes straight from the
            // payload into the caller's buffer: no copy, no zero-filling.
            if let State::Pass { left } = self.state {
                if left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.fill(&mut buf[..want])?;
                    if n == 0 {
                        return Err(self.truncated());
                    }
                    self.state = State::Pass {
                        left: left - n as u64,
                    };
                    return Ok(n);
                }
            }
            if self.finished || !self.step()? {
                self.finished = true;
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.out_at);
        buf[..n].copy_from_slice(&self.out[self.out_at..self.out_at + n]);
        self.out_at += n;
        Ok(n)
    }
}

/// The image ID a `Config` entry of a `docker save` manifest names
/// (`<hex>.json`, or `blobs/sha256/<hex>` in the OCI-shaped archives of newer
/// engines). The engine decides the real ID from the content; this is for
/// error messages.
pub fn config_id(config: &str) -> Option<String> {
    let base = config.rsplit('/').next()?;
    let hex = base.strip_suffix(".json").unwrap_or(base);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
