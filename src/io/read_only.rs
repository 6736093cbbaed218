//! A read-only [`Storage`]: files are opened `O_RDONLY` and every operation
//! that could change the disk (create, write, remove, rename, truncate,
//! sync) fails with `PermissionDenied`. The recovery scan, the planner's
//! inputs and the manifest and snapshot readers run on it unchanged, so a
//! tool (the CLI's `inspect`, `dump`, `verify`, `recover --dry-run`) can
//! compute exactly what recovery would do, and the type guarantees it
//! never modifies the log. It takes no lock: it can run beside a live
//! process (what it sees of that process's unsynced tail may be torn).
//!
//! Like `StdStorage`, its async functions complete immediately: drive them
//! with `futures_lite::future::block_on`.

use std::fs::File;
use std::io;
use std::path::Path;
use std::rc::Rc;

use super::std_fs::{list_dir, pread_buf, pread_into};
use super::{AlignedBuf, Storage, StorageFile};

/// Read-only std-file storage.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOnlyStorage;

/// A file opened read-only.
#[derive(Debug)]
pub struct ReadOnlyFile {
    file: File,
}

fn refused(what: &str, path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{what} {}: refused, this command is read-only",
            path.display()
        ),
    )
}

impl Storage for ReadOnlyStorage {
    type Buf = AlignedBuf;
    type File = ReadOnlyFile;

    fn alloc_buf(&self, len: usize) -> AlignedBuf {
        AlignedBuf::zeroed(len)
    }

    async fn open(&self, path: &Path, create: bool) -> io::Result<ReadOnlyFile> {
        if create {
            return Err(refused("create", path));
        }
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        Ok(ReadOnlyFile { file })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        Err(refused("remove", path))
    }

    async fn rename(&self, from: &Path, _to: &Path) -> io::Result<()> {
        Err(refused("rename", from))
    }

    async fn rename_noreplace(&self, from: &Path, _to: &Path) -> io::Result<()> {
        Err(refused("rename", from))
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        list_dir(dir)
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Succeeds only if there is nothing to create.
        if dir.is_dir() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a directory", dir.display()),
            ))
        }
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        Err(refused("fsync", dir))
    }

    type Lock = ();

    /// Refused: only writers lock, and this storage never writes.
    async fn lock(&self, path: &Path) -> io::Result<()> {
        Err(refused("lock", path))
    }
}

impl StorageFile for ReadOnlyFile {
    type Buf = AlignedBuf;
    type ReadBuf = AlignedBuf;

    async fn write_at(&self, _buf: Rc<AlignedBuf>, _pos: u64) -> io::Result<usize> {
        Err(refused("write", Path::new("a file")))
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<AlignedBuf> {
        pread_buf(&self.file, pos, len)
    }

    /// A blocking `pread(2)` straight into `buf`, done when called.
    fn read_into(
        self: Rc<Self>,
        pos: u64,
        buf: AlignedBuf,
        at: usize,
        len: usize,
    ) -> impl std::future::Future<Output = io::Result<(AlignedBuf, usize)>> + 'static {
        std::future::ready(pread_into(&self.file, pos, buf, at, len))
    }

    async fn sync_data(&self) -> io::Result<()> {
        Err(refused("fdatasync", Path::new("a file")))
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    async fn set_len(&self, _len: u64) -> io::Result<()> {
        Err(refused("truncate", Path::new("a file")))
    }

    async fn allocate(&self, _len: u64) -> io::Result<()> {
        Err(refused("fallocate", Path::new("a file")))
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}
