//! A read-only [`Storage`] for the inspection commands (`inspect`, `dump`,
//! `verify`, `recover --dry-run`): files are opened `O_RDONLY` and every
//! operation that could change the disk (create, write, remove, rename,
//! truncate, sync) fails with `PermissionDenied`. The library's readers
//! (manifests, snapshots) run on it unchanged, and the type guarantees that
//! these commands never modify a log.
//!
//! Like `StdStorage`, its async functions complete immediately: drive them
//! with `futures_lite::future::block_on`.

use std::fs::File;
use std::io;
use std::path::Path;
use std::rc::Rc;

use shardwal::io::AlignedBuf;
use shardwal::{Storage, StorageFile};

/// Read-only std-file storage.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOnly;

/// A file opened read-only.
#[derive(Debug)]
pub struct RoFile {
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

impl Storage for ReadOnly {
    type Buf = AlignedBuf;
    type File = RoFile;

    fn alloc_buf(&self, len: usize) -> AlignedBuf {
        AlignedBuf::zeroed(len)
    }

    async fn open(&self, path: &Path, create: bool) -> io::Result<RoFile> {
        if create {
            return Err(refused("create", path));
        }
        Ok(RoFile {
            file: File::open(path)?,
        })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        Err(refused("remove", path))
    }

    async fn rename(&self, from: &Path, _to: &Path) -> io::Result<()> {
        Err(refused("rename", from))
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        list(dir)
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
}

/// Sorted names of the entries of `dir`.
pub fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir)? {
        names.push(e?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

impl StorageFile for RoFile {
    type Buf = AlignedBuf;
    type ReadBuf = AlignedBuf;

    async fn write_at(&self, _buf: Rc<AlignedBuf>, _pos: u64) -> io::Result<usize> {
        Err(refused("write", Path::new("a file")))
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<AlignedBuf> {
        shardwal::io::std_fs::pread_buf(&self.file, pos, len)
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
