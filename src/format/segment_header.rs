//! The segment header: the first 4 KiB block of every segment file.
//!
//! ```text
//! offset size field
//!      0    8 magic "SHRDSEG1"
//!      8    4 format version (u32 LE)
//!     12    4 flags: bit 0 `ZEROED` (see [`SegmentHeader::zeroed`]), bit 1
//!             `SIZED` (see [`SegmentHeader::sized`]); the other bits
//!             must be 0
//!     16   16 log id
//!     32    4 shard id (u32 LE)
//!     36    4 reserved (must be 0)
//!     40    8 segment index (u64 LE; increasing per shard; an index dropped by
//!             recovery may be created again, with a fresh nonce)
//!     48    8 first sequence number of the segment
//!     56    8 first epoch of the segment
//!     64    8 nonce (random per segment incarnation)
//!     72    8 segment size in bytes (the file's capacity; bounds every offset)
//!     80    4 CRC32C of bytes 0..80
//!     84 4012 zero
//! ```
//! Records start at offset [`super::BLOCK`].

use super::{BLOCK, log_id::FORMAT_VERSION, seed::SegmentSeed, u32_at, u64_at};
use crate::ids::{Epoch, Seq, ShardId};

const MAGIC: &[u8; 8] = b"SHRDSEG1";
/// Bytes of the header that carry meaning (the rest of the block is zero).
pub const HEADER_USED: usize = 84;
/// Offset of the first record frame.
pub const RECORDS_START: usize = BLOCK;
/// Smallest segment size accepted: the header block plus one block of records.
pub const MIN_SEGMENT_SIZE: u64 = 2 * BLOCK as u64;
/// Largest segment size accepted when decoding: 16 GiB.
pub const MAX_SEGMENT_SIZE: u64 = 16 << 30;

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The log this segment belongs to.
    pub log_id: [u8; 16],
    /// The owning shard.
    pub shard: ShardId,
    /// Position of this segment in the shard's log (strictly increasing).
    pub index: u64,
    /// Sequence number of the first record in the segment.
    pub first_seq: Seq,
    /// Epoch of the first record in the segment.
    pub first_epoch: Epoch,
    /// Random nonce of this incarnation of the file.
    pub nonce: u64,
    /// Capacity of the segment in bytes.
    pub segment_size: u64,
    /// Flag `ZEROED`: every byte of the segment read as zero, durably,
    /// before its first frame was written (it was zero-filled or
    /// fallocated and synced). Then any non-zero byte past the header was
    /// written by this segment's writer, and a frame whose every sector
    /// holds some of its bytes was written whole: if it fails its checks,
    /// the bytes were damaged after they landed (docs/FORMAT.md §5).
    pub zeroed: bool,
    /// Flag `SIZED`: the file's length was set to `segment_size` and made
    /// durable (fdatasync) before the segment's first write, so no crash
    /// can leave the file shorter than that. Recovery refuses a `SIZED`
    /// segment that is shorter (`CorruptionCause::SegmentTruncated`).
    pub sized: bool,
}

/// Header flag bit: [`SegmentHeader::zeroed`].
const FLAG_ZEROED: u32 = 1;
/// Header flag bit: [`SegmentHeader::sized`].
const FLAG_SIZED: u32 = 2;

/// Why a header block was not accepted: blank, or not. This split is the
/// whole of it (callers match on both arms); what can go wrong with a
/// non-blank header is [`HeaderFault`], which may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The block is all zero: a prepared segment that was never used.
    #[error("blank segment header")]
    Blank,
    /// Anything else: which check failed.
    #[error(transparent)]
    Invalid(HeaderFault),
}

/// Which check a non-blank segment header failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderFault {
    /// Fewer bytes than the header's used part.
    #[error("header truncated to {len} bytes")]
    Truncated {
        /// Bytes present.
        len: usize,
    },
    /// The magic bytes are wrong.
    #[error("bad segment magic")]
    BadMagic,
    /// The CRC stored in the header is not the CRC of its bytes.
    #[error("header CRC mismatch: stored {expected:#010x}, computed {actual:#010x}")]
    Crc {
        /// The CRC stored in the header.
        expected: u32,
        /// The CRC computed over bytes 0..80.
        actual: u32,
    },
    /// A format version this code does not read.
    #[error("unsupported format version {0}")]
    Version(u32),
    /// The flags or the reserved field are not zero.
    #[error("reserved header bits set")]
    ReservedBits,
    /// The segment size is below the minimum, above the maximum, or not a
    /// multiple of the block size.
    #[error("segment size {0} out of bounds")]
    SegmentSize(u64),
}

impl SegmentHeader {
    /// The CRC seed for this segment's records.
    pub fn seed(&self) -> SegmentSeed {
        SegmentSeed::derive(
            self.log_id,
            self.shard.0,
            self.index,
            self.first_seq.0,
            self.nonce,
        )
    }

    /// Encode into the first `HEADER_USED` bytes of `out`, zeroing the rest
    /// of the block. `out` must be at least one block long.
    pub fn encode_into(&self, out: &mut [u8]) {
        let b = &mut out[..BLOCK];
        b.fill(0);
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let flags =
            if self.zeroed { FLAG_ZEROED } else { 0 } | if self.sized { FLAG_SIZED } else { 0 };
        b[12..16].copy_from_slice(&flags.to_le_bytes());
        b[16..32].copy_from_slice(&self.log_id);
        b[32..36].copy_from_slice(&self.shard.0.to_le_bytes());
        b[40..48].copy_from_slice(&self.index.to_le_bytes());
        b[48..56].copy_from_slice(&self.first_seq.0.to_le_bytes());
        b[56..64].copy_from_slice(&self.first_epoch.0.to_le_bytes());
        b[64..72].copy_from_slice(&self.nonce.to_le_bytes());
        b[72..80].copy_from_slice(&self.segment_size.to_le_bytes());
        let crc = crc32c::crc32c(&b[..80]);
        b[80..84].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decode and validate a header block.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, HeaderError> {
        // Zeros, or nothing at all (a segment file created but never
        // written), are a blank segment however few bytes there are.
        let used = &b[..b.len().min(BLOCK)];
        if used.iter().all(|&x| x == 0) {
            return Err(HeaderError::Blank);
        }
        if b.len() < HEADER_USED {
            return Err(HeaderError::Invalid(HeaderFault::Truncated {
                len: b.len(),
            }));
        }
        if &b[..8] != MAGIC {
            return Err(HeaderError::Invalid(HeaderFault::BadMagic));
        }
        let (expected, actual) = (u32_at(b, 80), crc32c::crc32c(&b[..80]));
        if expected != actual {
            return Err(HeaderError::Invalid(HeaderFault::Crc { expected, actual }));
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Invalid(HeaderFault::Version(version)));
        }
        let flags = u32_at(b, 12);
        if flags & !(FLAG_ZEROED | FLAG_SIZED) != 0 || u32_at(b, 36) != 0 {
            return Err(HeaderError::Invalid(HeaderFault::ReservedBits));
        }
        let segment_size = u64_at(b, 72);
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size)
            || !segment_size.is_multiple_of(BLOCK as u64)
        {
            return Err(HeaderError::Invalid(HeaderFault::SegmentSize(segment_size)));
        }
        let mut log_id = [0u8; 16];
        log_id.copy_from_slice(&b[16..32]);
        Ok(SegmentHeader {
            log_id,
            shard: ShardId(u32_at(b, 32)),
            index: u64_at(b, 40),
            first_seq: Seq(u64_at(b, 48)),
            first_epoch: Epoch(u64_at(b, 56)),
            nonce: u64_at(b, 64),
            segment_size,
            zeroed: flags & FLAG_ZEROED != 0,
            sized: flags & FLAG_SIZED != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentHeader {
        SegmentHeader {
            log_id: [7; 16],
            shard: ShardId(3),
            index: 9,
            first_seq: Seq(1000),
            first_epoch: Epoch(4),
            nonce: 0xdead_beef,
            segment_size: 1 << 20,
            zeroed: true,
            sized: true,
        }
    }

    #[test]
    fn round_trips() {
        let mut b = vec![0xffu8; BLOCK];
        sample().encode_into(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Ok(sample()));
    }

    #[test]
    fn each_flag_round_trips_on_its_own_bit() {
        for (zeroed, sized, bits) in [(false, false, 0), (true, false, 1), (false, true, 2)] {
            let h = SegmentHeader {
                zeroed,
                sized,
                ..sample()
            };
            let mut b = vec![0u8; BLOCK];
            h.encode_into(&mut b);
            assert_eq!(u32_at(&b, 12), bits);
            assert_eq!(SegmentHeader::decode(&b), Ok(h));
        }
        // A flag this version does not know is refused.
        let mut b = vec![0u8; BLOCK];
        sample().encode_into(&mut b);
        b[12] |= 4;
        let crc = crc32c::crc32c(&b[..80]);
        b[80..84].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            SegmentHeader::decode(&b),
            Err(HeaderError::Invalid(HeaderFault::ReservedBits))
        );
    }

    #[test]
    fn every_bit_flip_in_the_used_bytes_is_rejected() {
        let mut b = vec![0u8; BLOCK];
        sample().encode_into(&mut b);
        for bit in 0..HEADER_USED * 8 {
            let mut bad = b.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&bad).is_err(), "bit {bit} accepted");
        }
    }

    #[test]
    fn zero_block_is_blank() {
        assert_eq!(
            SegmentHeader::decode(&[0u8; BLOCK]),
            Err(HeaderError::Blank)
        );
    }

    #[test]
    fn an_empty_file_is_blank_and_a_short_header_is_invalid() {
        assert_eq!(SegmentHeader::decode(&[]), Err(HeaderError::Blank));
        assert_eq!(SegmentHeader::decode(&[0u8; 10]), Err(HeaderError::Blank));
        let mut b = vec![0u8; BLOCK];
        sample().encode_into(&mut b);
        assert_eq!(
            SegmentHeader::decode(&b[..HEADER_USED - 1]),
            Err(HeaderError::Invalid(HeaderFault::Truncated {
                len: HEADER_USED - 1
            }))
        );
    }

    #[test]
    fn different_segments_get_different_seeds() {
        let a = sample();
        let mut b = a;
        b.nonce += 1;
        assert_ne!(a.seed(), b.seed());
        b = a;
        b.index += 1;
        assert_ne!(a.seed(), b.seed());
    }
}
