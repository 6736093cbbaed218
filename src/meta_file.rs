//! Small metadata files (checkpoint manifests, the shard layout): a 32-byte
//! header, then a payload, written atomically.
//!
//! ```text
//! offset size field
//!      0    8 magic (names the kind of file)
//!      8    4 format version
//!     12    4 payload length n (bounded by the kind's maximum)
//!     16    4 CRC32C of bytes 0..16 and of the payload
//!     20   12 zero
//!     32    n payload
//! ```
//! Writing goes temp file, fdatasync, rename, directory fsync, so a reader
//! sees the old file or the new one, never a mix.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::format::{BLOCK, align_up, u32_at};
use crate::io::{IoBuf, Storage, StorageFile};

/// Header length.
pub const HEADER: usize = 32;

/// What kind of metadata file: its magic, version and largest payload.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The 8 magic bytes.
    pub magic: &'static [u8; 8],
    /// The format version written and accepted.
    pub version: u32,
    /// Largest payload accepted.
    pub max_payload: usize,
    /// Name used in error messages ("manifest", "layout").
    pub name: &'static str,
}

/// Encode a file of kind `k` around `payload`.
pub fn encode(k: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER + payload.len()];
    out[..8].copy_from_slice(k.magic);
    out[8..12].copy_from_slice(&k.version.to_le_bytes());
    out[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[..16]), payload);
    out[16..20].copy_from_slice(&crc.to_le_bytes());
    out[HEADER..].copy_from_slice(payload);
    out
}

/// Check a file of kind `k` and return its payload; every failure is an
/// error naming what is wrong. Bytes after the payload are ignored.
pub fn decode(k: Kind, b: &[u8]) -> std::result::Result<&[u8], String> {
    let name = k.name;
    if b.len() < HEADER || &b[..8] != k.magic {
        return Err(format!("bad {name} magic"));
    }
    if u32_at(b, 8) != k.version {
        return Err(format!("unsupported {name} version {}", u32_at(b, 8)));
    }
    if b[20..HEADER].iter().any(|&x| x != 0) {
        return Err(format!("reserved {name} header bytes are not zero"));
    }
    let n = u32_at(b, 12) as usize;
    if n > k.max_payload || HEADER + n > b.len() {
        return Err(format!("{name} payload length {n} out of bounds"));
    }
    let payload = &b[HEADER..HEADER + n];
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..16]), payload);
    if crc != u32_at(b, 16) {
        return Err(format!(
            "{name} CRC mismatch: stored {:#010x}, computed {crc:#010x}",
            u32_at(b, 16)
        ));
    }
    Ok(payload)
}

/// Write `bytes` as `dir/name` atomically: `name.tmp`, fdatasync, rename,
/// directory fsync.
pub async fn write_atomic<S: Storage>(
    storage: &S,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<PathBuf> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let _ = storage.remove(&tmp).await;
    let f = storage
        .open(&tmp, true)
        .await
        .map_err(|e| Error::io("create", &tmp, e))?;
    let total = align_up(bytes.len(), BLOCK);
    let mut buf = storage.alloc_buf(total);
    buf.as_mut_slice().fill(0);
    buf.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
    let n = f
        .write_at(Rc::new(buf), 0)
        .await
        .map_err(|e| Error::io("write", &tmp, e))?;
    if n != total {
        return Err(Error::ShortWrite {
            path: tmp,
            offset: 0,
            written: n,
            expected: total,
        });
    }
    f.set_len(bytes.len() as u64)
        .await
        .map_err(|e| Error::io("truncate", &tmp, e))?;
    f.sync_data()
        .await
        .map_err(|e| Error::io("fdatasync", &tmp, e))?;
    let _ = f.close().await;
    storage
        .rename(&tmp, &path)
        .await
        .map_err(|e| Error::io("rename", &path, e))?;
    storage
        .sync_dir(dir)
        .await
        .map_err(|e| Error::io("directory fsync", dir, e))?;
    Ok(path)
}

/// Read the file at `path` of kind `k`, refusing files larger than the
/// kind allows. Errors are strings: the caller decides whether a bad file
/// is fatal or skipped. A missing file is `Ok(None)`.
pub async fn read<S: Storage>(
    storage: &S,
    path: &Path,
    k: Kind,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let f = match storage.open(path, false).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let size = f.size().await.map_err(|e| e.to_string())?;
    if size > (HEADER + k.max_payload) as u64 {
        return Err(format!("{} file of {size} bytes is too large", k.name));
    }
    let b = f
        .read_at(0, align_up(size as usize, BLOCK))
        .await
        .map_err(|e| e.to_string())?;
    let _ = f.close().await;
    let end = (size as usize).min(b.len());
    Ok(Some(b[..end].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: Kind = Kind {
        magic: b"TESTFILE",
        version: 3,
        max_payload: 1 << 10,
        name: "test",
    };

    #[test]
    fn round_trips_and_rejects_any_flip_or_cut() {
        let b = encode(K, b"hello payload");
        assert_eq!(decode(K, &b), Ok(&b"hello payload"[..]));
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x04;
            assert!(decode(K, &bad).is_err(), "flip at {i} accepted");
            assert!(decode(K, &b[..i]).is_err(), "cut at {i} accepted");
        }
    }

    #[test]
    fn refuses_oversized_lengths_without_allocating() {
        let mut b = encode(K, b"x");
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(K, &b).unwrap_err().contains("out of bounds"));
    }
}
