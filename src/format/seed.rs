//! CRC seeds. Every record CRC starts from a seed derived from the log id,
//! the shard, the segment index, the segment's first sequence number and a
//! random per-segment nonce. Bytes written under any other seed (another log,
//! another shard, an older incarnation of a recycled segment file) fail the
//! CRC check with probability 1 - 2^-32 per frame, and additionally fail the
//! sequence-continuity check.

/// Seed for the record CRCs of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSeed(pub u32);

impl SegmentSeed {
    /// Derive the seed from the segment's identity.
    pub fn derive(log_id: [u8; 16], shard: u32, index: u64, first_seq: u64, nonce: u64) -> Self {
        let mut b = [0u8; 16 + 4 + 8 + 8 + 8];
        b[..16].copy_from_slice(&log_id);
        b[16..20].copy_from_slice(&shard.to_le_bytes());
        b[20..28].copy_from_slice(&index.to_le_bytes());
        b[28..36].copy_from_slice(&first_seq.to_le_bytes());
        b[36..44].copy_from_slice(&nonce.to_le_bytes());
        SegmentSeed(crc32c::crc32c(&b))
    }
}
