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
//! sees the old file or the new one, never a mix. Two rules publish the
//! temp file: [`write_atomic`] replaces (one writer per name, under the log
//! directory's lock) and [`create_once`] never replaces (any number of
//! racing creators; `LOG_ID`).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::format::{BLOCK, align_up, u32_at};
use crate::io::{IoBuf, Storage, StorageFile, close_quietly, remove_if_present};

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

/// Which check a metadata file failed. `name` is the kind's name
/// ("manifest", "layout").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetaFault {
    /// Shorter than a header, or the wrong magic.
    #[error("bad {name} magic")]
    BadMagic {
        /// The kind of file.
        name: &'static str,
    },
    /// A version this code does not read.
    #[error("unsupported {name} version {version}")]
    Version {
        /// The kind of file.
        name: &'static str,
        /// The version in the file.
        version: u32,
    },
    /// Reserved header bytes are not zero.
    #[error("reserved {name} header bytes are not zero")]
    ReservedBits {
        /// The kind of file.
        name: &'static str,
    },
    /// The payload length is above the kind's bound or past the file's end.
    #[error("{name} payload length {len} out of bounds")]
    Length {
        /// The kind of file.
        name: &'static str,
        /// The length field.
        len: usize,
    },
    /// The stored CRC is not the CRC of header and payload.
    #[error("{name} CRC mismatch: stored {expected:#010x}, computed {actual:#010x}")]
    Crc {
        /// The kind of file.
        name: &'static str,
        /// The CRC stored in the header.
        expected: u32,
        /// The CRC computed.
        actual: u32,
    },
}

/// Why a metadata file could not be read (before its bytes are checked).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The storage failed.
    #[error("{op} failed on {path}: {source}")]
    Io {
        /// What was being done ("open", "stat", "read").
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than its kind allows; it is not read.
    #[error("{name} file of {size} bytes is too large")]
    TooLarge {
        /// The kind of file.
        name: &'static str,
        /// Its size.
        size: u64,
    },
}

/// Check a file of kind `k` and return its payload; every failure names
/// the check that failed. Bytes after the payload are ignored.
pub fn decode(k: Kind, b: &[u8]) -> std::result::Result<&[u8], MetaFault> {
    let name = k.name;
    if b.len() < HEADER || &b[..8] != k.magic {
        return Err(MetaFault::BadMagic { name });
    }
    let version = u32_at(b, 8);
    if version != k.version {
        return Err(MetaFault::Version { name, version });
    }
    if b[20..HEADER].iter().any(|&x| x != 0) {
        return Err(MetaFault::ReservedBits { name });
    }
    let len = u32_at(b, 12) as usize;
    if len > k.max_payload || HEADER + len > b.len() {
        return Err(MetaFault::Length { name, len });
    }
    let payload = &b[HEADER..HEADER + len];
    let actual = crc32c::crc32c_append(crc32c::crc32c(&b[..16]), payload);
    let expected = u32_at(b, 16);
    if actual != expected {
        return Err(MetaFault::Crc {
            name,
            expected,
            actual,
        });
    }
    Ok(payload)
}

/// The temp name a file `name` is written under before it is published,
/// for both publication rules (this is the one place that names them).
/// [`write_atomic`], whose caller holds the log directory's lock, uses the
/// fixed `name.tmp`, so a leftover of a writer that died is removed by the
/// next write. [`create_once`], which any number of processes and executors
/// may run at once, uses a name no other creator uses (`name.tmp.` then the
/// pid, a per-process counter and a random nonce): no creator ever removes,
/// truncates or publishes another's temp file.
fn temp_path(dir: &Path, name: &str, unique: bool) -> PathBuf {
    if !unique {
        return dir.join(format!("{name}.tmp"));
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nonce = crate::format::log_id::random_u64();
    dir.join(format!(
        "{name}.tmp.{}.{n}.{nonce:016x}",
        std::process::id()
    ))
}

/// Create `tmp` (it must not exist), write `bytes` (zero-padded to whole
/// blocks, then cut to their length), fdatasync and close it.
async fn write_temp<S: Storage>(storage: &S, tmp: &Path, bytes: &[u8]) -> Result<()> {
    let f = storage
        .open(tmp, true)
        .await
        .map_err(|e| Error::io("create", tmp, e))?;
    let total = align_up(bytes.len(), BLOCK);
    let mut buf = storage.alloc_buf(total);
    buf.as_mut_slice().fill(0);
    buf.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
    let n = f
        .write_at(Rc::new(buf), 0)
        .await
        .map_err(|e| Error::io("write", tmp, e))?;
    if n != total {
        return Err(Error::ShortWrite {
            path: tmp.to_path_buf(),
            offset: 0,
            written: n,
            expected: total,
        });
    }
    f.set_len(bytes.len() as u64)
        .await
        .map_err(|e| Error::io("truncate", tmp, e))?;
    f.sync_data()
        .await
        .map_err(|e| Error::io("fdatasync", tmp, e))?;
    // The bytes are durable (fdatasync returned): a failed close loses nothing.
    close_quietly(f, tmp).await;
    Ok(())
}

/// Write `bytes` as `dir/name` atomically, replacing any earlier file:
/// `name.tmp`, fdatasync, rename, directory fsync. One writer per name: the
/// caller holds the log directory's lock (`LAYOUT`, checkpoint manifests;
/// only a `Runtime` writes them), which is what makes the fixed temp name
/// safe. A file that many may try to create at once goes through
/// [`create_once`] instead.
pub async fn write_atomic<S: Storage>(
    storage: &S,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<PathBuf> {
    let path = dir.join(name);
    let tmp = temp_path(dir, name, false);
    remove_if_present(storage, &tmp)
        .await
        .map_err(|e| Error::io("remove", &tmp, e))?;
    write_temp(storage, &tmp, bytes).await?;
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

/// What [`create_once`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// This call's bytes are now `dir/name`.
    Ours,
    /// `dir/name` already existed (another creator won the race, or the
    /// file was there all along); this call's bytes were discarded.
    Theirs,
}

/// Create `dir/name` holding `bytes` unless it exists, race-free against
/// any number of creators in this and other processes: a temp file of a
/// name only this call uses, fdatasync, then a no-replace rename
/// ([`Storage::rename_noreplace`]) publishes it, so `dir/name` only ever
/// appears whole and is never replaced or written in place. Then the
/// directory is fsynced (on both outcomes: a winner's name may not be
/// durable yet when a loser sees it). A creator that dies before
/// publishing leaves its temp file behind; it is never read.
pub async fn create_once<S: Storage>(
    storage: &S,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<Created> {
    let path = dir.join(name);
    let tmp = temp_path(dir, name, true);
    write_temp(storage, &tmp, bytes).await?;
    let created = match storage.rename_noreplace(&tmp, &path).await {
        Ok(()) => Created::Ours,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            storage
                .remove(&tmp)
                .await
                .map_err(|e| Error::io("remove", &tmp, e))?;
            Created::Theirs
        }
        Err(e) => return Err(Error::io("rename without replacing", &path, e)),
    };
    storage
        .sync_dir(dir)
        .await
        .map_err(|e| Error::io("directory fsync", dir, e))?;
    Ok(created)
}

/// Read the file at `path` of kind `k`, refusing files larger than the
/// kind allows. The caller decides whether a bad file is fatal or skipped.
/// A missing file is `Ok(None)`.
pub async fn read<S: Storage>(
    storage: &S,
    path: &Path,
    k: Kind,
) -> std::result::Result<Option<Vec<u8>>, ReadError> {
    let io = |op: &'static str| {
        move |source: std::io::Error| ReadError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let f = match storage.open(path, false).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open")(e)),
    };
    let size = f.size().await.map_err(io("stat"))?;
    if size > (HEADER + k.max_payload) as u64 {
        return Err(ReadError::TooLarge { name: k.name, size });
    }
    let b = f
        .read_at(0, align_up(size as usize, BLOCK))
        .await
        .map_err(io("read"))?;
    close_quietly(f, path).await;
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
        assert_eq!(
            decode(K, &b),
            Err(MetaFault::Length {
                name: "test",
                len: u32::MAX as usize
            })
        );
    }
}
