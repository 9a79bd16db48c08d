//! Which symlinks an app tree may hold: relative ones that stay inside the
//! tree. The generator refuses the others before they reach a device; the
//! device refuses them again, and also resolves chains of links, which only
//! the extracted tree can show.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Why a symlink leaves the tree, judged lexically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// The target is an absolute path.
    Absolute,
    /// The target climbs above the tree's root.
    Outside,
}

/// Checks a symlink `depth` directories below the tree's root (0 for a link
/// at the root) pointing to `target`: the target, taken relative to the
/// link's directory, must not be absolute or climb above the root.
pub fn check(depth: usize, target: &Path) -> Result<(), Escape> {
    if target.is_absolute() {
        return Err(Escape::Absolute);
    }
    let mut depth = depth;
    // Component by component, as the kernel walks it: `x/..` first goes
    // down, then back up.
    for c in target.as_os_str().as_bytes().split(|b| *b == b'/') {
        match c {
            b".." => {
                if depth == 0 {
                    return Err(Escape::Outside);
                }
                depth -= 1;
            }
            b"." | b"" => {}
            _ => depth += 1,
        }
    }
    Ok(())
}

/// True when a symlink at `rel` (a path below the tree's root) pointing to
/// `target` stays inside the tree.
pub fn stays_inside(rel: &Path, target: &Path) -> bool {
    let depth = rel.iter().count();
    depth > 0 && check(depth - 1, target).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_judged_from_their_own_directory() {
        assert!(stays_inside(Path::new("a"), Path::new("b")));
        assert!(stays_inside(Path::new("a/l"), Path::new("../b")));
        assert!(!stays_inside(Path::new("l"), Path::new("../b")));
        assert!(stays_inside(Path::new("a/l"), Path::new("x/../../b")));
        assert!(!stays_inside(Path::new("a/l"), Path::new("../../b")));
        assert!(!stays_inside(Path::new("a/l"), Path::new("/etc/passwd")));
        assert!(stays_inside(Path::new("a/l"), Path::new("././/b")));
        assert!(!stays_inside(Path::new(""), Path::new("b")));
        assert_eq!(check(0, Path::new("/x")), Err(Escape::Absolute));
        assert_eq!(check(0, Path::new("..")), Err(Escape::Outside));
    }
}
