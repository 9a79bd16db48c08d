//! One module process at a time: two installs, or an install and a rollback,
//! must never interleave. An exclusive `flock` on a file under /run/lock,
//! which the kernel drops when the process dies, so a power cut or a kill
//! never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mender_module_protocol::signal;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Held until dropped.
pub struct ModuleLock {
    _flock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open the module lock {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Lock { path: PathBuf, source: Errno },
    #[error("stopped by SIGTERM while waiting for another process of this module to release {}; the state can be run again", path.display())]
    Terminated { path: PathBuf },
}

/// The lock path: the environment variable `var` where set (tests give each
/// device its own), else `default`.
pub fn path_from_env(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// Takes the exclusive lock, waiting for another holder; `waiting` is called
/// once when the wait begins, and SIGTERM ends the wait.
pub fn acquire(path: &Path, waiting: impl FnOnce()) -> Result<ModuleLock, LockError> {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| LockError::Open {
            path: path.to_owned(),
            source,
        })?;
    let mut waiting = Some(waiting);
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => return Ok(ModuleLock { _flock: flock }),
            Err((f, Errno::EWOULDBLOCK)) | Err((f, Errno::EINTR)) => {
                file = f;
                if signal::terminated() {
                    return Err(LockError::Terminated {
                        path: path.to_owned(),
                    });
                }
                if let Some(tell) = waiting.take() {
                    tell();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((_, source)) => {
                return Err(LockError::Lock {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_until_the_first_is_dropped() {
        let path = std::env::temp_dir().join(format!("kit-lock-{}", std::process::id()));
        let first = acquire(&path, || {}).unwrap();
        let p2 = path.clone();
        let waiter = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let mut told = false;
            let _second = acquire(&p2, || told = true).unwrap();
            (started.elapsed(), told)
        });
        std::thread::sleep(Duration::from_millis(300));
        drop(first);
        let (waited, told) = waiter.join().unwrap();
        assert!(waited >= Duration::from_millis(250));
        assert!(told);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_symlink_at_the_lock_path_is_not_followed() {
        let dir = std::env::temp_dir().join(format!("kit-lock-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join("lock")).unwrap();
        let err = acquire(&dir.join("lock"), || {}).err().expect("refused");
        assert!(
            err.to_string().contains("cannot open the module lock"),
            "{err}"
        );
        assert!(!dir.join("elsewhere").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
