//! Record frames: a 40-byte header followed by the payload, padded with
//! zeros to an 8-byte boundary so every payload is 8-byte aligned in the file
//! (and so in any block-aligned read buffer).
//!
//! ```text
//! offset size field
//!      0    4 CRC32C, seeded by the segment seed, over bytes 4..40 then the payload
//!      4    4 payload length (u32 LE), at most the configured maximum
//!      8    8 sequence number (u64 LE)
//!     16    8 epoch (u64 LE)
//!     24    8 durable-next: every seq below it was durable when this frame was built
//!     32    1 kind (1 data, 2 barrier, 3 checkpoint marker, 4 commit, 5 close)
//!     33    7 reserved, zero
//!     40    n payload
//!   40+n    p zero padding, p = (8 - (40+n) % 8) % 8
//! ```
//! A 40-byte all-zero header marks the end of the data in a segment: the
//! writer never produces it (kind 0 is invalid), and segments are zeroed or
//! freshly created before use.

use super::{FRAME_ALIGN, align_up, seed::SegmentSeed, u32_at, u64_at};
use crate::ids::{Epoch, Seq};

/// Size of a frame header.
pub const FRAME_HEADER: usize = 40;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum RecordKind {
    /// Engine data (input or state changes).
    Data = 1,
    /// End of an epoch: the frame's epoch is the epoch it closes.
    Barrier = 2,
    /// A checkpoint marker (checkpoint id, epoch, snapshot reference).
    Checkpoint = 3,
    /// The epoch's commit record (source offsets and watermark).
    Commit = 4,
    /// Written on clean close; vouches for everything before it.
    Close = 5,
}

impl RecordKind {
    /// Decode a kind byte.
    pub fn from_u8(b: u8) -> Option<RecordKind> {
        Some(match b {
            1 => RecordKind::Data,
            2 => RecordKind::Barrier,
            3 => RecordKind::Checkpoint,
            4 => RecordKind::Commit,
            5 => RecordKind::Close,
            _ => return None,
        })
    }
}

/// The fields of a frame header other than CRC and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Sequence number.
    pub seq: Seq,
    /// Epoch.
    pub epoch: Epoch,
    /// Everything below this sequence number was durable when the frame was built.
    pub durable_next: Seq,
    /// Record kind.
    pub kind: RecordKind,
}

/// Total on-disk size of a frame with a payload of `payload_len` bytes.
#[inline]
pub const fn frame_len(payload_len: usize) -> usize {
    align_up(FRAME_HEADER + payload_len, FRAME_ALIGN)
}

/// Write the header fields other than the CRC (bytes 4..40) for `meta` and
/// a payload of `len` bytes; the reserved bytes are zeroed, so `h` may hold
/// anything before. The one place that knows where each field sits.
#[inline(always)]
fn put_fields(h: &mut [u8; FRAME_HEADER], meta: &FrameMeta, len: usize) {
    h[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    h[8..16].copy_from_slice(&meta.seq.0.to_le_bytes());
    h[16..24].copy_from_slice(&meta.epoch.0.to_le_bytes());
    h[24..32].copy_from_slice(&meta.durable_next.0.to_le_bytes());
    // The kind byte and the seven reserved zero bytes, in one store.
    h[32..40].copy_from_slice(&u64::from(meta.kind as u8).to_le_bytes());
}

/// The CRC of a frame whose header is `h` (40 bytes): continued from the
/// segment seed over header bytes 4..40, then over the payload.
#[inline]
fn frame_crc(seed: SegmentSeed, h: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c_append(seed.0, &h[4..]), payload)
}

/// Build the header for `meta` and `payload` under `seed`, for a caller
/// that copies header, payload and padding separately (a frame that
/// straddles buffers). `payload` must be at most `u32::MAX` bytes (the
/// writer bounds it by the configured maximum first).
#[inline]
pub fn encode_header(seed: SegmentSeed, meta: &FrameMeta, payload: &[u8]) -> [u8; FRAME_HEADER] {
    let mut h = [0u8; FRAME_HEADER];
    put_fields(&mut h, meta, payload.len());
    let crc = frame_crc(seed, &h, payload);
    h[0..4].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Encode the whole frame (header, payload, zero padding) in place at the
/// start of `dst`, with one CRC pass over the contiguous bytes; returns its
/// length, [`frame_len`]`(payload.len())`. The writer's append fast path.
/// `payload` must be at most `u32::MAX` bytes.
///
/// # Panics
///
/// If `dst` is shorter than the frame.
#[inline]
pub fn encode_into(dst: &mut [u8], seed: SegmentSeed, meta: &FrameMeta, payload: &[u8]) -> usize {
    let n = payload.len();
    let flen = frame_len(n);
    let (body, pad) = dst[..flen].split_at_mut(FRAME_HEADER + n);
    let (h, p) = body
        .split_first_chunk_mut::<FRAME_HEADER>()
        .expect("a frame is at least a header long");
    put_fields(h, meta, n);
    p.copy_from_slice(payload);
    pad.fill(0);
    // Header fields and payload are contiguous here: one pass computes what
    // `frame_crc` computes in two.
    let crc = crc32c::crc32c_append(seed.0, &body[4..]);
    body[0..4].copy_from_slice(&crc.to_le_bytes());
    flen
}

/// A frame that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Header fields.
    pub meta: FrameMeta,
    /// The payload, borrowed from the decode buffer.
    pub payload: &'a [u8],
    /// On-disk length including header and padding.
    pub len: usize,
}

/// Why the bytes at a frame position are not a valid frame. Each variant
/// names the check that failed, with the values it compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameFault {
    /// Fewer bytes than a header remain, and not all of them are zero.
    #[error("{have} trailing bytes shorter than a frame header")]
    ShortHeader {
        /// Bytes left.
        have: usize,
    },
    /// The length field exceeds the payload bound.
    #[error("length {len} exceeds maximum {max}")]
    BadLength {
        /// The length field.
        len: usize,
        /// The bound it was checked against.
        max: usize,
    },
    /// The kind byte names no [`RecordKind`].
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// A reserved header byte is not zero.
    #[error("reserved header bytes are not zero")]
    ReservedBits,
    /// The sequence number or the epoch is 2^64 − 1, which no frame has.
    #[error("sequence number or epoch at the 64-bit limit")]
    NumberAtLimit,
    /// The frame runs past the readable bytes (the file or the segment ends).
    #[error("frame of {len} bytes extends past the {have} readable bytes")]
    Truncated {
        /// The frame's on-disk length, header and padding included.
        len: usize,
        /// Bytes readable from the frame's start.
        have: usize,
    },
    /// A padding byte after the payload is not zero.
    #[error("frame padding is not zero")]
    PaddingNotZero,
    /// The CRC stored in the frame is not the CRC of its bytes.
    #[error("CRC mismatch: stored {expected:#010x}, computed {actual:#010x}")]
    Crc {
        /// The CRC stored in the frame.
        expected: u32,
        /// The CRC computed over the frame's bytes.
        actual: u32,
    },
}

/// Result of looking at a frame position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// All-zero header, or too few bytes left for a header: no more data.
    End,
    /// A valid frame.
    Frame(Frame<'a>),
    /// Bytes that are not a valid frame, and the check that failed.
    Invalid(FrameFault),
}

/// The checks of a (non-zero) header that need neither the payload nor the
/// CRC: the length bound, the kind and the reserved bytes. Returns the
/// payload length and the kind. `decode_at` and `frame_need` both ask it,
/// so the two agree on which headers describe a frame.
#[inline]
fn check_fields(
    h: &[u8; FRAME_HEADER],
    max_payload: usize,
) -> Result<(usize, RecordKind), FrameFault> {
    let len = u32_at(h, 4) as usize;
    if len > max_payload {
        return Err(FrameFault::BadLength {
            len,
            max: max_payload,
        });
    }
    let kind = RecordKind::from_u8(h[32]).ok_or(FrameFault::UnknownKind(h[32]))?;
    if h[33..40].iter().any(|&b| b != 0) {
        return Err(FrameFault::ReservedBits);
    }
    // The writer never gets there (`Seq::END`, `Epoch::END`).
    if u64_at(h, 8) == Seq::END.0 || u64_at(h, 16) == Epoch::END.0 {
        return Err(FrameFault::NumberAtLimit);
    }
    Ok((len, kind))
}

/// How many bytes from the start of `v` `decode_at(v, 0, ..)` looks at: the
/// header, plus payload and padding when the header passes the checks made
/// before the CRC (so that garbage never asks for more than a header). A
/// caller reading through a window asks for this many bytes, then decodes.
#[inline]
pub fn frame_need(v: &[u8], max_payload: usize) -> usize {
    match v
        .first_chunk::<FRAME_HEADER>()
        .map(|h| check_fields(h, max_payload))
    {
        Some(Ok((len, _))) => frame_len(len),
        _ => FRAME_HEADER,
    }
}

/// The payload length a frame header declares, unchecked (`None` if `h`
/// is shorter than a header). For judging what the bytes of a frame that
/// failed its checks would have covered.
#[inline]
pub fn declared_payload_len(h: &[u8]) -> Option<usize> {
    h.first_chunk::<FRAME_HEADER>()
        .map(|h| u32_at(h, 4) as usize)
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Decode the frame at `pos` in `buf`. `buf` holds the bytes of the segment
/// up to the end of what could be read; `max_payload` bounds the length field.
pub fn decode_at(buf: &[u8], pos: usize, seed: SegmentSeed, max_payload: usize) -> Decoded<'_> {
    let rest = buf.get(pos..).unwrap_or(&[]);
    let Some(h) = rest.first_chunk::<FRAME_HEADER>() else {
        // Fewer than a header's bytes remain: anything non-zero is a torn frame.
        return if all_zero(rest) {
            Decoded::End
        } else {
            Decoded::Invalid(FrameFault::ShortHeader { have: rest.len() })
        };
    };
    if all_zero(h) {
        return Decoded::End;
    }
    let (len, kind) = match check_fields(h, max_payload) {
        Ok(fields) => fields,
        Err(fault) => return Decoded::Invalid(fault),
    };
    let total = frame_len(len);
    let Some(payload) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Decoded::Invalid(FrameFault::Truncated {
            len: total,
            have: rest.len(),
        });
    };
    // Padding is part of the frame: it must be zero where it is readable.
    let pad = rest.get(FRAME_HEADER + len..total.min(rest.len()));
    if !pad.is_some_and(all_zero) {
        return Decoded::Invalid(FrameFault::PaddingNotZero);
    }
    let (expected, actual) = (u32_at(h, 0), frame_crc(seed, h, payload));
    if expected != actual {
        return Decoded::Invalid(FrameFault::Crc { expected, actual });
    }
    Decoded::Frame(Frame {
        meta: FrameMeta {
            seq: Seq(u64_at(h, 8)),
            epoch: Epoch(u64_at(h, 16)),
            durable_next: Seq(u64_at(h, 24)),
            kind,
        },
        payload,
        len: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(seed: SegmentSeed, meta: &FrameMeta, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0xa5; frame_len(payload.len()) + 16];
        let n = encode_into(&mut v, seed, meta, payload);
        v.truncate(n);
        v
    }

    #[test]
    fn both_encoders_write_the_same_frame() {
        let seed = SegmentSeed(0xfeed);
        for len in [0usize, 1, 7, 8, 9, 100, 4096] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5c).collect();
            let mut split = encode_header(seed, &META, &payload).to_vec();
            split.extend_from_slice(&payload);
            split.resize(frame_len(len), 0);
            // `encode_into` overwrites stale bytes (reserved and padding).
            assert_eq!(
                encode(seed, &META, &payload),
                split,
                "payload of {len} bytes"
            );
        }
    }

    const META: FrameMeta = FrameMeta {
        seq: Seq(42),
        epoch: Epoch(3),
        durable_next: Seq(40),
        kind: RecordKind::Data,
    };

    #[test]
    fn round_trips() {
        let seed = SegmentSeed(0x1234_5678);
        let buf = encode(seed, &META, b"hello world");
        assert_eq!(buf.len() % 8, 0);
        match decode_at(&buf, 0, seed, 1 << 20) {
            Decoded::Frame(f) => {
                assert_eq!(f.meta, META);
                assert_eq!(f.payload, b"hello world");
                assert_eq!(f.len, buf.len());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_different_seed_never_validates() {
        let buf = encode(SegmentSeed(1), &META, b"payload");
        assert!(matches!(
            decode_at(&buf, 0, SegmentSeed(2), 1 << 20),
            Decoded::Invalid(FrameFault::Crc { .. })
        ));
    }

    #[test]
    fn frame_need_asks_for_the_frame_only_when_the_header_checks_pass() {
        let seed = SegmentSeed(7);
        let buf = encode(seed, &META, &[3u8; 100]);
        assert_eq!(frame_need(&buf, 1 << 20), frame_len(100));
        assert_eq!(frame_need(&buf[..FRAME_HEADER - 1], 1 << 20), FRAME_HEADER);
        // A length over the bound: decode_at refuses it, frame_need asks
        // for no more than the header.
        assert_eq!(frame_need(&buf, 99), FRAME_HEADER);
        assert_eq!(
            decode_at(&buf, 0, seed, 99),
            Decoded::Invalid(FrameFault::BadLength { len: 100, max: 99 })
        );
        let mut bad = buf.clone();
        bad[32] = 9;
        assert_eq!(frame_need(&bad, 1 << 20), FRAME_HEADER);
        assert_eq!(
            decode_at(&bad, 0, seed, 1 << 20),
            Decoded::Invalid(FrameFault::UnknownKind(9))
        );
        bad[32] = META.kind as u8;
        bad[35] = 1;
        assert_eq!(frame_need(&bad, 1 << 20), FRAME_HEADER);
        assert_eq!(
            decode_at(&bad, 0, seed, 1 << 20),
            Decoded::Invalid(FrameFault::ReservedBits)
        );
        // A header that passes, cut short: the frame's length is asked for,
        // and what is there is reported truncated.
        let cut = &buf[..FRAME_HEADER + 10];
        assert_eq!(frame_need(cut, 1 << 20), frame_len(100));
        assert_eq!(
            decode_at(cut, 0, seed, 1 << 20),
            Decoded::Invalid(FrameFault::Truncated {
                len: frame_len(100),
                have: FRAME_HEADER + 10
            })
        );
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let seed = SegmentSeed(99);
        let buf = encode(seed, &META, b"0123456789abcdef0123");
        let meaningful = FRAME_HEADER + 20;
        for bit in 0..meaningful * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode_at(&bad, 0, seed, 1 << 20), Decoded::Frame(_)),
                "bit {bit} accepted"
            );
        }
    }

    #[test]
    fn zeros_are_the_end_and_short_garbage_is_invalid() {
        assert_eq!(decode_at(&[0u8; 64], 0, SegmentSeed(0), 10), Decoded::End);
        assert_eq!(decode_at(&[0u8; 16], 0, SegmentSeed(0), 10), Decoded::End);
        assert_eq!(
            decode_at(&[1u8; 16], 0, SegmentSeed(0), 10),
            Decoded::Invalid(FrameFault::ShortHeader { have: 16 })
        );
        assert_eq!(decode_at(&[], usize::MAX, SegmentSeed(0), 10), Decoded::End);
    }
}
