//! The inline image archive on its way from the client to the engine.
//!
//! [`TagStripper`] wraps the payload stream and hands the engine the same tar
//! with two changes: `manifest.json` loses its `RepoTags` and the legacy
//! `repositories` file is dropped. The engine then loads the images without
//! tagging anything, so an archive can never move a tag an existing image
//! holds — not even one that fails verification afterwards. On the way it
//! checks the tar structure itself: a payload that ends before the tar's end
//! marker, has no `manifest.json`, or differs from the length the artifact
//! states fails the read, which aborts the upload and the engine's load.
//!
//! Memory stays bounded: entries pass through block by block; only
//! `manifest.json` (a few hundred bytes per image) is held, up to
//! [`MAX_MANIFEST`].

use std::io::{self, Read};

use serde_json::Value;

const BLOCK: usize = 512;
/// A `docker save` manifest lists configs and layer paths; even hundreds of
/// images stay far below this.
pub const MAX_MANIFEST: u64 = 4 << 20;

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
    /// Collecting manifest.json: its header, `size` bytes, then `pad`.
    Manifest {
        header: Box<[u8; BLOCK]>,
        size: u64,
        pad: u64,
        data: Vec<u8>,
    },
    /// After the end marker: whatever padding follows passes through.
    Trailer,
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
    /// The next entry's name comes from a PAX or GNU long-name record.
    long_name: bool,
    manifest_seen: bool,
    finished: bool,
    summary: Summary,
}

fn corrupt(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Octal (NUL/space padded) or base-256 numeric field.
fn numeric(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(*b)))
                .ok_or_else(|| corrupt("a tar size field overflows"))?;
        }
        return Ok(v);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if text.is_empty() {
        return Ok(0);
    }
    let text =
        std::str::from_utf8(&text).map_err(|_| corrupt("a tar numeric field is not octal"))?;
    u64::from_str_radix(text, 8)
        .map_err(|_| corrupt(format!("tar numeric field {text:?} is not octal")))
}

fn checksum_ok(h: &[u8; BLOCK]) -> io::Result<bool> {
    let stored = numeric(&h[148..156])?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    Ok(stored == sum)
}

fn set_checksum(h: &mut [u8; BLOCK]) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
}

fn entry_name(h: &[u8; BLOCK]) -> String {
    let field = |r: std::ops::Range<usize>| -> String {
        let raw = &h[r];
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        String::from_utf8_lossy(&raw[..end]).into_owned()
    };
    let name = field(0..100);
    let prefix = if &h[257..262] == b"ustar" {
        field(345..500)
    } else {
        String::new()
    };
    let full = if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    };
    full.trim_start_matches("./").to_owned()
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// `manifest.json` without tags; also returns its `Config` entries.
fn strip_tags(data: &[u8]) -> io::Result<(Vec<u8>, Vec<String>)> {
    let mut doc: Value = serde_json::from_slice(data)
        .map_err(|e| corrupt(format!("manifest.json is not valid JSON ({e})")))?;
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
            long_name: false,
            manifest_seen: false,
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

    fn truncated(&self) -> io::Error {
        corrupt(format!(
            "the archive ends after {} bytes, inside a tar entry: it is truncated",
            self.summary.bytes
        ))
    }

    /// Produces the next output bytes into `self.out`; false at the end.
    fn step(&mut self) -> io::Result<bool> {
        const CHUNK: usize = 64 * 1024;
        match std::mem::replace(&mut self.state, State::Header) {
            State::Header => {
                let mut h = Box::new([0u8; BLOCK]);
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
                if h.iter().all(|b| *b == 0) {
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
                    return Ok(true);
                }
                self.zero_blocks = 0;
                if !checksum_ok(&h)? {
                    return Err(corrupt(format!(
                        "the tar header at byte {} has a wrong checksum: the archive is corrupt",
                        self.summary.bytes - BLOCK as u64
                    )));
                }
                let size = numeric(&h[124..136])?;
                let kind = h[156];
                let named_elsewhere = std::mem::replace(&mut self.long_name, false);
                if matches!(kind, b'x' | b'L') {
                    self.long_name = true;
                }
                let name = entry_name(&h);
                let regular = matches!(kind, b'0' | 0);
                if !named_elsewhere && regular && name == "manifest.json" {
                    if self.manifest_seen {
                        return Err(corrupt("the archive holds manifest.json twice"));
                    }
                    if size > MAX_MANIFEST {
                        return Err(corrupt(format!(
                            "manifest.json is {size} bytes, more than a docker save manifest can be"
                        )));
                    }
                    self.state = State::Manifest {
                        header: h,
                        size,
                        pad: padded(size) - size,
                        data: Vec::with_capacity(size as usize),
                    };
                } else if !named_elsewhere && regular && name == "repositories" {
                    self.state = State::Skip { left: padded(size) };
                } else {
                    self.out.extend_from_slice(&h[..]);
                    self.state = State::Pass { left: padded(size) };
                }
                Ok(true)
            }
            State::Pass { left } | State::Skip { left } if left == 0 => {
                self.state = State::Header;
                Ok(true)
            }
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
            State::Manifest {
                mut header,
                size,
                pad,
                mut data,
            } => {
                data.resize(size as usize, 0);
                let mut rest = vec![0u8; pad as usize];
                if self.fill(&mut data)? < size as usize || self.fill(&mut rest)? < pad as usize {
                    return Err(self.truncated());
                }
                let (text, configs) = strip_tags(&data)?;
                self.summary.configs = configs;
                self.manifest_seen = true;
                let len = text.len() as u64;
                header[124..136].copy_from_slice(format!("{len:011o}\0").as_bytes());
                set_checksum(&mut header);
                self.out.extend_from_slice(&header[..]);
                self.out.extend_from_slice(&text);
                self.out
                    .resize(self.out.len() + (padded(len) - len) as usize, 0);
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
