//! The writer's mutable state and the synchronous part of the append path:
//! framing records into the current buffer, sealing buffers into write jobs
//! and rolling segments. Nothing here awaits or performs I/O; the tasks in
//! `tasks.rs` carry out the jobs.
//!
//! Architecture invariant: the append path (`append_frame`) allocates
//! nothing, takes no lock and makes no syscall. It copies into a buffer
//! taken from a free list; when none is free it reports back-pressure.
//! The one exception is a segment roll (once per segment) that finds the
//! free list empty: it allocates the new segment's first buffer.

use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;

use hdrhistogram::Histogram;

use crate::error::{Error, Result};
use crate::format::frame::{
    FRAME_HEADER, FrameMeta, RecordKind, encode_header, encode_into, frame_len,
};
use crate::format::seed::SegmentSeed;
use crate::format::segment_header::{RECORDS_START, SegmentHeader};
use crate::format::{BLOCK, align_down, align_up};
use crate::ids::{Epoch, Seq, ShardId};
use crate::io::{IoBuf, Storage};
use crate::rng::SplitMix;

/// The segment currently being written.
pub(crate) struct Segment<S: Storage> {
    pub file: Rc<S::File>,
    pub path: Rc<Path>,
    pub index: u64,
    pub seed: SegmentSeed,
}

/// A prepared, empty file for the next segment.
pub(crate) struct Prepared<S: Storage> {
    /// Already behind an `Rc`, so that rolling onto it allocates nothing.
    pub file: Rc<S::File>,
    pub path: Rc<Path>,
    pub index: u64,
    /// Every byte reads as zero and the length is `segment_size`, both
    /// durably: the two preparations that zero also size the file, so one
    /// flag gives the header's `ZEROED` and `SIZED` (see
    /// [`SegmentHeader::zeroed`], [`SegmentHeader::sized`]).
    pub zeroed: bool,
}

/// Work for the writer task, processed in order.
pub(crate) enum Job<S: Storage> {
    /// Write `buf` at `pos`. Every record below `end_seq` is complete once
    /// this and all earlier jobs are done. `after_prev`: this write rewrites
    /// the last block of the previous one and must not be issued before the
    /// previous write completed.
    Write {
        file: Rc<S::File>,
        path: Rc<Path>,
        buf: S::Buf,
        pos: u64,
        end_seq: Seq,
        after_prev: bool,
        /// The buffer is a pool buffer trimmed at a segment roll.
        from_roll: bool,
    },
    /// A finished segment: wait for its writes, fdatasync it, let it go.
    Retire { file: Rc<S::File>, path: Rc<Path> },
}

/// Counters exposed through `ShardLog::stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records appended since open.
    pub records: u64,
    /// Frame bytes appended since open.
    pub bytes: u64,
    /// Write jobs submitted.
    pub writes: u64,
    /// fdatasync calls on segment data.
    pub syncs: u64,
    /// Segments rolled.
    pub rolls: u64,
    /// Appends refused for lack of a free buffer or prepared segment.
    pub backpressure: u64,
}

pub(crate) struct State<S: Storage> {
    pub poison: Option<String>,
    pub closed: bool,
    pub next_seq: Seq,
    pub epoch: Epoch,
    /// Every seq below this is durable.
    pub durable_next: Seq,
    /// A sync of every seq below this has been requested.
    pub sync_requested: Seq,
    /// Every seq below this is in a submitted write job.
    pub submitted_next: Seq,
    /// Every seq below this has been written (not necessarily synced).
    pub written_next: Seq,
    pub seg: Segment<S>,
    pub buf: Option<S::Buf>,
    /// File offset of `buf[0]` (block-aligned).
    pub buf_pos: u64,
    /// Bytes of `buf` in use.
    pub buf_len: usize,
    /// The last submitted write ended mid-block.
    pub tail_partial: bool,
    pub free: Vec<S::Buf>,
    pub jobs: VecDeque<Job<S>>,
    pub next_segment: Option<Prepared<S>>,
    /// An append is waiting for `next_segment` (the current segment is
    /// full): its preparation stops pacing itself. Cleared by the roll.
    pub next_wanted: bool,
    /// Every live segment of the shard: (index, first seq, path), oldest first.
    pub segments: VecDeque<(u64, Seq, Rc<Path>)>,
    pub last_written_file: Option<Rc<S::File>>,
    pub rng: SplitMix,
    pub stats: WriterStats,
    /// Latency of the fdatasyncs counted in `stats.syncs`, in nanoseconds;
    /// recorded by the tasks when one completes, never on the append path.
    pub sync_latency: Histogram<u64>,
}

/// Immutable parameters the append path needs.
pub(crate) struct Params {
    pub log_id: [u8; 16],
    pub shard: ShardId,
    pub segment_size: u64,
    pub buffer_size: usize,
    pub max_record: usize,
}

const PAD: [u8; 8] = [0; 8];

impl<S: Storage> State<S> {
    pub(crate) fn check_usable(&self, shard: ShardId) -> Result<()> {
        if let Some(cause) = &self.poison {
            return Err(Error::Poisoned {
                shard,
                cause: cause.clone(),
            });
        }
        if self.closed {
            return Err(Error::Closed { shard });
        }
        Ok(())
    }

    /// Frame one record into the buffers. Returns its seq, or
    /// `Error::Backpressure` (with no state changed) when it cannot proceed
    /// without waiting for a free buffer or a prepared segment.
    pub(crate) fn append_frame(
        &mut self,
        p: &Params,
        storage: &S,
        kind: RecordKind,
        payload: &[u8],
    ) -> Result<Seq> {
        if payload.len() > p.max_record {
            return Err(Error::RecordTooLarge {
                len: payload.len(),
                max: p.max_record,
            });
        }
        // Numbers at their limit (see `Seq::END`, `Epoch::END`): an error,
        // with no state changed, never a wrap or a panic.
        if self.next_seq == Seq::END {
            return Err(Error::Exhausted {
                shard: p.shard,
                what: "sequence numbers",
            });
        }
        if kind == RecordKind::Barrier && self.epoch.0 >= Epoch::END.0 - 1 {
            return Err(Error::Exhausted {
                shard: p.shard,
                what: "epochs",
            });
        }
        let flen = frame_len(payload.len());
        if self.buf_pos + (self.buf_len + flen) as u64 > p.segment_size {
            if self.next_segment.is_none() {
                self.stats.backpressure += 1;
                self.next_wanted = true;
                return Err(Error::Backpressure);
            }
            self.roll(p, storage);
        }
        // Buffers that fill up while copying this frame are sealed at once,
        // each needing a fresh one from the free list.
        let switches = (self.buf_len + flen) / p.buffer_size;
        if switches > self.free.len() {
            self.stats.backpressure += 1;
            return Err(Error::Backpressure);
        }
        let seq = self.next_seq;
        let meta = FrameMeta {
            seq,
            epoch: self.epoch,
            durable_next: self.durable_next,
            kind,
        };
        if self.buf_len + flen < p.buffer_size {
            // Fast path: the frame fits in the current buffer without filling
            // it. Built in place, checksummed with one CRC call.
            let (start, buf) = (self.buf_len, self.buf.as_mut().expect("current buffer"));
            encode_into(
                &mut buf.as_mut_slice()[start..start + flen],
                self.seg.seed,
                &meta,
                payload,
            );
            self.buf_len += flen;
            self.next_seq = seq.next();
            self.stats.records += 1;
            self.stats.bytes += flen as u64;
            return Ok(seq);
        }
        let header = encode_header(self.seg.seed, &meta, payload);
        let pad = flen - FRAME_HEADER - payload.len();
        let mut done = 0;
        for piece in [&header[..], payload, &PAD[..pad]] {
            let mut rest = piece;
            while !rest.is_empty() {
                let buf = self.buf.as_mut().expect("current buffer");
                let room = p.buffer_size - self.buf_len;
                let n = room.min(rest.len());
                buf.as_mut_slice()[self.buf_len..self.buf_len + n].copy_from_slice(&rest[..n]);
                self.buf_len += n;
                done += n;
                rest = &rest[n..];
                if self.buf_len == p.buffer_size {
                    let end_seq = if done == flen { seq.next() } else { seq };
                    self.seal_full(p, end_seq);
                }
            }
        }
        self.next_seq = seq.next();
        self.stats.records += 1;
        self.stats.bytes += flen as u64;
        Ok(seq)
    }

    fn seal_full(&mut self, p: &Params, end_seq: Seq) {
        let buf = self.buf.take().expect("current buffer");
        let next = self.free.pop().expect("free buffer checked before framing");
        self.jobs.push_back(Job::Write {
            file: self.seg.file.clone(),
            path: self.seg.path.clone(),
            buf,
            pos: self.buf_pos,
            end_seq,
            after_prev: self.tail_partial,
            from_roll: false,
        });
        self.stats.writes += 1;
        self.tail_partial = false;
        self.submitted_next = end_seq;
        self.buf_pos += p.buffer_size as u64;
        self.buf_len = 0;
        self.buf = Some(next);
    }

    /// Submit the records still sitting in the current buffer (for a sync).
    /// The buffer's last partial block stays (moved to the front), so the
    /// next write rewrites that block with more records in it.
    /// Returns false if there was nothing to submit.
    pub(crate) fn seal_partial(&mut self, storage: &S) -> bool {
        if self.submitted_next == self.next_seq || self.buf_len == 0 {
            return false;
        }
        let used = self.buf_len;
        let aligned = align_up(used, BLOCK);
        let tail = align_down(used, BLOCK);
        // The written bytes go out in a right-sized copy (the sync path, not
        // the append path, pays for it); the current buffer stays, its last
        // partial block moved to the front, so appends continue in warm memory.
        let mut out = storage.alloc_buf(aligned);
        let cur = self.buf.as_mut().expect("current buffer");
        out.as_mut_slice()[..used].copy_from_slice(&cur.as_slice()[..used]);
        out.as_mut_slice()[used..aligned].fill(0);
        cur.as_mut_slice().copy_within(tail..used, 0);
        self.jobs.push_back(Job::Write {
            file: self.seg.file.clone(),
            path: self.seg.path.clone(),
            buf: out,
            pos: self.buf_pos,
            end_seq: self.next_seq,
            after_prev: self.tail_partial,
            from_roll: false,
        });
        self.stats.writes += 1;
        self.tail_partial = used != aligned;
        self.submitted_next = self.next_seq;
        self.buf_pos += tail as u64;
        self.buf_len = used - tail;
        true
    }

    /// Finish the current segment and start the prepared one.
    fn roll(&mut self, p: &Params, storage: &S) {
        let prepared = self.next_segment.take().expect("prepared segment");
        self.next_wanted = false;
        if self.submitted_next != self.next_seq && self.buf_len > 0 {
            let used = self.buf_len;
            let aligned = align_up(used, BLOCK);
            let mut old = self.buf.take().expect("current buffer");
            old.as_mut_slice()[used..aligned].fill(0);
            old.trim(aligned);
            self.jobs.push_back(Job::Write {
                file: self.seg.file.clone(),
                path: self.seg.path.clone(),
                buf: old,
                pos: self.buf_pos,
                end_seq: self.next_seq,
                after_prev: self.tail_partial,
                from_roll: true,
            });
            self.stats.writes += 1;
            self.submitted_next = self.next_seq;
            self.buf = Some(
                self.free
                    .pop()
                    .unwrap_or_else(|| storage.alloc_buf(p.buffer_size)),
            );
        }
        self.jobs.push_back(Job::Retire {
            file: self.seg.file.clone(),
            path: self.seg.path.clone(),
        });
        self.tail_partial = false;
        let header = SegmentHeader {
            log_id: p.log_id,
            shard: p.shard,
            index: prepared.index,
            first_seq: self.next_seq,
            first_epoch: self.epoch,
            nonce: self.rng.next_u64(),
            segment_size: p.segment_size,
            zeroed: prepared.zeroed,
            sized: prepared.zeroed,
        };
        let buf = self.buf.as_mut().expect("current buffer");
        header.encode_into(buf.as_mut_slice());
        self.segments
            .push_back((prepared.index, self.next_seq, prepared.path.clone()));
        self.seg = Segment {
            file: prepared.file,
            path: prepared.path,
            index: prepared.index,
            seed: header.seed(),
        };
        self.buf_pos = 0;
        self.buf_len = RECORDS_START;
        self.stats.rolls += 1;
        // Once per segment, not per record.
        tracing::debug!(
            shard = p.shard.0,
            index = self.seg.index,
            first_seq = self.next_seq.0,
            "rolled onto a new segment"
        );
    }
}
