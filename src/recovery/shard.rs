//! Recovery of one shard's directory: stream its segments through the
//! [`Scanner`], cut a torn tail (zero the bytes past the valid end, delete
//! segments after it), and hand the writer the position to resume from.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::scan::{Expect, ScanOutcome, Scanner, TornTail};
use crate::error::{CorruptionCause, Error, Result};
use crate::format::frame::Frame;
use crate::format::{BLOCK, align_down};
use crate::ids::{Epoch, Seq, ShardId};
use crate::io::read_ahead::ChunkStream;
use crate::io::{IoBuf, Storage, StorageFile};
use crate::segment::segments_in;

/// What recovering one shard found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRecovery {
    /// The shard.
    pub shard: ShardId,
    /// Segments that hold the recovered log.
    pub segments: usize,
    /// Records recovered.
    pub records: u64,
    /// Frame bytes recovered.
    pub bytes: u64,
    /// The torn tail that was cut, if any.
    pub torn: Option<TornTail>,
    /// Segment files removed (blank, torn, or after the cut).
    pub removed_segments: usize,
    /// Sequence number of the next record.
    pub next_seq: Seq,
    /// Epoch of the next record.
    pub epoch: Epoch,
    /// Wall time of the recovery.
    pub elapsed: Duration,
    /// Records of unsealed epochs cut on purpose (consistent cut).
    pub cut_records: u64,
    /// Mid-log corruption dropped on request (`ShardConfig::repair`):
    /// where it was, what failed, and the bytes dropped from there on. Every
    /// record from that point on is gone, acknowledged or not.
    pub repaired: Option<TornTail>,
    /// Epochs with records on this shard since the replay position.
    pub epochs_seen: u64,
}

/// Where the writer resumes.
pub(crate) struct Resume<F> {
    pub file: F,
    pub path: PathBuf,
    pub index: u64,
    pub header: crate::format::segment_header::SegmentHeader,
    pub valid_end: u64,
    /// The bytes of the block holding `valid_end`, up to `valid_end`.
    pub tail: Vec<u8>,
}

pub(crate) struct Recovered<F> {
    pub report: ShardRecovery,
    /// (index, first seq, path) of every kept segment, in order.
    pub kept: Vec<(u64, u64, PathBuf)>,
    pub resume: Option<Resume<F>>,
    pub max_index: Option<u64>,
}

fn corrupt(shard: ShardId, path: PathBuf, offset: u64, cause: CorruptionCause) -> Error {
    Error::Corruption {
        shard,
        segment: path,
        offset,
        cause,
    }
}

pub(crate) async fn read_head<S: Storage>(
    storage: &S,
    path: &Path,
) -> Result<<S::File as StorageFile>::ReadBuf> {
    let f = storage
        .open(path, false)
        .await
        .map_err(|e| Error::io("open", path, e))?;
    let b = f
        .read_at(0, BLOCK)
        .await
        .map_err(|e| Error::io("read", path, e))?;
    let _ = f.close().await;
    Ok(b)
}

/// A scanned, not yet repaired, shard directory.
pub(crate) struct Scanned {
    pub outcome: ScanOutcome,
    /// Segments before the replay position that were not scanned, as
    /// (index, first seq, path): still live, and truncated later.
    pub skipped: Vec<(u64, u64, PathBuf)>,
    pub max_index: Option<u64>,
    pub started: Instant,
}

/// Where to cut a shard's log on purpose: the first frame to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutPoint {
    /// Sequence number of the first record dropped.
    pub seq: u64,
    /// Index of the segment where it starts.
    pub segment: u64,
    /// Its byte offset in that segment.
    pub offset: u64,
}

/// Scan the shard directory `dir` without changing it. Segments wholly
/// before `from_seq` are skipped. `on_frame` sees every valid frame in log
/// order with its segment index and offset. Mid-log corruption is an
/// error, or with `repair` a cut at the damage (reported in
/// [`ScanOutcome::repaired`](super::scan::ScanOutcome::repaired)).
pub(crate) async fn scan<S: Storage>(
    storage: &S,
    dir: &Path,
    exp: Expect,
    from_seq: Option<u64>,
    repair: bool,
    mut on_frame: impl FnMut(&Frame<'_>, u64, usize),
) -> Result<Scanned> {
    let started = Instant::now();
    let names = storage
        .list(dir)
        .await
        .map_err(|e| Error::io("list", dir, e))?;
    let mut segs = segments_in(&names);
    let max_index = segs.last().map(|(i, _)| *i);
    // Segments before the replay position, as (index, first seq, path).
    let mut skipped: Vec<(u64, u64, PathBuf)> = Vec::new();
    if let Some(from) = from_seq {
        // Skip leading segments whose successor starts at or before `from`.
        // The successor's header read here also gives the first seq of the
        // next skipped segment, so each header is read once.
        let first_of = |head: &[u8]| {
            crate::format::segment_header::SegmentHeader::decode(head)
                .ok()
                .filter(|h| h.log_id == exp.log_id && h.shard == exp.shard)
                .map(|h| h.first_seq)
        };
        let mut firsts = Vec::new();
        while firsts.len() + 1 < segs.len() {
            let head = read_head(storage, &dir.join(&segs[firsts.len() + 1].1)).await?;
            match first_of(&head) {
                Some(f) if f <= from => firsts.push(f),
                _ => break,
            }
        }
        if !firsts.is_empty() {
            let head = read_head(storage, &dir.join(&segs[0].1)).await?;
            let first0 = first_of(&head).unwrap_or(0);
            let starts = std::iter::once(first0).chain(firsts.iter().copied());
            skipped = segs
                .drain(..firsts.len())
                .zip(starts)
                .map(|((index, name), first)| (index, first, dir.join(name)))
                .collect();
        }
    }
    let mut scanner = Scanner::new(exp);
    let mut outcome: Option<ScanOutcome> = None;
    let paths: Vec<PathBuf> = segs.iter().map(|(_, name)| dir.join(name)).collect();
    // Every byte of every segment is read once, in order, in chunks, with
    // the next chunk's read in flight while this one is checked.
    let mut stream = ChunkStream::new(storage.clone(), paths.clone());
    for (k, (index, _)) in segs.iter().enumerate() {
        let next_head = match paths.get(k + 1) {
            Some(n) => Some(read_head(storage, n).await?),
            None => None,
        };
        stream.start_file(k).await?;
        let stop = scanner
            .feed_window(
                *index,
                &paths[k],
                &mut stream,
                next_head.as_deref(),
                &mut on_frame,
            )
            .await?;
        if let Some(mut stop) = stop {
            for (j, (li, _)) in segs.iter().enumerate().skip(k + 1) {
                stream.start_file(j).await?;
                stop.consider_later_window(*li, &paths[j], &mut stream, &exp)
                    .await?;
            }
            let shard = ShardId(exp.shard);
            let decided = scanner
                .decide_with(stop, repair)
                .map_err(|c| corrupt(shard, c.path, c.offset, c.cause))?;
            outcome = Some(decided);
            break;
        }
    }
    let outcome = match outcome {
        Some(o) => o,
        None => scanner.finish(),
    };
    Ok(Scanned {
        outcome,
        skipped,
        max_index,
        started,
    })
}

/// Repair a scanned shard: cut a torn tail, or cut on purpose at `cut`
/// (everything from that frame on is dropped, e.g. records of unsealed
/// epochs), then make the result durable. With a cut, `epoch_after` is the
/// epoch the writer resumes in.
pub(crate) async fn apply<S: Storage>(
    storage: &S,
    dir: &Path,
    shard: ShardId,
    scanned: Scanned,
    cut: Option<CutPoint>,
    epoch_after: Option<u64>,
) -> Result<Recovered<S::File>> {
    let Scanned {
        mut outcome,
        skipped,
        max_index,
        started,
    } = scanned;
    let mut cut_records = 0;
    if let Some(c) = cut
        && c.seq < outcome.next_seq
        && let Some(k) = outcome.kept.iter().position(|s| s.index == c.segment)
    {
        cut_records = outcome.next_seq - c.seq;
        // Frame bytes dropped: the rest of segment k, and all of later ones.
        let rs = crate::format::segment_header::RECORDS_START as u64;
        let cut_bytes = outcome.kept[k].valid_end.saturating_sub(c.offset.max(rs))
            + outcome.kept[k + 1..]
                .iter()
                .map(|s| s.valid_end.saturating_sub(rs))
                .sum::<u64>();
        outcome.bytes = outcome.bytes.saturating_sub(cut_bytes);
        let later: Vec<PathBuf> = outcome.kept.drain(k + 1..).map(|s| s.path).collect();
        outcome.dropped.extend(later);
        let seg = &mut outcome.kept[k];
        seg.valid_end = c
            .offset
            .max(crate::format::segment_header::RECORDS_START as u64);
        seg.next_seq = c.seq;
        outcome.next_seq = c.seq;
        outcome.records = outcome.records.saturating_sub(cut_records);
    }
    if let Some(e) = epoch_after {
        outcome.next_epoch = Some(e);
    }
    // Cut: zero everything after the valid end of the last kept segment.
    let mut resume = None;
    if let Some(last) = outcome.kept.last() {
        let file = storage
            .open(&last.path, false)
            .await
            .map_err(|e| Error::io("open", &last.path, e))?;
        let start = align_down(last.valid_end as usize, BLOCK) as u64;
        let block = file
            .read_at(start, BLOCK)
            .await
            .map_err(|e| Error::io("read", &last.path, e))?;
        let keep = (last.valid_end - start) as usize;
        let mut tail = vec![0u8; keep];
        let have = keep.min(block.len());
        tail[..have].copy_from_slice(&block[..have]);
        if last.data_end > last.valid_end {
            let len = (last.data_end - start) as usize;
            let mut buf = storage.alloc_buf(len);
            buf.as_mut_slice().fill(0);
            buf.as_mut_slice()[..keep].copy_from_slice(&tail);
            let n = file
                .write_at(Rc::new(buf), start)
                .await
                .map_err(|e| Error::io("write", &last.path, e))?;
            if n != len {
                return Err(Error::ShortWrite {
                    path: last.path.clone(),
                    offset: start,
                    written: n,
                    expected: len,
                });
            }
        }
        // Whatever we recovered is now known durable: we vouch for it.
        file.sync_data()
            .await
            .map_err(|e| Error::io("fdatasync", &last.path, e))?;
        resume = Some(Resume {
            file,
            path: last.path.clone(),
            index: last.index,
            header: last.header,
            valid_end: last.valid_end,
            tail,
        });
    }
    for p in &outcome.dropped {
        storage
            .remove(p)
            .await
            .map_err(|e| Error::io("remove", p, e))?;
    }
    if !outcome.dropped.is_empty() {
        storage
            .sync_dir(dir)
            .await
            .map_err(|e| Error::io("directory fsync", dir, e))?;
    }
    let report = ShardRecovery {
        shard,
        segments: outcome.kept.len(),
        records: outcome.records,
        bytes: outcome.bytes,
        torn: outcome.torn.clone(),
        repaired: outcome.repaired.clone(),
        removed_segments: outcome.dropped.len(),
        next_seq: Seq(outcome.next_seq),
        epoch: Epoch(
            outcome
                .next_epoch
                .unwrap_or(Epoch::FIRST.0)
                .max(Epoch::FIRST.0),
        ),
        elapsed: started.elapsed(),
        cut_records,
        epochs_seen: 0,
    };
    Ok(Recovered {
        report,
        kept: skipped
            .into_iter()
            .chain(
                outcome
                    .kept
                    .iter()
                    .map(|k| (k.index, k.header.first_seq, k.path.clone())),
            )
            .collect(),
        resume,
        max_index,
    })
}
