//! The on-disk format: segment headers, record frames, CRC seeds and the
//! log id file. Every type documents its own byte layout; `docs/FORMAT.md`
//! gathers them with the invariants and the assumptions about the media.
//!
//! Everything here is pure: encoding writes into a caller's slice, decoding
//! reads from a slice and returns an error for any byte pattern it does not
//! accept. Nothing panics on input and nothing allocates from a length read
//! off the disk.

pub mod frame;
pub mod log_id;
pub mod seed;
pub mod segment_header;

/// Direct I/O alignment: every write position and length is a multiple of it.
pub const BLOCK: usize = 4096;

/// Alignment of every frame (and so of every payload) inside a segment.
pub const FRAME_ALIGN: usize = 8;

/// Hard upper bound on a record's payload: 64 MiB. Configurations may lower it.
pub const MAX_RECORD_HARD: usize = 64 << 20;

/// Round `n` up to a multiple of `align` (a power of two).
#[inline]
pub const fn align_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

/// Round `n` down to a multiple of `align` (a power of two).
#[inline]
pub const fn align_down(n: usize, align: usize) -> usize {
    n & !(align - 1)
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
