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

/// How long [`lock_file`] goes on trying a lock that is held, in total,
/// before it reports it as owned by someone else: the pauses between its
/// tries, in milliseconds (31 ms in all).
///
/// An `flock` lives as long as any copy of its descriptor. A process that
/// spawns a child (`fork` or `posix_spawn`, then `exec`) lends the child a
/// copy of every descriptor until the `exec` closes the `O_CLOEXEC` ones,
/// so a lock that its owner has just dropped can still be held for that
/// short window. A reopen that ran in it would otherwise fail with a
/// spurious [`Error::Locked`]. A real second owner holds the lock for much
/// longer than this and is still refused, 31 ms later.
const RETRY_PAUSES_MS: [u64; 5] = [1, 2, 4, 8, 16];

/// Open (creating it `0600` if missing, never following a symbolic link)
/// and exclusively `flock` the file at `path` without blocking on it: a
/// lock that stays held through a few short retries ([`RETRY_PAUSES_MS`])
/// is `ErrorKind::WouldBlock`, whoever holds it, in this process or
/// another. The lock lasts as long as the returned file is open.
pub(crate) fn lock_file(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut pauses = RETRY_PAUSES_MS.iter();
    loop {
        // SAFETY: flock only reads the descriptor, which `file` keeps open.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(e);
        }
        match pauses.next() {
            Some(&ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
            None => return Err(std::io::Error::from(std::io::ErrorKind::WouldBlock)),
        }
    }
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

    /// The window `RETRY_PAUSES_MS` covers: a forked child holds a copy of
    /// the lock's descriptor for a moment after its owner has dropped it.
    /// The child here keeps it for 5 ms and exits (no `exec`, so nothing
    /// closes it sooner); a lock asked for in that window is granted once
    /// the child is gone, instead of failing as held by another owner.
    #[test]
    fn a_lock_still_held_for_a_moment_by_a_forked_child_is_granted_once_it_exits() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(LOCK_FILE);
        let first = lock_file(&path).unwrap();
        // SAFETY: the child only sleeps and exits (`_exit`, so no
        // destructor or atexit handler of the parent runs in it); it
        // touches no lock or allocator state that another thread of the
        // test harness might hold.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
        if child == 0 {
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 5_000_000,
            };
            // SAFETY: nanosleep and _exit are async-signal-safe; `pause`
            // lives on this stack for the call.
            unsafe {
                libc::nanosleep(&pause, std::ptr::null_mut());
                libc::_exit(0);
            }
        }
        drop(first);
        let second = lock_file(&path);
        let mut status = 0;
        // SAFETY: waits for the child forked above; `status` is a valid
        // out-pointer.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        second.expect("the lock is granted once the child is gone");
    }

    /// A lock held for longer than the retries is still refused.
    #[test]
    fn a_lock_held_past_the_retries_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(LOCK_FILE);
        let _held = lock_file(&path).unwrap();
        let started = std::time::Instant::now();
        let e = lock_file(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        let waited = started.elapsed();
        let total: u64 = RETRY_PAUSES_MS.iter().sum();
        assert!(
            waited >= std::time::Duration::from_millis(total),
            "refused after {waited:?}, before the {total} ms of retries"
        );
    }
}
