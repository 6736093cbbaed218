//! Reading a log file's durable bytes for upload: Direct I/O into an
//! aligned buffer that is handed to the object store as the upload's
//! payload without a copy, and reused once the store lets go of it.
//!
//! The shards write their segments with `O_DIRECT`, so the bytes are not in
//! the page cache; a buffered read would fill the cache, copy out of it and
//! then drop it again (three passes of kernel work per byte on a machine
//! whose cores the shards keep busy). A Direct read is one DMA into the
//! buffer. Where the file system refuses `O_DIRECT`, the file is read
//! buffered with the same code.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::format::BLOCK;
use crate::io::AlignedBuf;
use crate::io::std_fs::pread_full;

/// A file opened for the archive's reads.
pub(super) struct ChunkFile {
    file: File,
    direct: bool,
}

impl ChunkFile {
    /// Open `path` read-only, with `O_DIRECT` where the file system takes
    /// it.
    pub fn open(path: &Path) -> io::Result<ChunkFile> {
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(file) => Ok(ChunkFile { file, direct: true }),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(ChunkFile {
                file: File::open(path)?,
                direct: false,
            }),
            Err(e) => Err(e),
        }
    }

    /// The file's length now.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Read bytes `at..at + n` into a buffer from `pool` and return them as
    /// an upload payload. `n` is at most the pool's part size.
    pub fn read(&self, pool: &mut ChunkPool, at: u64, n: usize) -> io::Result<Bytes> {
        let head = (at % BLOCK as u64) as usize;
        let from = at - head as u64;
        let mut buf = pool.take((head + n).next_multiple_of(BLOCK));
        let got = pread_full(&self.file, &mut buf, from)?;
        if got < head + n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ends at {} before the {n} bytes at {at} were read",
                    from + got as u64
                ),
            ));
        }
        if !self.direct {
            drop_cached(&self.file, from, got as u64);
        }
        Ok(pool.payload(buf, head, n))
    }
}

/// The buffers of one archiver: at most one is kept for reuse; a payload
/// that the store still holds (the in-memory backend keeps it) is simply
/// not reused.
pub(super) struct ChunkPool {
    part: usize,
    spare: Option<AlignedBuf>,
    lent: Option<Arc<AlignedBuf>>,
}

impl ChunkPool {
    /// A pool for reads of at most `part` bytes.
    pub fn new(part: usize) -> ChunkPool {
        ChunkPool {
            part,
            spare: None,
            lent: None,
        }
    }

    /// A buffer of `len` block-aligned bytes.
    fn take(&mut self, len: usize) -> AlignedBuf {
        self.reclaim();
        let mut b = match self.spare.take() {
            Some(b) if b.capacity() >= len => b,
            // A new buffer is as long as this read, not as the longest
            // possible one: a store that keeps its payloads (the in-memory
            // backend) keeps the whole buffer behind each, and a zeroed
            // buffer is memory touched (the allocator may hand out reused
            // heap and clear it), so part-sized buffers behind small tail
            // uploads grew the archive tests to the whole machine's memory.
            _ => {
                debug_assert!(len <= self.part.next_multiple_of(BLOCK) + BLOCK);
                AlignedBuf::zeroed(len)
            }
        };
        b.set_len(len);
        b
    }

    /// `buf[head..head + n]` as a payload; the buffer comes back to the pool
    /// once every `Bytes` of it is dropped.
    fn payload(&mut self, buf: AlignedBuf, head: usize, n: usize) -> Bytes {
        self.reclaim();
        let shared = Arc::new(buf);
        // Keep one handle to learn when the store is done with it.
        if self.lent.is_none() {
            self.lent = Some(shared.clone());
        }
        Bytes::from_owner(Lent(shared)).slice(head..head + n)
    }

    /// Take back the lent buffer if the store has let go of it.
    fn reclaim(&mut self) {
        if let Some(l) = self.lent.take() {
            match Arc::try_unwrap(l) {
                Ok(b) if self.spare.is_none() => self.spare = Some(b),
                Ok(_) => {}
                Err(still) => self.lent = Some(still),
            }
        }
    }
}

/// The owner `Bytes` keeps alive while the store holds a payload.
struct Lent(Arc<AlignedBuf>);

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A buffered read's bytes are read once: keep them out of the page cache.
fn drop_cached(file: &File, offset: u64, len: u64) {
    // SAFETY: posix_fadvise only reads its integer arguments; the
    // descriptor is open for the duration of the call. A failure is only a
    // lost hint.
    unsafe {
        libc::posix_fadvise(
            std::os::unix::io::AsRawFd::as_raw_fd(file),
            offset as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_any_range_and_reuses_the_buffer_once_released() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let f = ChunkFile::open(&p).unwrap();
        assert_eq!(f.len().unwrap(), data.len() as u64);
        let mut pool = ChunkPool::new(32 << 10);
        for (at, n) in [
            (0usize, 4096usize),
            (1, 10),
            (4095, 2),
            (5000, 32 << 10),
            (99_990, 10),
        ] {
            let b = f.read(&mut pool, at as u64, n).unwrap();
            assert_eq!(&b[..], &data[at..at + n], "{at}+{n}");
            drop(b);
        }
        // Released: the next read reuses the buffer.
        let first = f.read(&mut pool, 0, 16).unwrap();
        let ptr = first.as_ptr();
        drop(first);
        let again = f.read(&mut pool, 0, 16).unwrap();
        assert_eq!(again.as_ptr(), ptr);
        // Held (as the in-memory store does): a fresh buffer.
        let other = f.read(&mut pool, 0, 16).unwrap();
        assert_ne!(other.as_ptr(), again.as_ptr());
        assert_eq!(&again[..], &other[..]);
        // Past the end: an error, not a short payload.
        assert!(f.read(&mut pool, 99_995, 10).is_err());
    }
}
