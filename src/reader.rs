//! Reading a shard's records in order from a given sequence number.
//!
//! The reader loads one segment at a time into a block-aligned buffer;
//! payloads are borrowed slices of it, 8-byte aligned, so rkyv archives can
//! be accessed in place. Memory is bounded by one segment.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::frame::{Decoded, RecordKind, decode_at};
use crate::format::seed::SegmentSeed;
use crate::format::segment_header::{HeaderError, RECORDS_START, SegmentHeader};
use crate::ids::{Epoch, Lsn, Seq, ShardId};
use crate::io::{Storage, StorageFile};
use crate::recovery::shard::{read_all, read_head};
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

struct Loaded<B> {
    bytes: B,
    seed: SegmentSeed,
    limit: usize,
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
    next_segment: usize,
    cur: Option<Loaded<<S::File as StorageFile>::ReadBuf>>,
    pos: usize,
    expected: Option<u64>,
    from: u64,
    until: u64,
    peeked: Option<(Lsn, RecordKind, Range<usize>)>,
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
        // Start at the last segment whose first seq is <= from.
        let mut start = 0;
        for (k, (_, name)) in segments.iter().enumerate() {
            let head = read_head(&storage, &dir.join(name)).await?;
            match SegmentHeader::decode(&head) {
                Ok(h) if h.first_seq <= from.0 => start = k,
                _ => break,
            }
        }
        Ok(ShardReader {
            storage,
            dir,
            shard,
            log_id,
            segments,
            next_segment: start,
            cur: None,
            pos: 0,
            expected: None,
            from: from.0,
            until: until.0,
            peeked: None,
        })
    }

    fn corrupt(&self, path: &Path, offset: usize, detail: String) -> Error {
        Error::Corruption {
            shard: self.shard,
            segment: path.to_path_buf(),
            offset: offset as u64,
            detail,
        }
    }

    async fn load_next(&mut self) -> Result<bool> {
        let Some((index, name)) = self.segments.get(self.next_segment).cloned() else {
            return Ok(false);
        };
        let last = self.next_segment + 1 == self.segments.len();
        self.next_segment += 1;
        let path = self.dir.join(&name);
        let bytes = read_all(&self.storage, &path).await?;
        let h = match SegmentHeader::decode(&bytes) {
            Ok(h) => h,
            // A blank header is a segment that was created (or prepared)
            // but never written: the log ends before it. Recovery has
            // already checked that nothing valid lies beyond it.
            Err(HeaderError::Blank) => {
                self.next_segment = self.segments.len();
                return Ok(false);
            }
            Err(HeaderError::Invalid(d)) => return Err(self.corrupt(&path, 0, d)),
        };
        if h.log_id != self.log_id || h.shard != self.shard.0 || h.index != index {
            return Err(self.corrupt(&path, 0, "segment header identity mismatch".into()));
        }
        if let Some(e) = self.expected
            && e != h.first_seq
        {
            return Err(self.corrupt(
                &path,
                0,
                format!("segment starts at seq {}, expected {e}", h.first_seq),
            ));
        }
        let limit = bytes
            .len()
            .min(usize::try_from(h.segment_size).unwrap_or(usize::MAX));
        self.cur = Some(Loaded {
            bytes,
            seed: h.seed(),
            limit,
            path,
            last,
        });
        self.pos = RECORDS_START;
        Ok(true)
    }

    /// The next record, or `None` at the end of the log.
    pub async fn next(&mut self) -> Result<Option<Record<'_>>> {
        let next = match self.peeked.take() {
            Some(p) => Some(p),
            None => self.advance().await?,
        };
        let Some((lsn, kind, range)) = next else {
            return Ok(None);
        };
        let cur = self.cur.as_ref().expect("segment loaded");
        Ok(Some(Record {
            lsn,
            kind,
            payload: &cur.bytes[range],
        }))
    }

    /// The LSN of the next record without consuming it.
    pub async fn peek(&mut self) -> Result<Option<Lsn>> {
        if self.peeked.is_none() {
            self.peeked = self.advance().await?;
        }
        Ok(self.peeked.as_ref().map(|p| p.0))
    }

    async fn advance(&mut self) -> Result<Option<(Lsn, RecordKind, Range<usize>)>> {
        let (lsn, kind, range): (Lsn, RecordKind, Range<usize>) = loop {
            if self.expected.is_some_and(|e| e >= self.until) {
                return Ok(None);
            }
            let Some(cur) = &self.cur else {
                if !self.load_next().await? {
                    return Ok(None);
                }
                continue;
            };
            let buf = &cur.bytes[..cur.limit];
            match decode_at(buf, self.pos, cur.seed, crate::format::MAX_RECORD_HARD) {
                Decoded::Frame(f) => {
                    let seq = f.meta.seq;
                    if let Some(e) = self.expected
                        && e != seq
                    {
                        let (p, at) = (cur.path.clone(), self.pos);
                        return Err(self.corrupt(&p, at, format!("expected seq {e}, found {seq}")));
                    }
                    self.expected = Some(seq + 1);
                    let start = self.pos + crate::format::frame::FRAME_HEADER;
                    let range = start..start + f.payload.len();
                    let kind = f.meta.kind;
                    let epoch = f.meta.epoch;
                    self.pos += f.len;
                    if seq < self.from {
                        continue;
                    }
                    if seq >= self.until {
                        self.expected = Some(seq);
                        return Ok(None);
                    }
                    break (
                        Lsn {
                            shard: self.shard,
                            epoch: Epoch(epoch),
                            seq: Seq(seq),
                        },
                        kind,
                        range,
                    );
                }
                Decoded::End => self.cur = None,
                Decoded::Invalid(d) => {
                    if cur.last {
                        // An unrecovered torn tail: the log ends here.
                        self.cur = None;
                        self.next_segment = self.segments.len();
                        return Ok(None);
                    }
                    let (p, at) = (cur.path.clone(), self.pos);
                    return Err(self.corrupt(&p, at, d));
                }
            }
        };
        Ok(Some((lsn, kind, range)))
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
