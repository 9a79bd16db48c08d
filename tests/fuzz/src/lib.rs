//! What every fuzz target shares: the memory bound, the check that an error
//! is one short printable line, and scratch directories on a RAM filesystem.
//!
//! docker-artifact-gen is a binary crate; its archive reader is compiled
//! into this crate from the generator's own source files, unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "../../../rust/docker-artifact-gen/src/archive.rs"]
pub mod archive;
#[allow(dead_code)]
#[path = "../../../rust/docker-artifact-gen/src/resolve.rs"]
mod resolve;

/// The longest error line a target accepts, in bytes: the line the Update
/// Module protocol crate writes to the deployment log at most
/// (`mender_module_protocol::MAX_LINE`). A longer one is cut there and loses
/// what would be right, which the message puts last.
pub const MAX_ERROR: usize = mender_module_protocol::MAX_LINE;

/// Rust heap the code under test may hold at once. Every parser here bounds
/// what it buffers (4 MiB manifests, 128 KiB copy buffers); 256 MiB is far
/// above any of them and far below what a machine survives.
pub const MAX_HEAP: usize = 256 << 20;

/// Counts live Rust allocations and aborts (a crash libFuzzer records) when
/// they pass [`MAX_HEAP`]. libFuzzer's own `-malloc_limit_mb` needs a
/// sanitizer's malloc hooks, which a stable build has not; `-rss_limit_mb`
/// still bounds the whole process.
pub struct Bounded;

static LIVE: AtomicUsize = AtomicUsize::new(0);

fn over(size: usize) -> ! {
    // No allocation and no panic inside the allocator: write and abort.
    let msg = b"fuzz: the code under test holds more than MAX_HEAP (256 MiB) of heap\n";
    unsafe {
        libc_write(2, msg.as_ptr(), msg.len());
    }
    let _ = size;
    std::process::abort()
}

extern "C" {
    #[link_name = "write"]
    fn libc_write(fd: i32, buf: *const u8, count: usize) -> isize;
}

unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size() > MAX_HEAP {
            over(layout.size());
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size() > MAX_HEAP {
            over(layout.size());
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let more = new_size - layout.size();
            if LIVE.fetch_add(more, Ordering::Relaxed) + more > MAX_HEAP {
                over(new_size);
            }
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

/// Fails unless `text` is one line of at most [`MAX_ERROR`] bytes without
/// control characters (newlines, escapes, DEL, C1).
pub fn check_line(what: &str, text: &str) {
    assert!(!text.is_empty(), "{what}: empty error message");
    assert!(
        text.len() <= MAX_ERROR,
        "{what}: error message of {} bytes (at most {MAX_ERROR}): {:?}",
        text.len(),
        text.chars().take(300).collect::<String>()
    );
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        panic!("{what}: error message holds the control character {c:?}: {text:?}");
    }
}

/// An error and its causes as the modules log it (`outer: inner: root`),
/// checked by [`check_line`].
pub fn check_error(what: &str, err: &(dyn std::error::Error + 'static)) {
    check_line(what, &mender_module_protocol::one_line(err));
    check_line(what, &err.to_string());
}

/// An `anyhow` error as the generators print it (`{:#}`), checked.
pub fn check_anyhow(what: &str, err: &anyhow::Error) {
    check_line(what, &format!("{err:#}"));
}

/// A fresh, empty directory for one input, removed when dropped. On
/// /dev/shm where there is one: targets that write files run at memory speed
/// and never fill a disk.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(target: &str) -> Scratch {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_owned()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("fz-{target}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Splits an input into at most `n` parts at the byte sequence `\0\0`, so
/// one input can fill several files.
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.windows(2).position(|w| w == b"\0\0") {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + 2..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}
