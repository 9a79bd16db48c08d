//! One module process at a time: two installs, or an install and a rollback,
//! must never interleave their engine calls.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mender_module_protocol::signal;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

pub const DEFAULT_PATH: &str = "/run/lock/mender-docker-module.lock";

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
    #[error("stopped by SIGTERM while waiting for another docker module process to release {}; the state can be run again", path.display())]
    Terminated { path: PathBuf },
}

/// The lock path: `DOCKER_MODULE_LOCK`, else [`DEFAULT_PATH`].
pub fn path_from_env() -> PathBuf {
    std::env::var_os("DOCKER_MODULE_LOCK")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// Takes the exclusive lock, waiting for another holder; SIGTERM ends the wait.
pub fn acquire(path: &Path) -> Result<ModuleLock, LockError> {
    if let Some(parent) = path.parent() {
        let _ = fs::create_dir_all(parent);
    }
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| LockError::Open {
            path: path.to_owned(),
            source,
        })?;
    let mut told = false;
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
                if !told {
                    crate::log!(
                        "waiting for another docker module process to release {}",
                        path.display()
                    );
                    told = true;
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
        let path = std::env::temp_dir().join(format!("dm-lock-{}", std::process::id()));
        let first = acquire(&path).unwrap();
        let p2 = path.clone();
        let waiter = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let _second = acquire(&p2).unwrap();
            started.elapsed()
        });
        std::thread::sleep(Duration::from_millis(300));
        drop(first);
        assert!(waiter.join().unwrap() >= Duration::from_millis(250));
        let _ = fs::remove_file(path);
    }
}
