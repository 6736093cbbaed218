//! Blocking std-file backend, for tools and for code outside an executor.
//! Reads and writes are `pread`/`pwrite` on ordinary (buffered) files.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::Path;
use std::rc::Rc;

use super::{AlignedBuf, Storage, StorageFile};

/// Std-file storage.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdStorage;

/// An open std file.
#[derive(Debug)]
pub struct StdFile {
    file: File,
}

/// Sorted names of the entries of `dir`.
pub(crate) fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Read `dst.len()` bytes at `pos`, or up to the end of the file: `pread(2)`
/// until done, retrying interrupted calls. On an `O_DIRECT` descriptor (block
/// aligned `dst` and `pos`) a read that ends off a block boundary is the end
/// of the file, so it stops there.
pub(crate) fn pread_full(file: &File, dst: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < dst.len() {
        match file.read_at(&mut dst[got..], pos + got as u64) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if !got.is_multiple_of(crate::format::BLOCK) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// `pread(2)` of `len` bytes at `pos` into `buf[at..at + len]`; the buffer
/// comes back with the count read (short only at the end of the file).
pub(crate) fn pread_into(
    file: &File,
    pos: u64,
    mut buf: AlignedBuf,
    at: usize,
    len: usize,
) -> io::Result<(AlignedBuf, usize)> {
    match buf.get_mut(at..at + len) {
        Some(dst) => pread_full(file, dst, pos).map(|n| (buf, n)),
        None => Err(io::Error::other("read_into: buffer too small")),
    }
}

/// Read up to `len` bytes at `pos` into a new block-aligned buffer, short
/// only at the end of the file ([`pread_full`]'s rules). Shared by every
/// backend that reads with `pread(2)`.
pub fn pread_buf(file: &File, pos: u64, len: usize) -> io::Result<AlignedBuf> {
    let mut b = AlignedBuf::zeroed(len);
    let got = pread_full(file, &mut b, pos)?;
    b.set_len(got);
    Ok(b)
}

/// Refuse `path` if it is a symbolic link: a shard directory inside a log
/// must be the log's own, never a way out of it. A path that does not exist
/// on the file system (a simulated disk's) is not a link.
pub(crate) fn refuse_symlink(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(io::Error::other(format!(
            "{} is a symbolic link; a log's shard directories must be its own",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// [`Storage::rename_noreplace`] for the file-system backends:
/// `renameat2(RENAME_NOREPLACE)`, falling back to `link(2)` (which never
/// replaces either) then `unlink(2)` of `from` on a file system that does
/// not support the flag.
pub(crate) fn rename_noreplace_blocking(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
    };
    let (cf, ct) = (c(from)?, c(to)?);
    // SAFETY: `cf` and `ct` are NUL-terminated strings that outlive the
    // call, which only reads them; the other arguments are plain integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            cf.as_ptr(),
            libc::AT_FDCWD,
            ct.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
            std::fs::hard_link(from, to)?;
            // Both names now hold the whole file; a leftover `from` is
            // harmless (temp names are never read).
            if let Err(error) = std::fs::remove_file(from) {
                tracing::debug!(path = %from.display(), %error, "removing the linked temp file failed");
            }
            Ok(())
        }
        _ => Err(e),
    }
}

/// fsync a directory so its entries are durable.
pub(crate) fn sync_dir_blocking(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Storage for StdStorage {
    type Buf = AlignedBuf;
    type File = StdFile;

    fn alloc_buf(&self, len: usize) -> AlignedBuf {
        AlignedBuf::zeroed(len)
    }

    async fn open(&self, path: &Path, create: bool) -> io::Result<StdFile> {
        let mut o = OpenOptions::new();
        o.read(true).write(true).custom_flags(libc::O_NOFOLLOW);
        if create {
            o.create_new(true).mode(0o600);
        }
        Ok(StdFile {
            file: o.open(path)?,
        })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    async fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        rename_noreplace_blocking(from, to)
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        list_dir(dir)
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sync_dir_blocking(dir)
    }

    type Lock = File;

    async fn lock(&self, path: &Path) -> io::Result<File> {
        crate::lock::lock_file(path)
    }
}

impl StorageFile for StdFile {
    type Buf = AlignedBuf;
    type ReadBuf = AlignedBuf;

    async fn write_at(&self, buf: Rc<AlignedBuf>, pos: u64) -> io::Result<usize> {
        self.file.write_all_at(&buf, pos)?;
        Ok(buf.len())
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
        self.file.sync_data()
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    async fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    async fn allocate(&self, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let len = i64::try_from(len).map_err(io::Error::other)?;
        // SAFETY: the fd is owned by `self.file` and open for writing for the
        // duration of the call; fallocate does not touch our memory.
        let r =
            unsafe { libc::fallocate(self.file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}
