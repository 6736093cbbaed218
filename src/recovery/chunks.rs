//! Chunked, read-ahead reading of a shard's segment files, for the recovery
//! scan and for readers.
//!
//! A [`ChunkStream`] reads a list of files in order, in block-aligned chunks
//! of [`CHUNK`] bytes, keeping [`DEPTH`] reads in flight (across file
//! boundaries) while the caller works on the current one. Buffers come from a
//! small pool and are reused, so memory stays bounded by the chunk size, the
//! read-ahead depth and the largest frame, whatever the size of the log.
//!
//! The stream is a [`Window`] on its current file. Each chunk lands in a
//! pooled buffer after [`ROOM`] bytes of head room; when a caller needs bytes
//! that run past the current chunk (a frame that straddles two reads), the
//! bytes it still needs from the current buffer are copied into the head room
//! of the next one, so the frame is contiguous. A frame longer than the head
//! room gets a buffer of its own, sized to it. Every buffer keeps file offsets
//! and memory addresses congruent modulo the block size, so payloads stay
//! 8-byte aligned in memory, as they are in the file.
//!
//! Reads go through [`StorageFile::read_into`], which `DmaStorage` runs on the
//! executor's blocking thread: the next chunk is read while the current one
//! is checked.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;

use super::window::{Window, last_nonzero_end};
use crate::error::{Error, Result};
use crate::format::segment_header::MAX_SEGMENT_SIZE;
use crate::format::{BLOCK, align_down, align_up};
use crate::io::{AlignedBuf, Storage, StorageFile};

/// Bytes per read.
pub(crate) const CHUNK: usize = 8 << 20;
/// Head room before each chunk for the carried start of a straddling frame.
pub(crate) const ROOM: usize = 1 << 20;
/// Reads kept in flight.
pub(crate) const DEPTH: usize = 2;

type ReadFuture = Pin<Box<dyn Future<Output = io::Result<(AlignedBuf, usize)>>>>;

/// A read issued (and maybe already done).
struct Pending {
    file: usize,
    pos: u64,
    len: usize,
    fut: Option<ReadFuture>,
    done: Option<io::Result<(AlignedBuf, usize)>>,
}

/// A file opened for reading.
struct Opened<F> {
    handle: Rc<F>,
    /// Bytes to read (the size at open, at most the largest segment).
    len: u64,
    /// Offset of the next read to issue.
    issued: u64,
}

/// Read-ahead over a list of files; a [`Window`] on the current one.
pub(crate) struct ChunkStream<S: Storage> {
    storage: S,
    paths: Vec<PathBuf>,
    /// Opened files, by index into `paths`; `None` once closed.
    files: Vec<Option<Opened<S::File>>>,
    /// Files `..opened` have been opened (or failed to open).
    opened: usize,
    /// A file that failed to open while reading ahead.
    open_error: Option<(usize, Error)>,
    /// Reads in flight, in file order.
    queue: VecDeque<Pending>,
    pool: Vec<AlignedBuf>,
    /// Bytes per read, and head room before each (tests shrink them). Both
    /// start small and are fitted to the files (see `fit`), so that reading
    /// a small log does not allocate and zero 2 × 9 MiB of buffers.
    chunk: usize,
    room: usize,
    /// The largest `chunk` and `room` allowed.
    max_chunk: usize,
    max_room: usize,
    /// A buffer was allocated: `room` is fixed from then on (reads in
    /// flight put their bytes at that offset).
    allocated: bool,
    /// The current file.
    cur: Option<usize>,
    /// End of the current file, as far as known.
    cur_len: u64,
    /// The window: file bytes `base..` are at `buf[lo..hi]`.
    buf: Option<AlignedBuf>,
    lo: usize,
    hi: usize,
    base: u64,
    /// One past the last non-zero byte of the current file received so far.
    last_nonzero: u64,
}

impl<S: Storage> ChunkStream<S> {
    /// A stream over `paths`, read in this order. Nothing is read before the
    /// first [`ChunkStream::start_file`].
    pub(crate) fn new(storage: S, paths: Vec<PathBuf>) -> ChunkStream<S> {
        let files = paths.iter().map(|_| None).collect();
        ChunkStream {
            storage,
            paths,
            files,
            opened: 0,
            open_error: None,
            queue: VecDeque::new(),
            pool: Vec::new(),
            chunk: BLOCK,
            room: BLOCK,
            max_chunk: CHUNK,
            max_room: ROOM,
            allocated: false,
            cur: None,
            cur_len: 0,
            buf: None,
            lo: 0,
            hi: 0,
            base: 0,
            last_nonzero: 0,
        }
    }

    /// The same stream with `chunk`-byte reads and `room` bytes of head
    /// room (block multiples), to exercise frames straddling reads.
    #[cfg(test)]
    pub(crate) fn with_sizes(mut self, chunk: usize, room: usize) -> ChunkStream<S> {
        (self.max_chunk, self.max_room) = (chunk, room);
        self
    }

    /// Make file `k` the current one, at offset 0. Files are started in
    /// increasing order; what is left of the current file, and of any file
    /// skipped, is dropped unread (reads in flight are waited for).
    pub(crate) async fn start_file(&mut self, k: usize) -> Result<()> {
        while let Some(p) = self.queue.front() {
            if p.file >= k {
                break;
            }
            let p = self.queue.pop_front().expect("front exists");
            if let Ok((b, _)) = wait(p).await {
                self.recycle(b);
            }
        }
        let done: Vec<usize> = (0..k.min(self.files.len())).collect();
        for i in done {
            if let Some(f) = self.files[i].take()
                && let Ok(f) = Rc::try_unwrap(f.handle)
            {
                let _ = f.close().await;
            }
        }
        if let Some(b) = self.buf.take() {
            self.recycle(b);
        }
        (self.lo, self.hi, self.base, self.last_nonzero) = (0, 0, 0, 0);
        self.cur = Some(k);
        self.opened = self.opened.max(k);
        self.fill().await;
        if let Some((i, _)) = &self.open_error
            && *i == k
        {
            let (_, e) = self.open_error.take().expect("checked");
            return Err(e);
        }
        self.cur_len = self
            .files
            .get(k)
            .and_then(|f| f.as_ref())
            .map_or(0, |f| f.len);
        Ok(())
    }

    /// The bytes `from..from + len` of the current file, which the window
    /// holds (they were returned by [`Window::at`] and the window has not
    /// moved since).
    pub(crate) fn held(&self, from: u64, len: usize) -> &[u8] {
        let buf = self.buf.as_deref().unwrap_or(&[]);
        let at = from
            .checked_sub(self.base)
            .and_then(|o| usize::try_from(o).ok())
            .map(|o| self.lo + o);
        at.and_then(|a| buf.get(a..a.checked_add(len)?))
            .expect("ChunkStream::held: bytes no longer held")
    }

    fn path(&self) -> PathBuf {
        self.cur
            .and_then(|k| self.paths.get(k))
            .cloned()
            .unwrap_or_default()
    }

    fn recycle(&mut self, b: AlignedBuf) {
        if b.len() == self.room + self.chunk && self.pool.len() <= DEPTH {
            self.pool.push(b);
        }
    }

    /// Issue reads until `DEPTH` are in flight, opening files as needed.
    async fn fill(&mut self) {
        while self.queue.len() < DEPTH {
            let Some(k) = self.issuing() else {
                if self.opened >= self.paths.len() || self.open_error.is_some() {
                    return;
                }
                let k = self.opened;
                self.opened += 1;
                match self.open(k).await {
                    Ok(f) => {
                        self.fit(f.len);
                        self.files[k] = Some(f);
                    }
                    Err(e) => self.open_error = Some((k, e)),
                }
                continue;
            };
            let Some(f) = self.files[k].as_mut() else {
                return;
            };
            let pos = f.issued;
            let len = usize::try_from(f.len - pos)
                .unwrap_or(self.chunk)
                .min(self.chunk);
            f.issued += len as u64;
            let buf = self.pool.pop().unwrap_or_else(|| {
                self.allocated = true;
                AlignedBuf::zeroed(self.room + self.chunk)
            });
            let read = f
                .handle
                .clone()
                .read_into(pos, buf, self.room, align_up(len, BLOCK));
            let mut fut: ReadFuture = Box::pin(read);
            // Start it: the read proceeds while the caller works.
            let done = futures_lite::future::poll_once(&mut fut).await;
            self.queue.push_back(Pending {
                file: k,
                pos,
                len,
                fut: if done.is_none() { Some(fut) } else { None },
                done,
            });
        }
    }

    /// Fit the read size to a file of `len` bytes: as large as the largest
    /// file opened so far, up to `max_chunk`; and, until the first buffer
    /// is allocated, the head room likewise.
    fn fit(&mut self, len: u64) {
        let want = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(self.max_chunk);
        let want = align_up(want, BLOCK).max(BLOCK);
        if want > self.chunk {
            self.chunk = want;
            // Buffers of the old size are dropped as they come back.
            self.pool.clear();
        }
        if !self.allocated {
            self.room = self.chunk.min(self.max_room);
        }
    }

    /// The first opened file at or after the current one with reads left.
    fn issuing(&self) -> Option<usize> {
        let from = self.cur.unwrap_or(0);
        (from..self.opened.min(self.files.len()))
            .find(|&k| self.files[k].as_ref().is_some_and(|f| f.issued < f.len))
    }

    async fn open(&self, k: usize) -> Result<Opened<S::File>> {
        let path = &self.paths[k];
        let f = self
            .storage
            .open(path, false)
            .await
            .map_err(|e| Error::io("open", path, e))?;
        let size = f.size().await.map_err(|e| Error::io("stat", path, e))?;
        Ok(Opened {
            handle: Rc::new(f),
            len: size.min(MAX_SEGMENT_SIZE),
            issued: 0,
        })
    }

    /// The next chunk of the current file: its offset, buffer (bytes at
    /// `ROOM..ROOM + n`) and length `n`. `None` past its end.
    async fn next_chunk(&mut self) -> Result<Option<(u64, AlignedBuf, usize)>> {
        loop {
            let Some(cur) = self.cur else {
                return Ok(None);
            };
            if self.queue.is_empty() {
                self.fill().await;
            }
            if self.queue.front().is_none_or(|p| p.file != cur) {
                return Ok(None);
            }
            let p = self.queue.pop_front().expect("front exists");
            let (pos, len) = (p.pos, p.len);
            // Keep the disk busy while this one is waited for and used.
            self.fill().await;
            let (buf, n) = wait(p)
                .await
                .map_err(|e| Error::io("read", self.path(), e))?;
            if pos >= self.cur_len {
                // Past an end of file found by an earlier short read.
                self.recycle(buf);
                continue;
            }
            let n = n.min(len);
            if n < len {
                self.cur_len = pos + n as u64;
            }
            let got = buf.get(self.room..self.room + n).unwrap_or(&[]);
            let nonzero = last_nonzero_end(got);
            if nonzero > 0 {
                self.last_nonzero = self.last_nonzero.max(pos + nonzero as u64);
            }
            return Ok(Some((pos, buf, n)));
        }
    }

    /// Append the chunk at the end of the window (file offset `end`),
    /// keeping the window's bytes from `from` on, and room for `want`.
    fn merge(&mut self, from: u64, want: u64, mut chunk: AlignedBuf, n: usize) {
        let room = self.room;
        let end = self.base + (self.hi - self.lo) as u64;
        let keep = align_down(usize::try_from(from).unwrap_or(usize::MAX), BLOCK) as u64;
        let keep = keep.max(self.base).min(end);
        let tail = (end - keep) as usize;
        let Some(mut cur) = self.buf.take() else {
            (self.lo, self.hi, self.base) = (room, room + n, end);
            self.buf = Some(chunk);
            return;
        };
        let start = self.lo + (keep - self.base) as usize;
        if cur.len() - self.hi >= n {
            // Room after the window (a buffer sized for a large frame).
            cur[self.hi..self.hi + n].copy_from_slice(&chunk[room..room + n]);
            (self.lo, self.hi, self.base) = (start, self.hi + n, keep);
            self.buf = Some(cur);
            self.recycle(chunk);
        } else if tail <= room {
            // Carry the tail into the chunk's head room.
            chunk[room - tail..room].copy_from_slice(&cur[start..self.hi]);
            (self.lo, self.hi, self.base) = (room - tail, room + n, keep);
            self.buf = Some(chunk);
            self.recycle(cur);
        } else {
            // A frame longer than the head room: a buffer of its own.
            let need = usize::try_from(want.saturating_sub(keep)).unwrap_or(0);
            let size = align_up((tail + n).max(need), BLOCK);
            let mut big = AlignedBuf::zeroed(size);
            big[..tail].copy_from_slice(&cur[start..self.hi]);
            big[tail..tail + n].copy_from_slice(&chunk[room..room + n]);
            (self.lo, self.hi, self.base) = (0, tail + n, keep);
            self.buf = Some(big);
            self.recycle(chunk);
            self.recycle(cur);
        }
    }
}

async fn wait(p: Pending) -> io::Result<(AlignedBuf, usize)> {
    match (p.done, p.fut) {
        (Some(r), _) => r,
        (None, Some(f)) => f.await,
        (None, None) => Err(io::Error::other("read lost")),
    }
}

impl<S: Storage> Window for ChunkStream<S> {
    type Error = Error;

    async fn at(&mut self, from: u64, min: usize) -> Result<&[u8]> {
        if from < self.base {
            return Err(Error::io(
                "read",
                self.path(),
                io::Error::other("window moved backwards"),
            ));
        }
        loop {
            let end = self.base + (self.hi - self.lo) as u64;
            let want = from.saturating_add(min as u64).min(self.cur_len);
            if end >= want {
                break;
            }
            let Some((pos, chunk, n)) = self.next_chunk().await? else {
                break;
            };
            debug_assert_eq!(pos, end, "chunks arrive in order");
            self.merge(from, want, chunk, n);
        }
        let end = self.base + (self.hi - self.lo) as u64;
        if from >= end {
            return Ok(&[]);
        }
        let at = self.lo + (from - self.base) as usize;
        Ok(self.buf.as_deref().map_or(&[], |b| &b[at..self.hi]))
    }

    async fn finish(&mut self) -> Result<u64> {
        while let Some((_, chunk, _)) = self.next_chunk().await? {
            self.recycle(chunk);
        }
        Ok(self.last_nonzero)
    }
}

#[cfg(test)]
mod tests {
    //! The chunked scan must decide exactly what the whole-segment scan
    //! decides, whatever the chunk size: frames straddling reads, frames
    //! longer than the head room and than a chunk, damage anywhere.

    use std::path::Path;

    use super::*;
    use crate::format::frame::{FrameMeta, RecordKind, encode_header, frame_len};
    use crate::format::segment_header::{RECORDS_START, SegmentHeader};
    use crate::io::sim::SimStorage;
    use crate::recovery::scan::{Corrupt, Expect, ScanOutcome, Scanner, SegmentBytes};
    use crate::rng::SplitMix;

    const LOG: [u8; 16] = [4; 16];
    const SEG: usize = 64 << 10;

    fn exp() -> Expect {
        Expect {
            log_id: LOG,
            shard: 0,
            max_payload: 40 << 10,
        }
    }

    /// A shard's segment files: frames of random lengths (up to 30 KiB),
    /// each vouching for everything before it or for nothing.
    fn segments(rng: &mut SplitMix) -> Vec<Vec<u8>> {
        let mut segs = Vec::new();
        let (mut seq, mut index) = (0u64, 0u64);
        let vouching = rng.below(2) == 0;
        for _ in 0..3 {
            let h = SegmentHeader {
                log_id: LOG,
                shard: 0,
                index,
                first_seq: seq,
                first_epoch: 1,
                nonce: rng.next_u64(),
                segment_size: SEG as u64,
            };
            let mut b = vec![0u8; SEG];
            h.encode_into(&mut b);
            let mut pos = RECORDS_START;
            loop {
                let len = match rng.below(4) {
                    0 => rng.below(64) as usize,
                    1 => rng.below(30 << 10) as usize,
                    _ => rng.below(6000) as usize,
                };
                if pos + frame_len(len) > SEG {
                    break;
                }
                let payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                let meta = FrameMeta {
                    seq,
                    epoch: 1,
                    durable_next: if vouching { seq } else { 0 },
                    kind: RecordKind::Data,
                };
                b[pos..pos + 40].copy_from_slice(&encode_header(h.seed(), &meta, &payload));
                b[pos + 40..pos + 40 + len].copy_from_slice(&payload);
                pos += frame_len(len);
                seq += 1;
                if rng.below(40) == 0 {
                    break;
                }
            }
            segs.push(b);
            index += 1;
        }
        // Sometimes the last one is a prepared, blank segment.
        if rng.below(3) == 0 {
            segs.push(vec![0u8; SEG]);
        }
        segs
    }

    fn damage(rng: &mut SplitMix, segs: &mut [Vec<u8>]) {
        for _ in 0..rng.below(3) {
            let s = rng.below(segs.len() as u64) as usize;
            let seg = &mut segs[s];
            if seg.is_empty() {
                continue;
            }
            let at = rng.below(seg.len() as u64) as usize;
            match rng.below(6) {
                0 => seg[at] ^= 1 << rng.below(8),
                1 => {
                    let at = at & !7;
                    let end = (at + 40).min(seg.len());
                    seg[at..end].fill(0);
                }
                2 => seg.truncate(at),
                3 => {
                    let end = (at + 1 + rng.below(300) as usize).min(seg.len());
                    for b in &mut seg[at..end] {
                        *b = rng.next_u64() as u8;
                    }
                }
                4 => seg.extend((0..rng.below(9000)).map(|_| rng.next_u64() as u8)),
                _ => {
                    let end = (at + rng.below(20000) as usize).min(seg.len());
                    seg[at..end].fill(0);
                }
            }
        }
    }

    type Frames = Vec<(u64, u64, usize, u64)>;

    fn whole(segs: &[Vec<u8>]) -> (Result<ScanOutcome, Corrupt>, Frames) {
        let mut frames = Vec::new();
        let mut sc = Scanner::new(exp());
        let seg = |i: usize| SegmentBytes {
            index: i as u64,
            path: Path::new("d").join(format!("{i}.seg")),
            bytes: &segs[i],
        };
        for i in 0..segs.len() {
            let next = segs.get(i + 1).map(|b| &b[..b.len().min(BLOCK)]);
            let mut on = |f: &crate::format::frame::Frame<'_>, s: u64, p: usize| {
                frames.push((
                    f.meta.seq,
                    s,
                    p,
                    f.payload.iter().map(|&x| u64::from(x)).sum(),
                ))
            };
            if let Some(mut stop) = sc.feed(&seg(i), next, &mut on) {
                for j in i + 1..segs.len() {
                    stop.consider_later(&seg(j), &exp());
                }
                return (sc.decide(stop), frames);
            }
        }
        (Ok(sc.finish()), frames)
    }

    async fn chunked(
        segs: &[Vec<u8>],
        chunk: usize,
        room: usize,
    ) -> (Result<ScanOutcome, Corrupt>, Frames) {
        let sim = SimStorage::default();
        let dir = Path::new("d");
        sim.create_dir_all(dir).await.unwrap();
        let paths: Vec<PathBuf> = (0..segs.len())
            .map(|i| dir.join(format!("{i}.seg")))
            .collect();
        for (p, b) in paths.iter().zip(segs) {
            let f = sim.open(p, true).await.unwrap();
            if !b.is_empty() {
                f.write_at(Rc::new(AlignedBuf::from_slice(b)), 0)
                    .await
                    .unwrap();
            }
        }
        let mut frames = Vec::new();
        let mut sc = Scanner::new(exp());
        let mut st = ChunkStream::new(sim, paths.clone()).with_sizes(chunk, room);
        for i in 0..segs.len() {
            let next = segs.get(i + 1).map(|b| &b[..b.len().min(BLOCK)]);
            st.start_file(i).await.unwrap();
            let mut on = |f: &crate::format::frame::Frame<'_>, s: u64, p: usize| {
                assert_eq!(f.payload.as_ptr() as usize % 8, 0, "payload alignment");
                frames.push((
                    f.meta.seq,
                    s,
                    p,
                    f.payload.iter().map(|&x| u64::from(x)).sum(),
                ))
            };
            let stop = sc
                .feed_window(i as u64, &paths[i], &mut st, next, &mut on)
                .await
                .unwrap();
            if let Some(mut stop) = stop {
                for (j, path) in paths.iter().enumerate().skip(i + 1) {
                    st.start_file(j).await.unwrap();
                    stop.consider_later_window(j as u64, path, &mut st, &exp())
                        .await
                        .unwrap();
                }
                return (sc.decide(stop), frames);
            }
        }
        (Ok(sc.finish()), frames)
    }

    #[test]
    fn chunked_scans_decide_like_whole_segment_scans() {
        let mut rng = SplitMix(0x5ca1ab1e);
        let mut outcomes = [0usize; 3];
        for trial in 0..300 {
            let mut segs = segments(&mut rng);
            if trial % 5 != 0 {
                damage(&mut rng, &mut segs);
            }
            let want = whole(&segs);
            outcomes[match &want.0 {
                Ok(o) if o.torn.is_some() => 1,
                Ok(_) => 0,
                Err(_) => 2,
            }] += 1;
            for (chunk, room) in [(4096, 4096), (8192, 4096), (12288, 8192), (CHUNK, ROOM)] {
                let got = futures_lite::future::block_on(chunked(&segs, chunk, room));
                assert_eq!(got, want, "trial {trial}, chunk {chunk}, room {room}");
            }
        }
        // The trials cover clean ends, torn tails and corruption.
        assert!(outcomes.iter().all(|&n| n > 10), "{outcomes:?}");
    }
}
