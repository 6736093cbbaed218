//! Per-shard state snapshot files, written at checkpoints.
//!
//! ```text
//! offset size field
//!      0    8 magic "SHRDSNAP"
//!      8    4 format version
//!     12    4 shard id
//!     16    8 checkpoint id
//!     24    8 snapshot length n
//!     32    4 CRC32C of the snapshot bytes
//!     36    4 CRC32C of bytes 0..36
//!     40 4056 zero
//!   4096    n snapshot bytes, then zero padding to a 4 KiB multiple
//! ```
//! Files are named `snap-CCCCCCCCCCCCCCCCCCCC.snap` (checkpoint id) inside the
//! shard's directory, written by the shard's own executor as the engine
//! streams its state ([`SnapshotFile`]: the data blocks first, in 1 MiB
//! Direct I/O writes, then the header, whose length and CRC are known only
//! at the end), and made durable (fdatasync + directory fsync) before the
//! checkpoint marker is logged.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::payloads::SnapshotRef;
pub use crate::error::SnapshotFault;
use crate::error::{Error, Result};
use crate::format::{BLOCK, align_up, u32_at, u64_at};
use crate::io::{IoBuf, Storage, StorageFile, close_quietly, remove_if_present};

const MAGIC: &[u8; 8] = b"SHRDSNAP";
const VERSION: u32 = 1;
/// Largest snapshot accepted when reading: 16 GiB.
pub const MAX_SNAPSHOT: u64 = 16 << 30;

/// File name of the snapshot of `checkpoint`.
pub fn snapshot_name(checkpoint: u64) -> String {
    format!("snap-{checkpoint:020}.snap")
}

/// Parse a snapshot file name.
pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    let d = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    (d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
        .then(|| d.parse().ok())
        .flatten()
}

/// Bytes per snapshot write: large and aligned, so that the snapshot goes
/// out at the device's speed.
pub const WRITE_SIZE: usize = 1 << 20;
/// Snapshot writes in flight at once. Two keep the device busy while the
/// next chunk fills, and leave the queue to the log's own writes and syncs
/// in between: at most `WRITE_DEPTH × WRITE_SIZE` of snapshot bytes are
/// ever queued ahead of a commit.
pub const WRITE_DEPTH: usize = 2;

struct InFlight<S: Storage> {
    task: glommio::task::JoinHandle<std::io::Result<usize>>,
    buf: Rc<S::Buf>,
    pos: u64,
    len: usize,
}

/// A snapshot written as it is produced: chunks are copied into aligned
/// buffers of [`WRITE_SIZE`] and written with Direct I/O, at most
/// [`WRITE_DEPTH`] at a time, so memory stays at a few buffers whatever the
/// state's size. The header (length and CRC, known only at the end) goes
/// to block 0 last; [`SnapshotFile::finish`] makes the whole file durable
/// (fdatasync + directory fsync). Must be used on a glommio executor.
pub struct SnapshotFile<S: Storage> {
    storage: S,
    shard_dir: PathBuf,
    path: PathBuf,
    shard: u32,
    checkpoint: u64,
    file: Option<Rc<S::File>>,
    /// The chunk being filled, and how much of it is.
    buf: Option<S::Buf>,
    fill: usize,
    /// File offset where `buf` goes.
    pos: u64,
    len: u64,
    crc: u32,
    inflight: VecDeque<InFlight<S>>,
    /// Buffers whose writes completed, for reuse.
    spare: Vec<S::Buf>,
}

impl<S: Storage> SnapshotFile<S> {
    /// Start the snapshot of `checkpoint` in `shard_dir`; no I/O until the
    /// first chunk is full (or `finish`).
    pub fn new(storage: &S, shard_dir: &Path, shard: u32, checkpoint: u64) -> SnapshotFile<S> {
        SnapshotFile {
            storage: storage.clone(),
            shard_dir: shard_dir.to_path_buf(),
            path: shard_dir.join(snapshot_name(checkpoint)),
            shard,
            checkpoint,
            file: None,
            buf: None,
            fill: 0,
            pos: BLOCK as u64,
            len: 0,
            crc: 0,
            inflight: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// Snapshot bytes taken so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no bytes were taken yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append `bytes` to the snapshot. Returns once they are copied; waits
    /// only when [`WRITE_DEPTH`] writes are already in flight.
    pub async fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        if self.len + bytes.len() as u64 > MAX_SNAPSHOT {
            return Err(Error::Config(format!(
                "snapshot of checkpoint {} exceeds the {MAX_SNAPSHOT}-byte limit",
                self.checkpoint
            )));
        }
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.len += bytes.len() as u64;
        while !bytes.is_empty() {
            if self.buf.is_none() {
                let b = match self.spare.pop() {
                    Some(b) => b,
                    None => self.storage.alloc_buf(WRITE_SIZE),
                };
                self.buf = Some(b);
                self.fill = 0;
            }
            let Some(buf) = self.buf.as_mut() else {
                unreachable!("a chunk buffer was just set")
            };
            let n = bytes.len().min(WRITE_SIZE - self.fill);
            buf.as_mut_slice()[self.fill..self.fill + n].copy_from_slice(&bytes[..n]);
            self.fill += n;
            bytes = &bytes[n..];
            if self.fill == WRITE_SIZE {
                self.submit().await?;
            }
        }
        Ok(())
    }

    async fn file(&mut self) -> Result<Rc<S::File>> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        // A snapshot of the same checkpoint left by an attempt that died.
        remove_if_present(&self.storage, &self.path)
            .await
            .map_err(|e| Error::io("remove snapshot", &self.path, e))?;
        let f = Rc::new(
            self.storage
                .open(&self.path, true)
                .await
                .map_err(|e| Error::io("create snapshot", &self.path, e))?,
        );
        self.file = Some(f.clone());
        Ok(f)
    }

    /// Write the filled chunk (zero-padded to a block) at its offset.
    async fn submit(&mut self) -> Result<()> {
        let Some(mut buf) = self.buf.take() else {
            return Ok(());
        };
        let len = align_up(self.fill, BLOCK);
        buf.as_mut_slice()[self.fill..len].fill(0);
        buf.trim(len);
        while self.inflight.len() >= WRITE_DEPTH {
            self.complete_oldest().await?;
        }
        let f = self.file().await?;
        let buf = Rc::new(buf);
        let (b, pos) = (buf.clone(), self.pos);
        let task = glommio::spawn_local(async move { f.write_at(b, pos).await }).detach();
        self.inflight.push_back(InFlight {
            task,
            buf,
            pos,
            len,
        });
        self.pos += len as u64;
        self.fill = 0;
        Ok(())
    }

    async fn complete_oldest(&mut self) -> Result<()> {
        let Some(w) = self.inflight.pop_front() else {
            return Ok(());
        };
        let r = w.task.await.unwrap_or_else(|| {
            Err(std::io::Error::other(
                "the snapshot write task was cancelled",
            ))
        });
        let n = r.map_err(|e| Error::io("write snapshot", &self.path, e))?;
        if n != w.len {
            return Err(Error::ShortWrite {
                path: self.path.clone(),
                offset: w.pos,
                written: n,
                expected: w.len,
            });
        }
        // Reuse the buffer (the task has dropped its handle on it); a
        // trimmed buffer is smaller than a chunk, so only full ones go back.
        if let Ok(b) = Rc::try_unwrap(w.buf)
            && b.as_slice().len() == WRITE_SIZE
        {
            self.spare.push(b);
        }
        Ok(())
    }

    /// Write the rest and the header, then make the file durable
    /// (fdatasync, directory fsync). The returned reference goes into the
    /// checkpoint marker and the manifest.
    pub async fn finish(mut self) -> Result<SnapshotRef> {
        if self.fill > 0 {
            self.submit().await?;
        }
        while !self.inflight.is_empty() {
            self.complete_oldest().await?;
        }
        let f = self.file().await?;
        let mut h = self.storage.alloc_buf(BLOCK);
        encode_header(
            h.as_mut_slice(),
            self.shard,
            self.checkpoint,
            self.len,
            self.crc,
        );
        let n = f
            .write_at(Rc::new(h), 0)
            .await
            .map_err(|e| Error::io("write snapshot", &self.path, e))?;
        if n != BLOCK {
            return Err(Error::ShortWrite {
                path: self.path.clone(),
                offset: 0,
                written: n,
                expected: BLOCK,
            });
        }
        f.sync_data()
            .await
            .map_err(|e| Error::io("fdatasync snapshot", &self.path, e))?;
        self.file = None;
        // Durable already: a failed close loses nothing.
        if let Ok(f) = Rc::try_unwrap(f) {
            close_quietly(f, &self.path).await;
        }
        self.storage
            .sync_dir(&self.shard_dir)
            .await
            .map_err(|e| Error::io("directory fsync", &self.shard_dir, e))?;
        Ok(SnapshotRef {
            file: snapshot_name(self.checkpoint),
            len: self.len,
            crc: self.crc,
        })
    }
}

/// The header block: the layout in this module's docs.
fn encode_header(b: &mut [u8], shard: u32, checkpoint: u64, len: u64, crc: u32) {
    b[..BLOCK].fill(0);
    b[..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&shard.to_le_bytes());
    b[16..24].copy_from_slice(&checkpoint.to_le_bytes());
    b[24..32].copy_from_slice(&len.to_le_bytes());
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32c::crc32c(&b[..36]);
    b[36..40].copy_from_slice(&hcrc.to_le_bytes());
}

/// Write `bytes` as the snapshot of `checkpoint` in `shard_dir` and make it
/// durable: the one-slice form of [`SnapshotFile`].
pub async fn write<S: Storage>(
    storage: &S,
    shard_dir: &Path,
    shard: u32,
    checkpoint: u64,
    bytes: &[u8],
) -> Result<SnapshotRef> {
    let mut f = SnapshotFile::new(storage, shard_dir, shard, checkpoint);
    f.write(bytes).await?;
    f.finish().await
}

/// Read and verify the snapshots of checkpoint `checkpoint` named by
/// `sources` (each shard with its reference, if it has one), in that order:
/// what a core restores, for `ShardContext::snapshots` and
/// `Replay::snapshots`.
pub async fn read_each<S: Storage>(
    storage: &S,
    log_dir: &Path,
    checkpoint: u64,
    sources: impl IntoIterator<Item = (crate::ids::ShardId, Option<SnapshotRef>)>,
) -> Result<Vec<(crate::ids::ShardId, Vec<u8>)>> {
    let mut out = Vec::new();
    for (shard, r) in sources {
        if let Some(r) = r {
            let dir = crate::segment::shard_dir(log_dir, shard);
            out.push((shard, read(storage, &dir, shard.0, checkpoint, &r).await?));
        }
    }
    Ok(out)
}

/// Read and verify a snapshot against its reference.
pub async fn read<S: Storage>(
    storage: &S,
    shard_dir: &Path,
    shard: u32,
    checkpoint: u64,
    expect: &SnapshotRef,
) -> Result<Vec<u8>> {
    let path = shard_dir.join(&expect.file);
    let bad = |fault: SnapshotFault| Error::Corruption {
        shard: crate::ids::ShardId(shard),
        segment: path.clone(),
        offset: 0,
        cause: fault.into(),
    };
    if expect.len > MAX_SNAPSHOT {
        return Err(bad(SnapshotFault::LengthOutOfBounds {
            len: expect.len,
            max: MAX_SNAPSHOT,
        }));
    }
    let f = storage
        .open(&path, false)
        .await
        .map_err(|e| Error::io("open snapshot", &path, e))?;
    let size = f.size().await.map_err(|e| Error::io("stat", &path, e))?;
    let want = BLOCK as u64 + expect.len;
    if size < want {
        return Err(bad(SnapshotFault::Truncated { have: size, want }));
    }
    let data = f
        .read_at(0, align_up(want as usize, BLOCK))
        .await
        .map_err(|e| Error::io("read snapshot", &path, e))?;
    close_quietly(f, &path).await;
    if data.len() < want as usize {
        return Err(bad(SnapshotFault::Truncated {
            have: data.len() as u64,
            want,
        }));
    }
    let h = &data[..BLOCK];
    if &h[..8] != MAGIC {
        return Err(bad(SnapshotFault::BadMagic));
    }
    if u32_at(h, 8) != VERSION {
        return Err(bad(SnapshotFault::Version(u32_at(h, 8))));
    }
    let (expected, actual) = (u32_at(h, 36), crc32c::crc32c(&h[..36]));
    if expected != actual {
        return Err(bad(SnapshotFault::HeaderCrc { expected, actual }));
    }
    let (h_shard, h_checkpoint, h_len) = (u32_at(h, 12), u64_at(h, 16), u64_at(h, 24));
    if h_shard != shard || h_checkpoint != checkpoint || h_len != expect.len {
        return Err(bad(SnapshotFault::NotTheManifests {
            shard: h_shard,
            checkpoint: h_checkpoint,
            len: h_len,
        }));
    }
    let bytes = &data[BLOCK..BLOCK + expect.len as usize];
    let actual = crc32c::crc32c(bytes);
    // The reference's CRC, and the header's, must both be the bytes'.
    if let Some(expected) = [expect.crc, u32_at(h, 32)]
        .into_iter()
        .find(|&c| c != actual)
    {
        return Err(bad(SnapshotFault::Crc { expected, actual }));
    }
    Ok(bytes.to_vec())
}
