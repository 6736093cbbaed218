//! The I/O backend: the one small trait all file I/O goes through.
//!
//! Contract (what the writer and recovery rely on):
//! - Writes are positional, block-aligned in position and length, and
//!   concurrent writes never overlap (the writer orders overlapping ones).
//! - A successful `write_at` means the bytes are visible to later reads, not
//!   that they are durable. Only `sync_data` makes the bytes written before
//!   it durable, and only `sync_dir` makes a created, renamed or removed name
//!   durable.
//! - Any error is final for the shard that saw it (fail-stop): the caller
//!   never retries a failed write or fsync.
//!
//! Implementations: [`dma::DmaStorage`] (production, glommio Direct I/O over
//! io_uring), [`std_fs::StdStorage`] (blocking std files, for tools), and
//! [`sim::SimStorage`] (in memory, injects faults and simulates crashes that
//! drop or tear unsynced writes), and [`read_only::ReadOnlyStorage`]
//! (refuses every change, for tools that must not modify a log).
//!
//! Beside the backends: [`window`], the forward-only byte window that the
//! recovery scan and the reader walk frames through, and `read_ahead`, the
//! chunked read-ahead stream that serves it from segment files.

pub mod aligned;
pub mod dma;
pub(crate) mod read_ahead;
pub mod read_only;
pub mod sim;
pub mod std_fs;
pub mod window;

use std::future::Future;
use std::io;
use std::ops::Deref;
use std::path::Path;
use std::rc::Rc;

pub use aligned::AlignedBuf;

/// A block-aligned buffer a file can write from.
pub trait IoBuf: 'static {
    /// The bytes of the buffer.
    fn as_slice(&self) -> &[u8];
    /// The bytes of the buffer, mutably.
    fn as_mut_slice(&mut self) -> &mut [u8];
    /// Shorten the buffer to `len` bytes (a multiple of the block size).
    fn trim(&mut self, len: usize);
}

/// A directory-level file system. Cheap to clone; lives on one executor.
#[allow(async_fn_in_trait)] // thread-per-core: futures are deliberately !Send
pub trait Storage: Clone + 'static {
    /// Write buffer type.
    type Buf: IoBuf;
    /// Open file type.
    type File: StorageFile<Buf = Self::Buf>;
    /// Allocate a block-aligned write buffer of `len` bytes (contents unspecified).
    fn alloc_buf(&self, len: usize) -> Self::Buf;
    /// Open `path` for reading and writing. With `create`, the file must not
    /// exist and is created with owner-only permissions. A symbolic link is
    /// never followed (`O_NOFOLLOW`): opening one fails.
    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File>;
    /// Open the existing file `path` like [`Storage::open`], for bulk I/O
    /// that only its throughput matters for and that no commit waits on:
    /// the zero-fill of a segment being prepared, and the read-ahead of the
    /// recovery scan, the replay and [`crate::ShardReader`]. A backend may
    /// serve it differently ([`dma::DmaStorage`]: its writes on glommio's
    /// poll ring, where the executor spins while they are in flight); by
    /// default it is [`Storage::open`].
    async fn open_bulk(&self, path: &Path) -> io::Result<Self::File> {
        self.open(path, false).await
    }
    /// Remove a file.
    async fn remove(&self, path: &Path) -> io::Result<()>;
    /// Rename a file (atomically replacing `to`).
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Rename `from` to `to` only if `to` does not exist; if it does, fail
    /// with `ErrorKind::AlreadyExists` and change nothing. Atomic like
    /// [`Storage::rename`]: `to` names nothing or the whole of `from`, so of
    /// any number of racing creators exactly one publishes its file and the
    /// others learn that they lost (`renameat2(RENAME_NOREPLACE)`, or
    /// `link(2)` then `unlink(2)` where the file system lacks it). Durable
    /// after [`Storage::sync_dir`], like a rename.
    async fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the entries of `dir`.
    async fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Create `dir` and its parents with owner-only permissions.
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Make the entries of `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// A held exclusive lock; released when dropped.
    type Lock: 'static;
    /// Take the exclusive lock on the file `path` (created owner-only if
    /// missing) without waiting; `ErrorKind::WouldBlock` if another owner
    /// holds it, in this process or another.
    async fn lock(&self, path: &Path) -> io::Result<Self::Lock>;
}

/// An open file.
#[allow(async_fn_in_trait)]
pub trait StorageFile: 'static {
    /// Write buffer type.
    type Buf: IoBuf;
    /// Read result type; its bytes are block-aligned in memory.
    type ReadBuf: Deref<Target = [u8]>;
    /// Write the whole buffer at `pos`; returns the bytes written.
    async fn write_at(&self, buf: Rc<Self::Buf>, pos: u64) -> io::Result<usize>;
    /// Read up to `len` bytes at the block-aligned `pos`; short at end of file.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Self::ReadBuf>;
    /// Read up to `len` bytes at the block-aligned `pos` into
    /// `buf[at..at + len]` (`at` and `len` multiples of the block size,
    /// `at + len <= buf.len()`); returns the buffer and the bytes read, short
    /// only at end of file. The future owns what it uses, so a caller can
    /// start it (poll it once) and work while it is in flight: `DmaStorage`
    /// reads on the executor's blocking thread. The default reads with
    /// [`StorageFile::read_at`] and copies.
    fn read_into(
        self: Rc<Self>,
        pos: u64,
        buf: AlignedBuf,
        at: usize,
        len: usize,
    ) -> impl Future<Output = io::Result<(AlignedBuf, usize)>> + 'static
    where
        Self: Sized,
    {
        async move {
            let mut buf = buf;
            let got = self.read_at(pos, len).await?;
            let n = got.len().min(len);
            let dst = buf
                .get_mut(at..at + n)
                .ok_or_else(|| io::Error::other("read_into: buffer too small"))?;
            dst.copy_from_slice(&got[..n]);
            Ok((buf, n))
        }
    }
    /// Make every completed write durable (fdatasync).
    async fn sync_data(&self) -> io::Result<()>;
    /// Current file size.
    async fn size(&self) -> io::Result<u64>;
    /// Truncate or extend the file to `len` bytes.
    async fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserve `len` bytes of blocks (fallocate, keeping the visible size).
    async fn allocate(&self, len: u64) -> io::Result<()>;
    /// Close the file.
    async fn close(self) -> io::Result<()>;
}

/// Remove `path` if it exists: a leftover of an attempt that died before
/// it renamed or used the file. A missing file is success; any other error
/// is the caller's.
pub(crate) async fn remove_if_present<S: Storage>(storage: &S, path: &Path) -> io::Result<()> {
    match storage.remove(path).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Close `f` after its last use, when a failed close cannot lose anything:
/// it was only read, or everything written through it is already durable
/// (a `sync_data` returned). The failure is logged at debug level, not
/// returned: nothing the caller could do about it would change what is on
/// disk.
pub(crate) async fn close_quietly<F: StorageFile>(f: F, path: &Path) {
    if let Err(error) = f.close().await {
        tracing::debug!(path = %path.display(), %error, "close after last use failed");
    }
}
