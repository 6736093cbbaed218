//! Chunked, read-ahead reading of a shard's segment files, for the recovery
//! scan and for readers. It sits beside the storage backend: it knows files,
//! blocks and reads in flight, and nothing of what the bytes mean.
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
use super::{AlignedBuf, Storage, StorageFile, close_quietly};
use crate::error::{Error, Result};
use crate::format::segment_header::MAX_SEGMENT_SIZE;
use crate::format::{BLOCK, align_down, align_up};

/// Bytes per read.
pub(crate) const CHUNK: usize = 8 << 20;
/// Head room before each chunk for the carried start of a straddling frame.
pub(crate) const ROOM: usize = 1 << 20;
/// Reads kept in flight.
pub(crate) const DEPTH: usize = 2;
/// How often a closed gate (see [`ChunkStream::set_gate`]) is asked again.
pub(crate) const GATE_POLL: std::time::Duration = std::time::Duration::from_micros(100);

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
    /// Asked before each chunk is handed over: while it says no, the
    /// stream waits (a consumer of what the caller derives from the bytes
    /// is behind). See [`ChunkStream::set_gate`].
    gate: Option<Box<dyn FnMut() -> bool>>,
}

impl<S: Storage> ChunkStream<S> {
    /// Wait for every read in flight, discarding what it read: for a
    /// caller that gives up on the stream (an error) and whose executor
    /// may end right after.
    pub(crate) async fn settle(&mut self) {
        for p in std::mem::take(&mut self.queue) {
            if p.done.is_none()
                && let Some(f) = p.fut
            {
                let _ = f.await;
            }
        }
    }

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
            gate: None,
        }
    }

    /// Before handing over each chunk, call `gate` and, while it returns
    /// false, wait [`GATE_POLL`] and ask again (reads already in flight
    /// complete meanwhile; no new one is issued). Runs on a glommio
    /// executor (it sleeps on its timer).
    pub(crate) fn set_gate(&mut self, gate: impl FnMut() -> bool + 'static) {
        self.gate = Some(Box::new(gate));
    }

    /// The same stream with reads of at most `chunk` bytes and `room` bytes
    /// of head room (block multiples): for a reader that wants less memory
    /// than the scan's read-ahead, and for tests of frames straddling reads.
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
        for i in 0..k.min(self.files.len()) {
            // A read still holding the handle drops it when it completes;
            // otherwise close it here: it was only read, so a failed close
            // loses nothing.
            if let Some(f) = self.files[i].take()
                && let Ok(f) = Rc::try_unwrap(f.handle)
            {
                close_quietly(f, &self.paths[i]).await;
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
        // Bulk I/O: a scan or a replay wants the device's read speed. (The
        // reads are `pread(2)`s either way; the bulk descriptor measured
        // 2-7% faster for a cold recovery, 3 pairs, for reasons not found.)
        let f = self
            .storage
            .open_bulk(path)
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
            if let Some(g) = self.gate.as_mut() {
                while !g() {
                    glommio::timer::sleep(GATE_POLL).await;
                }
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

    fn file_len(&self) -> u64 {
        self.cur_len
    }

    async fn finish(&mut self) -> Result<u64> {
        while let Some((_, chunk, _)) = self.next_chunk().await? {
            self.recycle(chunk);
        }
        Ok(self.last_nonzero)
    }

    /// The first block of the next file, from its first read, which stays
    /// queued for [`ChunkStream::start_file`]: the file is opened once and
    /// its header comes with its data. Once the current file is read to its
    /// end, that read is usually in flight already.
    async fn next_head(&mut self) -> Result<Option<&[u8]>> {
        let Some(k) = self.cur.map(|c| c + 1).filter(|&k| k < self.paths.len()) else {
            return Ok(None);
        };
        loop {
            if let Some(i) = self.queue.iter().position(|p| p.file == k && p.pos == 0) {
                let p = &mut self.queue[i];
                if p.done.is_none()
                    && let Some(fut) = p.fut.take()
                {
                    p.done = Some(fut.await);
                }
                let room = self.room;
                return match &p.done {
                    Some(Ok((buf, n))) => {
                        let n = (*n).min(p.len).min(BLOCK);
                        Ok(Some(buf.get(room..room + n).unwrap_or(&[])))
                    }
                    Some(Err(e)) => Err(Error::io(
                        "read",
                        &self.paths[k],
                        io::Error::new(e.kind(), e.to_string()),
                    )),
                    None => Err(Error::io(
                        "read",
                        &self.paths[k],
                        io::Error::other("read lost"),
                    )),
                };
            }
            if let Some((i, _)) = &self.open_error
                && *i == k
            {
                let (_, e) = self.open_error.take().expect("checked");
                return Err(e);
            }
            if self.opened > k {
                // Opened, and nothing to read: an empty file.
                return Ok(Some(&[]));
            }
            let before = (self.opened, self.queue.len());
            self.fill().await;
            if (self.opened, self.queue.len()) == before {
                // Only if reads of the current file are still queued: the
                // caller asked before reading it to its end.
                return Err(Error::io(
                    "read",
                    self.path(),
                    io::Error::other("next_head: the current file is not read to its end"),
                ));
            }
        }
    }
}
