//! Production backend: glommio Direct I/O (`O_DIRECT`) files over io_uring.
//! Must be used from inside a glommio executor.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::rc::Rc;

use std::os::fd::AsRawFd;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use super::{AlignedBuf, IoBuf, Storage, StorageFile};

/// Open `path` for Direct I/O, reading and writing, never following a
/// symbolic link; `iopoll` says whether its I/O may use the poll ring
/// (vendor/glommio/SHARDWAL.md).
async fn open_dma(path: &Path, create: bool, iopoll: bool) -> io::Result<DmaSegmentFile> {
    let mut opts = OpenOptions::new();
    opts.read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .iopoll(iopoll);
    if create {
        opts.create_new(true).mode(0o600);
    }
    let file = opts.dma_open(path).await.map_err(to_io)?;
    Ok(DmaSegmentFile { file })
}

/// Glommio DMA storage.
#[derive(Debug, Clone, Copy, Default)]
pub struct DmaStorage;

impl DmaStorage {
    /// The production backend.
    pub fn new() -> DmaStorage {
        DmaStorage
    }
}

fn to_io(e: glommio::GlommioError<()>) -> io::Error {
    match e {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

impl IoBuf for DmaBuffer {
    fn as_slice(&self) -> &[u8] {
        self.as_bytes()
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.as_bytes_mut()
    }
    fn trim(&mut self, len: usize) {
        self.trim_to_size(len);
    }
}

/// An open DMA file.
#[derive(Debug)]
pub struct DmaSegmentFile {
    file: DmaFile,
}

impl Storage for DmaStorage {
    type Buf = DmaBuffer;
    type File = DmaSegmentFile;

    fn alloc_buf(&self, len: usize) -> DmaBuffer {
        glommio::allocate_dma_buffer(len)
    }

    /// On glommio's main ring (`iopoll(false)`), which the executor sleeps
    /// on while the I/O is in flight: a commit's write and the fdatasync
    /// after it must not share the cores with executors that spin.
    async fn open(&self, path: &Path, create: bool) -> io::Result<DmaSegmentFile> {
        open_dma(path, create, false).await
    }

    /// On glommio's poll ring where the device accepts polled I/O: the
    /// executor spins while such an I/O is in flight, which notices each
    /// completion sooner and keeps a zero-fill at the device's pace.
    async fn open_bulk(&self, path: &Path) -> io::Result<DmaSegmentFile> {
        open_dma(path, false, true).await
    }

    /// `unlink(2)` on the executor's blocking thread: removing a large
    /// segment (and, on a file system mounted with `discard`, the journal
    /// work it brings) can take milliseconds, which the shard's appends
    /// and barriers must not wait behind.
    async fn remove(&self, path: &Path) -> io::Result<()> {
        let p = path.to_path_buf();
        glommio::executor()
            .spawn_blocking(move || std::fs::remove_file(p))
            .await
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    async fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        super::std_fs::rename_noreplace_blocking(from, to)
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        super::std_fs::list_dir(dir)
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }

    /// `fsync(2)` on the directory, on the executor's blocking thread
    /// (glommio's `Directory::open` fails with EBADF on relative paths).
    /// Directory syncs are rare (segment creation, snapshot, truncation,
    /// recovery), never per record, but one that commits the file system's
    /// journal after large removals can take hundreds of milliseconds: off
    /// the executor, the shard goes on appending and answering barriers.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let d = dir.to_path_buf();
        glommio::executor()
            .spawn_blocking(move || super::std_fs::sync_dir_blocking(&d))
            .await
    }

    type Lock = std::fs::File;

    /// `flock(2)`, blocking but immediate (`LOCK_NB`); taken once per open.
    async fn lock(&self, path: &Path) -> io::Result<std::fs::File> {
        crate::lock::lock_file(path)
    }
}

impl StorageFile for DmaSegmentFile {
    type Buf = DmaBuffer;
    type ReadBuf = AlignedBuf;

    async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<usize> {
        self.file.write_rc_at(buf, pos).await.map_err(to_io)
    }

    /// Reads use `pread(2)` on the file's `O_DIRECT` descriptor: glommio's
    /// io_uring reads fail with EOPNOTSUPP on recent kernels (glommio issue
    /// 605), and reads only happen in recovery and readers, never while
    /// appending, so a blocking read into an aligned buffer costs nothing
    /// the hot path sees.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<AlignedBuf> {
        use std::os::fd::FromRawFd;
        // SAFETY: the descriptor stays open for the call because `self.file`
        // is borrowed, and `ManuallyDrop` keeps this `File` from closing it.
        let file = std::mem::ManuallyDrop::new(unsafe {
            std::fs::File::from_raw_fd(self.file.as_raw_fd())
        });
        super::std_fs::pread_buf(&file, pos, len)
    }

    /// `pread(2)` on a duplicate of the `O_DIRECT` descriptor, run on the
    /// executor's blocking thread: the caller polls the future once to start
    /// it and goes on working (checking the previous chunk) while the device
    /// reads. The duplicate keeps the file open even if this handle is
    /// closed first; the buffer is shared with the thread through a slot, so
    /// dropping the future before the read ends neither frees memory the
    /// thread writes nor leaks it.
    fn read_into(
        self: Rc<Self>,
        pos: u64,
        buf: AlignedBuf,
        at: usize,
        len: usize,
    ) -> impl std::future::Future<Output = io::Result<(AlignedBuf, usize)>> + 'static {
        let fd = self.file.as_raw_fd();
        // SAFETY: `fd` is open for the duration of this call, as `self.file`
        // is borrowed; the duplicate is owned by the returned `OwnedFd`.
        let dup = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned();
        async move {
            let file = std::fs::File::from(dup?);
            if buf.len() < at + len {
                return Err(io::Error::other("read_into: buffer too small"));
            }
            let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(buf)));
            let shared = slot.clone();
            let n = glommio::executor()
                .spawn_blocking(move || {
                    let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
                    match g.as_mut() {
                        Some(b) => super::std_fs::pread_full(&file, &mut b[at..at + len], pos),
                        None => Err(io::Error::other("read_into: buffer gone")),
                    }
                })
                .await?;
            let buf = slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .ok_or_else(|| io::Error::other("read_into: buffer gone"))?;
            Ok((buf, n))
        }
    }

    async fn sync_data(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(to_io)
    }

    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(to_io)
    }

    async fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len).await.map_err(to_io)
    }

    async fn allocate(&self, len: u64) -> io::Result<()> {
        self.file.pre_allocate(len, true).await.map_err(to_io)
    }

    async fn close(self) -> io::Result<()> {
        self.file.close().await.map_err(to_io)
    }
}
