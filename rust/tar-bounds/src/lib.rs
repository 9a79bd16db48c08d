//! Bounds on tar headers, checked before the tar crate reads them.
//!
//! The tar crate reads a GNU long-name or long-link record, and a PAX
//! extended header, whole into memory before it hands out the member they
//! describe, however long the header says it is: a 1 GiB long name cost the
//! persistent-app module 6.1 GiB of RSS and 106 s, and came back as a 64 MiB
//! error line. [`Walk`] follows the headers by the tar crate's own rules
//! (which headers are extensions, which size counts, where the next header
//! is) and refuses a header whose record is longer than a path can be
//! ([`MAX_NAME`], PATH_MAX) or than a PAX header needs to be ([`MAX_PAX`]),
//! before a byte of the record is read. It also refuses GNU sparse members:
//! the readers refuse them anyway, and the tar crate would first read their
//! chain of extension blocks into memory.
//!
//! [`Walk`] is the decision alone, one header block at a time; the readers
//! bring the bytes: [`Bounded`] as a stream passes (the device module), a
//! seeking walk over a file (the generators).
//!
//! The docker module's inline-archive filter reads by the engine's (Go's)
//! rules, not the tar crate's, and keeps its own walk.

use std::fmt;
use std::io::{self, Read};

/// Longest member name or link target (Linux's PATH_MAX).
pub const MAX_NAME: u64 = 4096;
/// Largest PAX extended header (all its records together).
pub const MAX_PAX: u64 = 64 << 10;
/// A tar block: every header is one, every member's data is padded to them.
pub const BLOCK: usize = 512;

/// Why a header is refused. The text is short, printable and says what to
/// do; a reader adds where (a byte offset, a payload name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Checksum,
    Size,
    TooLong { what: &'static str, size: u64 },
    Sparse,
    Overflow,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Checksum => write!(
                f,
                "a tar header has a wrong checksum: the archive is corrupt"
            ),
            Refusal::Size => write!(
                f,
                "a tar header's size is not a number: the archive is corrupt"
            ),
            Refusal::TooLong { what, size } => write!(
                f,
                "{what} of {size} bytes; no path is longer than {MAX_NAME} bytes nor a PAX header \
                 longer than {MAX_PAX}: the archive is crafted or corrupt"
            ),
            Refusal::Sparse => write!(f, "a sparse member; sparse files are not supported"),
            Refusal::Overflow => write!(f, "a tar header's size overflows: the archive is corrupt"),
        }
    }
}

impl std::error::Error for Refusal {}

/// What a header says about the bytes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Bytes of data (for a member after a PAX header: the size it set).
    pub data: u64,
    /// Zero bytes after the data, up to the next block.
    pub pad: u64,
    /// A PAX header the tar crate applies: hand its data (at most
    /// [`MAX_PAX`] bytes) to [`Walk::pax_data`].
    pub pax: bool,
}

impl Member {
    /// Data and padding: where the next header starts.
    pub fn span(&self) -> u64 {
        self.data + self.pad
    }
}

/// A header's checksum as the tar crate computes it: unsigned, the
/// checksum field itself counted as spaces.
pub fn checksum(h: &[u8; BLOCK]) -> u64 {
    h[..148]
        .iter()
        .chain(&h[156..])
        .map(|b| u64::from(*b))
        .sum::<u64>()
        + 8 * 32
}

/// The walk over an archive's headers, one block at a time.
#[derive(Debug, Default)]
pub struct Walk {
    /// The `size` a PAX header set for the member that follows.
    pax_size: Option<u64>,
}

impl Walk {
    pub fn new() -> Walk {
        Walk::default()
    }

    /// One header block. `Ok(None)` is the end-of-archive block: nothing
    /// after it is read as a header.
    pub fn header(&mut self, h: &[u8; BLOCK]) -> Result<Option<Member>, Refusal> {
        if h.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        if octal(&h[148..156]) != Some(checksum(h)) {
            return Err(Refusal::Checksum);
        }
        let kind = h[156];
        let size = size_field(&h[124..136]).ok_or(Refusal::Size)?;
        let magic = &h[257..265];
        let recognised = magic == b"ustar  \0" || magic == b"ustar\x0000";
        let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
        let limit = match kind {
            b'L' | b'K' => Some((MAX_NAME, "a GNU long-name record")),
            b'x' | b'g' => Some((MAX_PAX, "a PAX extended header")),
            _ => None,
        };
        if let Some((max, what)) = limit {
            if size > max {
                return Err(Refusal::TooLong { what, size });
            }
        }
        if kind == b'S' {
            return Err(Refusal::Sparse);
        }
        // As the tar crate: a PAX header's `size` replaces the size of the
        // next header that is not itself an extension; it describes only the
        // member the crate hands out next.
        let data = match self.pax_size {
            Some(s) if !extension => s,
            _ => size,
        };
        if !(recognised && matches!(kind, b'L' | b'K' | b'x')) {
            self.pax_size = None;
        }
        let block = BLOCK as u64;
        let pad = data.checked_add(block - 1).ok_or(Refusal::Overflow)? / block * block - data;
        Ok(Some(Member {
            data,
            pad,
            pax: recognised && kind == b'x',
        }))
    }

    /// The data of a header whose [`Member::pax`] was set.
    pub fn pax_data(&mut self, data: &[u8]) {
        self.pax_size = pax_size(data);
    }
}

/// The tar crate's octal field: up to the first NUL, blanks trimmed.
fn octal(field: &[u8]) -> Option<u64> {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    let text = std::str::from_utf8(&field[..end]).ok()?;
    u64::from_str_radix(text.trim(), 8).ok()
}

/// A size field: octal, or GNU base-256 when the top bit is set.
fn size_field(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        Some(
            field[1..]
                .iter()
                .fold(0u64, |v, b| (v << 8) | u64::from(*b)),
        )
    } else {
        octal(field)
    }
}

/// The `size` record of PAX data as the tar crate finds it: records are
/// lines `<len> <key>=<value>`, read until the first malformed one.
fn pax_size(data: &[u8]) -> Option<u64> {
    for line in data.split(|b| *b == b'\n') {
        if line.is_empty() {
            return None;
        }
        let space = line.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
        if line.len() + 1 != len {
            return None;
        }
        let record = &line[space + 1..];
        let eq = record.iter().position(|b| *b == b'=')?;
        if &record[..eq] == b"size" {
            return std::str::from_utf8(&record[eq + 1..]).ok()?.parse().ok();
        }
    }
    None
}

enum State {
    /// Collecting a header block.
    Header,
    /// Passing a member's data, then its padding; a PAX header's data is
    /// kept (it is bounded) for the walk.
    Data { data: u64, pad: u64, keep: bool },
    /// After the end-of-archive block: nothing more to check.
    Done,
}

/// A reader that walks the headers of the tar stream passing through it and
/// fails the read at a refused header, before any byte of that header
/// reaches the tar crate reading from it.
pub struct Bounded<R> {
    inner: R,
    walk: Walk,
    block: Box<[u8; BLOCK]>,
    have: usize,
    state: State,
    /// The data of the PAX header being read.
    pax: Vec<u8>,
    /// A refused header, reported by every read from then on.
    failed: Option<Refusal>,
}

impl<R: Read> Bounded<R> {
    pub fn new(inner: R) -> Bounded<R> {
        Bounded {
            inner,
            walk: Walk::new(),
            block: Box::new([0u8; BLOCK]),
            have: 0,
            state: State::Header,
            pax: Vec::new(),
            failed: None,
        }
    }

    /// Looks at one whole header block.
    fn header(&mut self) -> Result<(), Refusal> {
        self.state = match self.walk.header(&self.block)? {
            None => State::Done,
            Some(m) => State::Data {
                data: m.data,
                pad: m.pad,
                keep: m.pax,
            },
        };
        self.pax.clear();
        self.after_data();
        Ok(())
    }

    /// At the end of a member's data and padding: the next header.
    fn after_data(&mut self) {
        if let State::Data {
            data: 0,
            pad: 0,
            keep,
        } = self.state
        {
            if keep {
                self.walk.pax_data(&self.pax);
            }
            self.state = State::Header;
        }
    }

    /// Walks `bytes` (just read); on a refused header, returns how many of
    /// them came before it and the reason.
    fn walk(&mut self, bytes: &[u8]) -> Result<(), (usize, Refusal)> {
        let mut i = 0;
        while i < bytes.len() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::Header => {
                    let start = i;
                    let began = self.have;
                    let k = (BLOCK - self.have).min(bytes.len() - i);
                    self.block[self.have..self.have + k].copy_from_slice(&bytes[i..i + k]);
                    self.have += k;
                    i += k;
                    if self.have == BLOCK {
                        self.have = 0;
                        self.header().map_err(|why| {
                            // Bytes of this header handed out by an earlier
                            // read cannot be taken back: refuse at once then.
                            (if began == 0 { start } else { 0 }, why)
                        })?;
                    }
                }
                State::Data { data, pad, keep } => {
                    let in_data = (*data).min((bytes.len() - i) as u64) as usize;
                    if *keep {
                        self.pax.extend_from_slice(&bytes[i..i + in_data]);
                    }
                    *data -= in_data as u64;
                    i += in_data;
                    let in_pad = (*pad).min((bytes.len() - i) as u64) as usize;
                    *pad -= in_pad as u64;
                    i += in_pad;
                    self.after_data();
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(why) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, why.clone()));
        }
        let n = self.inner.read(buf)?;
        match self.walk(&buf[..n]) {
            Ok(()) => Ok(n),
            Err((before, why)) => {
                self.failed = Some(why.clone());
                if before > 0 {
                    // The member before the refused header reads to its end;
                    // the refusal comes with the header.
                    Ok(before)
                } else {
                    Err(io::Error::new(io::ErrorKind::InvalidData, why))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
