//! The exclusive locks: one process (and one runtime) owns a log directory
//! at a time (`<dir>/LOCK`), and one writer owns a shard at a time
//! (`<dir>/shard-NNNN/LOCK`, taken through [`crate::io::Storage::lock`] by
//! every `ShardLog`, bare or under the runtime). `flock(LOCK_EX | LOCK_NB)`,
//! released when the lock is dropped or the process dies.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name of the lock file.
pub const LOCK_FILE: &str = "LOCK";

/// A held directory lock.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Lock `dir` (created if missing), or fail with [`Error::Locked`].
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io("create directory", dir, e))?;
        }
        let path = dir.join(LOCK_FILE);
        match lock_file(&path) {
            Ok(file) => Ok(DirLock { _file: file, path }),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(Error::Locked {
                path: dir.to_path_buf(),
            }),
            Err(e) => Err(Error::io("lock", &path, e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Take the writer's lock of the shard directory `shard_dir` (after
/// refusing it if it is a symbolic link): [`Error::Locked`] if another
/// writer holds it. Every writer of a shard holds it for as long as it may
/// write: a `ShardLog` from open to close, and the runtime's recovery of a
/// retired shard while it cuts it.
pub(crate) async fn lock_shard<S: crate::io::Storage>(
    storage: &S,
    shard_dir: &Path,
) -> Result<S::Lock> {
    crate::io::std_fs::refuse_symlink(shard_dir)
        .map_err(|e| Error::io("open shard directory", shard_dir, e))?;
    let path = shard_dir.join(LOCK_FILE);
    match storage.lock(&path).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(Error::Locked {
            path: shard_dir.to_path_buf(),
        }),
        Err(e) => Err(Error::io("lock", &path, e)),
    }
}

/// Open (creating it `0600` if missing, never following a symbolic link)
/// and exclusively `flock` the file at `path` without waiting. The lock
/// lasts as long as the returned file is open. `ErrorKind::WouldBlock` if
/// another owner holds it, in this process or another.
pub(crate) fn lock_file(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            std::io::Error::from(std::io::ErrorKind::WouldBlock)
        } else {
            e
        });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let a = DirLock::acquire(d.path()).unwrap();
        assert!(matches!(
            DirLock::acquire(d.path()),
            Err(Error::Locked { .. })
        ));
        drop(a);
        DirLock::acquire(d.path()).unwrap();
    }
}
