//! The log id file, `LOG_ID`, at the root of a log directory.
//!
//! ```text
//! offset size field
//!      0    8 magic  "SHRDWLID"
//!      8    4 format version (u32 LE)
//!     12    4 CRC32C of bytes 0..12 and 16..32
//!     16   16 log id (random)
//! ```
//! It is created once, when the directory is initialised (written to a temp
//! file, fsynced, renamed, directory fsynced) and never changed.

use super::u32_at;

/// Length of the encoded log id file.
pub const LOG_ID_LEN: usize = 32;
const MAGIC: &[u8; 8] = b"SHRDWLID";
/// Current format version.
pub const FORMAT_VERSION: u32 = 1;

/// Encode the log id file.
pub fn encode(log_id: [u8; 16]) -> [u8; LOG_ID_LEN] {
    let mut b = [0u8; LOG_ID_LEN];
    b[..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[16..32].copy_from_slice(&log_id);
    let crc = crc(&b);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b
}

fn crc(b: &[u8; LOG_ID_LEN]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&b[..12]), &b[16..32])
}

/// Why bytes are not a `LOG_ID` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogIdFault {
    /// The file has the wrong length.
    #[error("LOG_ID has {len} bytes, expected {LOG_ID_LEN}")]
    Length {
        /// Its length.
        len: usize,
    },
    /// The magic bytes are wrong.
    #[error("bad magic in LOG_ID")]
    BadMagic,
    /// A format version this code does not read.
    #[error("unsupported format version {0}")]
    Version(u32),
    /// The stored CRC is not the CRC of the bytes.
    #[error("LOG_ID CRC mismatch: stored {expected:#010x}, computed {actual:#010x}")]
    Crc {
        /// The CRC stored in the file.
        expected: u32,
        /// The CRC computed over its bytes.
        actual: u32,
    },
}

/// Decode the log id file; `Err` names the check that failed.
pub fn decode(b: &[u8]) -> Result<[u8; 16], LogIdFault> {
    let arr: &[u8; LOG_ID_LEN] = b
        .try_into()
        .map_err(|_| LogIdFault::Length { len: b.len() })?;
    if &arr[..8] != MAGIC {
        return Err(LogIdFault::BadMagic);
    }
    let version = u32_at(arr, 8);
    if version != FORMAT_VERSION {
        return Err(LogIdFault::Version(version));
    }
    let (expected, actual) = (u32_at(arr, 12), crc(arr));
    if expected != actual {
        return Err(LogIdFault::Crc { expected, actual });
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&arr[16..32]);
    Ok(id)
}

/// A fresh random log id, from the OS entropy pool.
pub fn random() -> [u8; 16] {
    let mut id = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut id).is_ok() {
            return id;
        }
    }
    // Fallback: time, pid and address-space randomness through a hasher.
    use std::hash::{BuildHasher, Hasher};
    for chunk in id.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
    }
    id
}

/// A random 64-bit nonce (for segment seeds).
pub fn random_u64() -> u64 {
    let id = random();
    let mut a = [0u8; 8];
    a.copy_from_slice(&id[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_every_single_bit_flip() {
        let id = random();
        let enc = encode(id);
        assert_eq!(decode(&enc), Ok(id));
        for bit in 0..LOG_ID_LEN * 8 {
            let mut bad = enc;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&bad).is_err(), "bit {bit} flip accepted");
        }
        assert_eq!(decode(&enc[..31]), Err(LogIdFault::Length { len: 31 }));
    }
}
