//! Reading a shard's records in order from a given sequence number.
//!
//! The reader reads the segments in block-aligned chunks, with the next
//! chunk's read in flight while the current one is decoded (see
//! `io::read_ahead`), walks each segment's frames as recovery does
//! ([`SegmentFrames`]), and stops reading a segment at its end marker.
//! Payloads are borrowed slices of the chunk buffer, 8-byte aligned, so rkyv
//! archives can be accessed in place. Memory is bounded by a few chunks and
//! the largest record, not by the segment or the log.

use std::path::{Path, PathBuf};

use crate::error::{CorruptionCause, Error, Result};
use crate::format::BLOCK;
use crate::format::frame::{Decoded, FRAME_HEADER, RecordKind};
use crate::format::segment_header::{HeaderError, RECORDS_START, SegmentHeader};
use crate::ids::{Lsn, Seq, ShardId};
use crate::io::Storage;
use crate::io::read_ahead::{ChunkStream, ROOM};
use crate::io::window::{SegmentFrames, Window};
use crate::recovery::scan::check_identity;
use crate::recovery::shard::read_head;
use crate::segment::{segments_in, shard_dir};

/// One record, borrowed from the reader's segment buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Where the record sits.
    pub lsn: Lsn,
    /// What it is.
    pub kind: RecordKind,
    /// Its payload (8-byte aligned in memory).
    pub payload: &'a [u8],
}

/// The segment being read.
struct Loaded {
    frames: SegmentFrames,
    path: PathBuf,
    last: bool,
}

/// Sequential reader over one shard's log.
pub struct ShardReader<S: Storage> {
    storage: S,
    dir: PathBuf,
    shard: ShardId,
    log_id: [u8; 16],
    segments: Vec<(u64, String)>,
    /// Index into `segments` of the first segment read.
    start: usize,
    next_segment: usize,
    /// Reads `segments[start..]`, created at the first read.
    stream: Option<ChunkStream<S>>,
    /// Bytes per read and head room of `stream`, when not the read-ahead's
    /// own (see [`ShardReader::with_read_size`]).
    read_sizes: Option<(usize, usize)>,
    cur: Option<Loaded>,
    pos: u64,
    expected: Option<Seq>,
    from: Seq,
    until: Seq,
    /// A decoded record not yet returned; its payload as (file offset, length).
    peeked: Option<(Lsn, RecordKind, (u64, usize))>,
}

impl<S: Storage> ShardReader<S> {
    /// A reader of `shard` in the log at `log_dir`, starting at `from`.
    /// The log should have been recovered (opened) since its last crash: a
    /// damaged frame in the last segment ends the read, one anywhere else is
    /// reported as corruption.
    pub async fn open(storage: S, log_dir: &Path, shard: ShardId, from: Seq) -> Result<Self> {
        Self::open_range(storage, log_dir, shard, from, Seq(u64::MAX)).await
    }

    /// A reader of the records with `from <= seq < until`.
    pub async fn open_range(
        storage: S,
        log_dir: &Path,
        shard: ShardId,
        from: Seq,
        until: Seq,
    ) -> Result<Self> {
        let log_id = crate::log_dir::load(&storage, log_dir).await?;
        let dir = shard_dir(log_dir, shard);
        let names = storage
            .list(&dir)
            .await
            .map_err(|e| Error::io("list", &dir, e))?;
        let segments = segments_in(&names);
        // Start at the last segment whose first seq is <= from, by the
        // scan's own rule (`recovery::shard::scan`): skip a leading segment
        // while the *next* one's header is valid, ours, and starts at or
        // before `from`. The skipped segment's own header is not needed:
        // recovery did not read it either, and requiring it here made a
        // damaged header before the replay position end the read at once,
        // an empty replay instead of the records after it.
        let mut start = 0;
        while let Some((_, name)) = segments.get(start + 1) {
            let head = read_head(&storage, &dir.join(name)).await?;
            match SegmentHeader::decode(&head) {
                Ok(h) if h.first_seq <= from && h.log_id == log_id && h.shard == shard => {
                    start += 1
                }
                _ => break,
            }
        }
        Ok(ShardReader {
            storage,
            dir,
            shard,
            log_id,
            segments,
            start,
            next_segment: start,
            stream: None,
            read_sizes: None,
            cur: None,
            pos: 0,
            expected: None,
            from,
            until,
            peeked: None,
        })
    }

    /// The same reader with reads of at most `chunk` bytes (a block
    /// multiple): three such buffers instead of the read-ahead's three
    /// 9 MiB ones, for a reader that runs beside a scan (the one-pass
    /// replay's gaps) and should not add the scan's memory again.
    pub(crate) fn with_read_size(mut self, chunk: usize) -> Self {
        self.read_sizes = Some((chunk, chunk.min(ROOM)));
        self
    }

    fn corrupt(&self, path: &Path, offset: usize, cause: CorruptionCause) -> Error {
        Error::Corruption {
            shard: self.shard,
            segment: path.to_path_buf(),
            offset: offset as u64,
            cause,
        }
    }

    async fn load_next(&mut self) -> Result<bool> {
        let Some((index, name)) = self.segments.get(self.next_segment).cloned() else {
            return Ok(false);
        };
        let last = self.next_segment + 1 == self.segments.len();
        let k = self.next_segment - self.start;
        self.next_segment += 1;
        let path = self.dir.join(&name);
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                let paths = self.segments[self.start..]
                    .iter()
                    .map(|(_, n)| self.dir.join(n))
                    .collect();
                let mut stream = ChunkStream::new(self.storage.clone(), paths);
                if let Some((chunk, room)) = self.read_sizes {
                    stream = stream.with_sizes(chunk, room);
                }
                self.stream.insert(stream)
            }
        };
        stream.start_file(k).await?;
        let head = stream.at(0, BLOCK).await?;
        let h = match SegmentHeader::decode(&head[..head.len().min(BLOCK)]) {
            Ok(h) => h,
            // A blank header is a segment that was created (or prepared)
            // but never written: the log ends before it. Recovery has
            // already checked that nothing valid lies beyond it.
            Err(HeaderError::Blank) => {
                self.next_segment = self.segments.len();
                return Ok(false);
            }
            Err(HeaderError::Invalid(fault)) => {
                return Err(self.corrupt(&path, 0, CorruptionCause::SegmentHeader(fault)));
            }
        };
        if let Err(cause) = check_identity(&h, index, self.log_id, self.shard) {
            return Err(self.corrupt(&path, 0, cause));
        }
        if let Some(e) = self.expected
            && e != h.first_seq
        {
            let cause = CorruptionCause::SegmentStartsElsewhere {
                expected: e,
                found: h.first_seq,
            };
            return Err(self.corrupt(&path, 0, cause));
        }
        self.cur = Some(Loaded {
            frames: SegmentFrames::new(&h, crate::format::MAX_RECORD_HARD),
            path,
            last,
        });
        self.pos = RECORDS_START as u64;
        Ok(true)
    }

    /// The next record, or `None` at the end of the log.
    pub async fn next(&mut self) -> Result<Option<Record<'_>>> {
        let next = match self.peeked.take() {
            Some(p) => Some(p),
            None => self.advance().await?,
        };
        let Some((lsn, kind, (at, len))) = next else {
            return Ok(None);
        };
        let stream = self.stream.as_ref().expect("segment loaded");
        Ok(Some(Record {
            lsn,
            kind,
            payload: stream.held(at, len),
        }))
    }

    /// The LSN of the next record without consuming it.
    pub async fn peek(&mut self) -> Result<Option<Lsn>> {
        if self.peeked.is_none() {
            self.peeked = self.advance().await?;
        }
        Ok(self.peeked.as_ref().map(|p| p.0))
    }

    async fn advance(&mut self) -> Result<Option<(Lsn, RecordKind, (u64, usize))>> {
        loop {
            if self.expected.is_some_and(|e| e >= self.until) {
                return Ok(None);
            }
            let (Some(cur), Some(stream)) = (&self.cur, &mut self.stream) else {
                if !self.load_next().await? {
                    return Ok(None);
                }
                continue;
            };
            let pos = self.pos;
            match cur.frames.decode(stream, pos).await? {
                Decoded::Frame(f) => {
                    let seq = f.meta.seq;
                    if let Some(e) = self.expected
                        && e != seq
                    {
                        let p = cur.path.clone();
                        let cause = CorruptionCause::SeqGap {
                            expected: e,
                            found: seq,
                        };
                        return Err(self.corrupt(&p, pos as usize, cause));
                    }
                    self.expected = Some(seq.next());
                    let payload = (pos + FRAME_HEADER as u64, f.payload.len());
                    let kind = f.meta.kind;
                    let epoch = f.meta.epoch;
                    self.pos += f.len as u64;
                    if seq < self.from {
                        continue;
                    }
                    if seq >= self.until {
                        self.expected = Some(seq);
                        return Ok(None);
                    }
                    let lsn = Lsn {
                        shard: self.shard,
                        epoch,
                        seq,
                    };
                    return Ok(Some((lsn, kind, payload)));
                }
                // The end marker: the rest of the segment is not read.
                Decoded::End => self.cur = None,
                Decoded::Invalid(d) => {
                    if cur.last {
                        // An unrecovered torn tail: the log ends here.
                        self.cur = None;
                        self.next_segment = self.segments.len();
                        return Ok(None);
                    }
                    let p = cur.path.clone();
                    return Err(self.corrupt(&p, pos as usize, d.into()));
                }
            }
        }
    }
}

impl<'a> Record<'a> {
    /// Validated, zero-copy access to a payload serialized with rkyv
    /// (payloads are 8-byte aligned; archives needing more alignment are
    /// refused with an error, never read misaligned).
    pub fn access<T>(&self) -> Result<&'a T::Archived>
    where
        T: rkyv::Archive,
        T::Archived: rkyv::Portable
            + for<'b> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'b, rkyv::rancor::Error>,
            >,
    {
        rkyv::access::<T::Archived, rkyv::rancor::Error>(self.payload).map_err(|e| Error::NotALog {
            path: PathBuf::from(format!("record {}", self.lsn)),
            detail: format!("payload is not a valid archive: {e}"),
        })
    }
}
