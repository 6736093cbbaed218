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
//! shard's directory, written by the shard's own executor, made durable
//! (fdatasync + directory fsync) before the checkpoint marker is logged.

use std::path::Path;
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

/// Write `bytes` as the snapshot of `checkpoint` in `shard_dir` and make it durable.
pub async fn write<S: Storage>(
    storage: &S,
    shard_dir: &Path,
    shard: u32,
    checkpoint: u64,
    bytes: &[u8],
) -> Result<SnapshotRef> {
    let name = snapshot_name(checkpoint);
    let path = shard_dir.join(&name);
    // A snapshot of the same checkpoint left by an attempt that died.
    remove_if_present(storage, &path)
        .await
        .map_err(|e| Error::io("remove snapshot", &path, e))?;
    let f = storage
        .open(&path, true)
        .await
        .map_err(|e| Error::io("create snapshot", &path, e))?;
    let total = BLOCK + align_up(bytes.len(), BLOCK);
    let mut buf = storage.alloc_buf(total);
    let b = buf.as_mut_slice();
    b[..BLOCK].fill(0);
    b[..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&shard.to_le_bytes());
    b[16..24].copy_from_slice(&checkpoint.to_le_bytes());
    b[24..32].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c(bytes);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32c::crc32c(&b[..36]);
    b[36..40].copy_from_slice(&hcrc.to_le_bytes());
    b[BLOCK..BLOCK + bytes.len()].copy_from_slice(bytes);
    b[BLOCK + bytes.len()..].fill(0);
    let n = f
        .write_at(Rc::new(buf), 0)
        .await
        .map_err(|e| Error::io("write snapshot", &path, e))?;
    if n != total {
        return Err(Error::ShortWrite {
            path,
            offset: 0,
            written: n,
            expected: total,
        });
    }
    f.sync_data()
        .await
        .map_err(|e| Error::io("fdatasync snapshot", &path, e))?;
    // Durable already: a failed close loses nothing.
    close_quietly(f, &path).await;
    storage
        .sync_dir(shard_dir)
        .await
        .map_err(|e| Error::io("directory fsync", shard_dir, e))?;
    Ok(SnapshotRef {
        file: name,
        len: bytes.len() as u64,
        crc,
    })
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
