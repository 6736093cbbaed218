//! A forward-only view of one file's bytes, in windows, and the one walk of
//! frames through it.
//!
//! The recovery scanner (`recovery::scan`) and the reader
//! (`reader::ShardReader`) never see a whole segment: they ask a [`Window`]
//! for the bytes from an offset on, with at least as many bytes as the frame
//! there needs, and the window refills itself (in production:
//! `read_ahead::ChunkStream`, chunked and read ahead).
//! A frame that straddles two reads is handed over whole, because the window
//! keeps the bytes from the requested offset when it refills.
//! [`SliceWindow`] serves a segment already in memory, so the table of
//! recovery cases can still be tested on byte slices.
//!
//! [`SegmentFrames`] is the mechanics both callers share: given a window, a
//! position, the segment's limit, seed and payload bound, it decodes the
//! frame there. What a bad frame or the end marker means is each caller's
//! policy, not this module's.
//!
//! Nothing here does I/O; it imports only `format`.

use std::convert::Infallible;

use crate::format::frame::{Decoded, FRAME_HEADER, decode_at, frame_need};
use crate::format::seed::SegmentSeed;
use crate::format::segment_header::SegmentHeader;

/// Forward-only access to the bytes of one file.
#[allow(async_fn_in_trait)] // thread-per-core: futures are deliberately !Send
pub trait Window {
    /// Why bytes could not be had.
    type Error;

    /// The bytes of the file from offset `from` to the end of what the
    /// window holds: at least `min` bytes, fewer only where the file ends.
    /// Empty if `from` is at or past the end of the file. `from` must never
    /// be smaller than in an earlier call: bytes before it may be gone.
    async fn at(&mut self, from: u64, min: usize) -> Result<&[u8], Self::Error>;

    /// Read the file to its end; returns the offset just past its last
    /// non-zero byte (0 if every byte is zero).
    async fn finish(&mut self) -> Result<u64, Self::Error>;

    /// The first block of the file after this one, if the window reads a
    /// sequence of files and there is one (fewer bytes if that file is
    /// shorter). Asked once the current file has been read to its end, so a
    /// window that reads ahead has those bytes in hand already: the next
    /// segment's header is read with its data, not on its own.
    async fn next_head(&mut self) -> Result<Option<&[u8]>, Self::Error>;

    /// The length of the file, as far as the window knows it: its size
    /// when it was opened, or less where a read found it shorter. Exact
    /// once [`Window::finish`] returned.
    fn file_len(&self) -> u64;
}

/// A file already in memory.
pub struct SliceWindow<'a> {
    bytes: &'a [u8],
    next: Option<&'a [u8]>,
}

impl<'a> SliceWindow<'a> {
    /// A window over `bytes`, the whole file, with no file after it.
    pub fn new(bytes: &'a [u8]) -> SliceWindow<'a> {
        SliceWindow { bytes, next: None }
    }

    /// A window over `bytes`, followed by a file that starts with `next`.
    pub fn with_next(bytes: &'a [u8], next: Option<&'a [u8]>) -> SliceWindow<'a> {
        SliceWindow { bytes, next }
    }
}

impl Window for SliceWindow<'_> {
    type Error = Infallible;

    async fn at(&mut self, from: u64, _min: usize) -> Result<&[u8], Infallible> {
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(self.bytes.get(from..).unwrap_or(&[]))
    }

    async fn finish(&mut self) -> Result<u64, Infallible> {
        Ok(last_nonzero_end(self.bytes) as u64)
    }

    async fn next_head(&mut self) -> Result<Option<&[u8]>, Infallible> {
        Ok(self.next.map(|n| &n[..n.len().min(crate::format::BLOCK)]))
    }

    fn file_len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// Run a future that never waits (a scan over a [`SliceWindow`]).
pub(crate) fn ready<T>(f: impl std::future::Future<Output = Result<T, Infallible>>) -> T {
    match futures_lite::future::block_on(f) {
        Ok(t) => t,
        Err(never) => match never {},
    }
}

/// The bytes at `pos`: at least `need` bytes, cut at `lim` (the end of the
/// segment's records), fewer only where `lim` or the file ends first.
/// Decoding a frame at offset 0 of this view gives the same answer as
/// decoding it at `pos` in the whole segment cut at `lim`, provided `need`
/// is at least [`frame_need`] of the view.
async fn view<W: Window>(win: &mut W, pos: u64, need: usize, lim: u64) -> Result<&[u8], W::Error> {
    let room = usize::try_from(lim.saturating_sub(pos)).unwrap_or(usize::MAX);
    let v = win.at(pos, need.min(room)).await?;
    Ok(&v[..v.len().min(room)])
}

/// The frames of one segment, read through a [`Window`]: what the recovery
/// scan and the reader both walk. It knows the segment's seed, where its
/// records end (the segment size from its header) and the payload bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFrames {
    seed: SegmentSeed,
    limit: u64,
    max_payload: usize,
}

impl SegmentFrames {
    /// The frames of the segment whose header is `h`, with payloads of at
    /// most `max_payload` bytes.
    pub fn new(h: &SegmentHeader, max_payload: usize) -> SegmentFrames {
        SegmentFrames {
            seed: h.seed(),
            limit: h.segment_size,
            max_payload,
        }
    }

    /// The bytes from `pos` on, at least a frame header's worth where the
    /// segment and the file have them, cut at the end of the segment's
    /// records (for zero searches between frames).
    pub async fn head<'w, W: Window>(
        &self,
        win: &'w mut W,
        pos: u64,
    ) -> Result<&'w [u8], W::Error> {
        view(win, pos, FRAME_HEADER, self.limit).await
    }

    /// Decode the frame at `pos`: the header first, then as many bytes as
    /// that header says the frame needs (never more than a header's worth
    /// for a header that fails its checks), then [`decode_at`].
    pub async fn decode<'w, W: Window>(
        &self,
        win: &'w mut W,
        pos: u64,
    ) -> Result<Decoded<'w>, W::Error> {
        let need = frame_need(
            view(win, pos, FRAME_HEADER, self.limit).await?,
            self.max_payload,
        );
        let v = view(win, pos, need, self.limit).await?;
        Ok(decode_at(v, 0, self.seed, self.max_payload))
    }
}

/// Bytes per word in the zero checks.
const WORD: usize = 8;

/// Whether a 64-byte chunk holds a non-zero byte, a word at a time.
#[inline]
fn any_nonzero(c: &[u8]) -> bool {
    c.chunks_exact(WORD)
        .map(|w| {
            let mut a = [0u8; WORD];
            a.copy_from_slice(w);
            u64::from_ne_bytes(a)
        })
        .fold(0, |acc, w| acc | w)
        != 0
}

/// Offset of the first non-zero byte of `b`.
pub fn first_nonzero(b: &[u8]) -> Option<usize> {
    let mut words = b.chunks_exact(64);
    let mut at = 0;
    for c in &mut words {
        if any_nonzero(c) {
            return c.iter().position(|&x| x != 0).map(|i| at + i);
        }
        at += 64;
    }
    words
        .remainder()
        .iter()
        .position(|&x| x != 0)
        .map(|i| at + i)
}

/// One past the offset of the last non-zero byte of `b` (0 if all zero).
pub fn last_nonzero_end(b: &[u8]) -> usize {
    let mut words = b.rchunks_exact(64);
    let mut end = b.len();
    for c in &mut words {
        if any_nonzero(c) {
            return c
                .iter()
                .rposition(|&x| x != 0)
                .map_or(0, |i| end - 64 + i + 1);
        }
        end -= 64;
    }
    words
        .remainder()
        .iter()
        .rposition(|&x| x != 0)
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_searches_agree_with_byte_loops() {
        let mut b = vec![0u8; 1000];
        assert_eq!(first_nonzero(&b), None);
        assert_eq!(last_nonzero_end(&b), 0);
        for &i in &[0usize, 1, 7, 63, 64, 65, 500, 936, 937, 999] {
            let mut c = b.clone();
            c[i] = 3;
            assert_eq!(first_nonzero(&c), Some(i), "first {i}");
            assert_eq!(last_nonzero_end(&c), i + 1, "last {i}");
            for &s in &[0usize, 5, 64, 300] {
                let sl = &c[s.min(i)..];
                assert_eq!(first_nonzero(sl), sl.iter().position(|&x| x != 0));
                assert_eq!(
                    last_nonzero_end(sl),
                    sl.iter().rposition(|&x| x != 0).map_or(0, |k| k + 1)
                );
            }
        }
        b[10] = 1;
        b[990] = 1;
        assert_eq!((first_nonzero(&b), last_nonzero_end(&b)), (Some(10), 991));
    }
}
