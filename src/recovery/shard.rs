//! Recovery of one shard's directory, in three steps:
//!
//! 1. [`scan`]: stream its segments through the [`Scanner`] (the table of
//!    cases) and gather the [`ScanSummary`] the consistent cut needs. Reads
//!    only; it runs on any [`Storage`], a read-only one included.
//! 2. [`decide`]: from what the scan found and an optional cut point, what
//!    stays, what goes and what the report says. Pure: the planner
//!    ([`super::plan`]) and a bare `ShardLog` call it, and a dry run prints
//!    its report without touching the disk.
//! 3. [`apply`]: carry the decision out (zero the bytes past the end that is
//!    kept, fdatasync, remove dropped segments, fsync the directory) and
//!    hand the writer the position to resume from.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::scan::{Expect, ScanOutcome, ScannedSegment, Scanner, TornTail};
use super::summary::ScanSummary;
use crate::error::{CorruptionCause, Error, Result};
use crate::format::frame::Frame;
use crate::format::segment_header::{RECORDS_START, SegmentHeader};
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
    /// Segment files removed (blank, short, torn, or after the cut), in
    /// index order. Each removal is also logged (`tracing`, level info).
    pub removed: Vec<PathBuf>,
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
    pub header: SegmentHeader,
    pub valid_end: u64,
    /// The bytes of the block holding `valid_end`, up to `valid_end`.
    pub tail: Vec<u8>,
}

/// A shard directory after [`apply`]: what the writer needs to resume.
pub(crate) struct Recovered<F> {
    pub report: ShardRecovery,
    /// (index, first seq, path) of every kept segment, in order.
    pub kept: Vec<(u64, Seq, PathBuf)>,
    pub resume: Option<Resume<F>>,
    pub max_index: Option<u64>,
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
    crate::io::close_quietly(f, path).await;
    Ok(b)
}

/// A leading segment before the replay position that the scan skipped
/// without reading its records: still live, and truncated later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSegment {
    /// Segment index.
    pub index: u64,
    /// Its first sequence number (from its header).
    pub first_seq: Seq,
    /// The file.
    pub path: PathBuf,
}

/// A scanned, not yet repaired, shard directory.
#[derive(Debug, Clone)]
pub struct Scanned {
    /// The shard.
    pub shard: ShardId,
    /// Its directory.
    pub dir: PathBuf,
    /// How the log ends, by the table of cases.
    pub outcome: ScanOutcome,
    /// What the consistent cut needs: barriers, commits, the replay position.
    pub summary: ScanSummary,
    /// Segments before the replay position that were not scanned.
    pub skipped: Vec<SkippedSegment>,
    /// The highest segment index present in the directory.
    pub max_index: Option<u64>,
    /// True if the caller stopped the scan early (see [`scan`]): then the
    /// outcome describes only the segments read so far, and the scan must
    /// not be used to repair anything.
    pub stopped: bool,
    /// When the scan started (for the report's wall time).
    pub started: Instant,
}

/// Where to cut a shard's log on purpose: the first frame to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutPoint {
    /// Sequence number of the first record dropped.
    pub seq: Seq,
    /// Index of the segment where it starts.
    pub segment: u64,
    /// Its byte offset in that segment.
    pub offset: u64,
}

/// How to scan a shard.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// The replay position (a checkpoint's): leading segments wholly
    /// before it are skipped unread, and the summary counts epochs and
    /// records from it on.
    pub from_seq: Option<Seq>,
    /// Cut mid-log corruption like a torn tail instead of refusing it
    /// (reported in [`ScanOutcome::repaired`]).
    pub repair: bool,
}

/// Scan the shard directory `dir` without changing it (a missing directory
/// is an empty log). `on_frame` sees every valid frame in log order with
/// its segment index and offset; when it returns `false` the scan stops
/// after the current segment, with [`Scanned::stopped`] set. Mid-log
/// corruption is `Error::Corruption`, or with `repair` a cut at the damage.
pub async fn scan<S: Storage>(
    storage: &S,
    dir: &Path,
    exp: Expect,
    opts: ScanOptions,
    on_frame: impl FnMut(&Frame<'_>, u64, usize) -> bool,
) -> Result<Scanned> {
    scan_gated(storage, dir, exp, opts, on_frame, None).await
}

/// [`scan`], asking `gate` before each chunk of the log is checked and
/// waiting while it says no (a consumer of the frames is behind: see
/// `runtime::replay`). The outcome is the same; only the pace differs.
pub(crate) async fn scan_gated<S: Storage>(
    storage: &S,
    dir: &Path,
    exp: Expect,
    opts: ScanOptions,
    mut on_frame: impl FnMut(&Frame<'_>, u64, usize) -> bool,
    gate: Option<Box<dyn FnMut() -> bool>>,
) -> Result<Scanned> {
    let started = Instant::now();
    let shard = exp.shard;
    let names = match storage.list(dir).await {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut segs = segments_in(&names);
    let max_index = segs.last().map(|(i, _)| *i);
    let mut skipped = Vec::new();
    if let Some(from) = opts.from_seq {
        // Skip leading segments whose successor starts at or before `from`.
        // The successor's header read here also gives the first seq of the
        // next skipped segment, so each header is read once.
        let first_of = |head: &[u8]| {
            SegmentHeader::decode(head)
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
            let path0 = dir.join(&segs[0].1);
            let head = read_head(storage, &path0).await?;
            // Skipped unread, but never another log's (see the scan's table).
            if let Ok(h) = SegmentHeader::decode(&head)
                && h.log_id != exp.log_id
            {
                return Err(Error::Corruption {
                    shard,
                    segment: path0,
                    offset: 0,
                    cause: CorruptionCause::ForeignLogId {
                        found: h.log_id,
                        expected: exp.log_id,
                    },
                });
            }
            let first0 = first_of(&head).unwrap_or_default();
            let starts = std::iter::once(first0).chain(firsts.iter().copied());
            skipped = segs
                .drain(..firsts.len())
                .zip(starts)
                .map(|((index, name), first_seq)| SkippedSegment {
                    index,
                    first_seq,
                    path: dir.join(name),
                })
                .collect();
        }
    }
    let mut summary = ScanSummary::new(opts.from_seq.unwrap_or_default());
    let mut scanner = Scanner::new(exp);
    let halted = Cell::new(false);
    let mut frame = |f: &Frame<'_>, seg: u64, off: usize| {
        summary.observe(f, seg, off);
        if !halted.get() && !on_frame(f, seg, off) {
            halted.set(true);
        }
    };
    let paths: Vec<PathBuf> = segs.iter().map(|(_, name)| dir.join(name)).collect();
    let mut outcome = None;
    // Every byte of every segment is read once, in order, in chunks, with
    // the next chunk's read in flight while this one is checked.
    let mut stream = ChunkStream::new(storage.clone(), paths.clone());
    if let Some(g) = gate {
        stream.set_gate(g);
    }
    // Each file is opened once; the next segment's header, which the
    // scanner checks at a clean segment end, comes from its first read.
    let scanned = async {
        for (k, (index, _)) in segs.iter().enumerate() {
            stream.start_file(k).await?;
            let stop = scanner
                .feed_window(*index, &paths[k], &mut stream, &mut frame)
                .await?;
            if halted.get() {
                outcome = Some(scanner.finish());
                break;
            }
            if let Some(mut stop) = stop {
                for (j, (li, _)) in segs.iter().enumerate().skip(k + 1) {
                    stream.start_file(j).await?;
                    stop.consider_later_window(*li, &paths[j], &mut stream, &exp)
                        .await?;
                }
                let decided =
                    scanner
                        .decide_with(stop, opts.repair)
                        .map_err(|c| Error::Corruption {
                            shard,
                            segment: c.path,
                            offset: c.offset,
                            cause: c.cause,
                        })?;
                outcome = Some(decided);
                break;
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    if scanned.is_err() {
        // Reads still in flight finish before the stream goes: an executor
        // that ends with one outstanding leaves it to a blocking thread
        // that has nobody to answer.
        stream.settle().await;
    }
    scanned?;
    // A commit record that passed its CRC but does not decode is corruption.
    summary.check(shard, dir)?;
    Ok(Scanned {
        shard,
        dir: dir.to_path_buf(),
        outcome: outcome.unwrap_or_else(|| scanner.finish()),
        summary,
        skipped,
        max_index,
        stopped: halted.get(),
        started,
    })
}

/// What recovery will do to one shard: the segments kept and dropped, and
/// the report. Built by [`decide`], carried out by [`apply`].
#[derive(Debug, Clone)]
pub struct ShardCut {
    /// The shard's directory.
    pub dir: PathBuf,
    /// Scanned segments that stay, in order; the last one's `valid_end` is
    /// where the log ends.
    pub kept: Vec<ScannedSegment>,
    /// Segment files to remove.
    pub dropped: Vec<PathBuf>,
    /// Unscanned leading segments, which stay.
    pub skipped: Vec<SkippedSegment>,
    /// The highest segment index present.
    pub max_index: Option<u64>,
    /// The report (its `elapsed` is filled in by [`apply`]).
    pub report: ShardRecovery,
    started: Instant,
}

/// Decide what recovery does to a scanned shard: cut a torn tail (the
/// scan's outcome), and with `cut`, cut on purpose at that frame
/// (everything from it on is dropped, e.g. records of unsealed epochs).
/// `epoch_after`, if given, is the epoch the writer resumes in. Pure.
pub fn decide(scanned: Scanned, cut: Option<CutPoint>, epoch_after: Option<Epoch>) -> ShardCut {
    let Scanned {
        shard,
        dir,
        mut outcome,
        summary,
        skipped,
        max_index,
        started,
        ..
    } = scanned;
    let mut cut_records = 0;
    if let Some(c) = cut
        && c.seq < outcome.next_seq
        && let Some(k) = outcome.kept.iter().position(|s| s.index == c.segment)
    {
        cut_records = outcome.next_seq.0 - c.seq.0;
        // Frame bytes dropped: the rest of segment k, and all of later ones.
        let rs = RECORDS_START as u64;
        let cut_bytes = outcome.kept[k].valid_end.saturating_sub(c.offset.max(rs))
            + outcome.kept[k + 1..]
                .iter()
                .map(|s| s.valid_end.saturating_sub(rs))
                .sum::<u64>();
        outcome.bytes = outcome.bytes.saturating_sub(cut_bytes);
        let later: Vec<PathBuf> = outcome.kept.drain(k + 1..).map(|s| s.path).collect();
        outcome.dropped.extend(later);
        let seg = &mut outcome.kept[k];
        seg.valid_end = c.offset.max(rs);
        seg.next_seq = c.seq;
        outcome.next_seq = c.seq;
        outcome.records = outcome.records.saturating_sub(cut_records);
    }
    if let Some(e) = epoch_after {
        outcome.next_epoch = Some(e);
    }
    let report = ShardRecovery {
        shard,
        segments: outcome.kept.len(),
        records: outcome.records,
        bytes: outcome.bytes,
        torn: outcome.torn.clone(),
        repaired: outcome.repaired.clone(),
        removed: sorted_by_index(outcome.dropped.clone()),
        next_seq: outcome.next_seq,
        epoch: outcome.next_epoch.unwrap_or(Epoch::FIRST).max(Epoch::FIRST),
        elapsed: Duration::ZERO,
        cut_records,
        epochs_seen: summary.barriers_since_from + 1,
    };
    ShardCut {
        dir,
        kept: outcome.kept,
        dropped: outcome.dropped,
        skipped,
        max_index,
        report,
        started,
    }
}

/// Segment paths in index order (names that do not parse go first).
fn sorted_by_index(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    paths.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| crate::segment::parse_segment_name(&n.to_string_lossy()))
    });
    paths
}

/// Carry out a [`ShardCut`]: remove the dropped segments (last first) and
/// fsync the directory, then zero everything after the valid end of the
/// last kept segment and fdatasync it. Restartable: interrupted anywhere,
/// the next recovery reaches the same cut. Returns where the writer
/// resumes.
pub(crate) async fn apply<S: Storage>(storage: &S, cut: ShardCut) -> Result<Recovered<S::File>> {
    let ShardCut {
        dir,
        kept,
        dropped,
        skipped,
        max_index,
        mut report,
        started,
    } = cut;
    // Later segments go first, the last one first, and their removal is
    // made durable before the kept segment's tail is zeroed: a crash at any
    // point leaves a prefix of the log (never a later segment whose frames
    // vouch for records that are zeroed), so the next recovery reaches the
    // same result.
    let dropped = sorted_by_index(dropped);
    for p in dropped.iter().rev() {
        tracing::info!(shard = report.shard.0, path = %p.display(), "removing a segment beyond the cut");
        storage
            .remove(p)
            .await
            .map_err(|e| Error::io("remove", p, e))?;
    }
    if !dropped.is_empty() {
        storage
            .sync_dir(&dir)
            .await
            .map_err(|e| Error::io("directory fsync", &dir, e))?;
    }
    let mut resume = None;
    if let Some(last) = kept.last() {
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
            tracing::info!(
                shard = report.shard.0,
                path = %last.path.display(),
                from = last.valid_end,
                bytes = last.data_end - last.valid_end,
                "zeroing the bytes past the cut"
            );
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
    report.elapsed = started.elapsed();
    tracing::info!(
        shard = report.shard.0,
        segments = report.segments,
        records = report.records,
        bytes = report.bytes,
        next_seq = report.next_seq.0,
        epoch = report.epoch.0,
        cut_records = report.cut_records,
        removed_segments = report.removed.len(),
        torn = report.torn.is_some(),
        repaired = report.repaired.is_some(),
        elapsed_ms = report.elapsed.as_secs_f64() * 1e3,
        "shard recovered"
    );
    Ok(Recovered {
        report,
        kept: skipped
            .into_iter()
            .map(|s| (s.index, s.first_seq, s.path))
            .chain(
                kept.iter()
                    .map(|k| (k.index, k.header.first_seq, k.path.clone())),
            )
            .collect(),
        resume,
        max_index,
    })
}

#[cfg(test)]
mod tests {
    //! Recovery is restartable: a recovery interrupted after any change it
    //! makes to the disk, followed by a recovery, gives the result of one
    //! uninterrupted recovery.

    use std::path::Path;

    use super::*;
    use crate::config::{FsyncPolicy, SegmentPrepare, ShardConfig};
    use crate::io::sim::{CrashMode, SimStorage};
    use crate::writer::ShardLog;

    const LOG: &str = "/sim/restartable";

    fn cfg() -> ShardConfig {
        ShardConfig {
            segment_size: 16 << 10,
            buffer_size: 4 << 10,
            write_behind: 2,
            max_record_size: 1024,
            fsync: FsyncPolicy::Never,
            prepare: SegmentPrepare::Create,
            repair: false,
        }
    }

    /// A shard whose epochs 1..=3 are followed by epochs 4 and 5, made
    /// durable (so their frames vouch far beyond barrier(3)) over several
    /// later segments: the state a consistent cut at epoch 3 meets when
    /// another shard never wrote barrier(4).
    async fn written() -> SimStorage {
        let sim = SimStorage::new();
        let log = ShardLog::open(sim.clone(), Path::new(LOG), ShardId(0), cfg())
            .await
            .unwrap();
        for epoch in 1..=5u8 {
            let n = if epoch <= 3 { 10 } else { 120 };
            for i in 0..n {
                log.append(&[epoch ^ i; 200]).await.unwrap();
            }
            log.barrier().await.unwrap();
            log.sync().await.unwrap();
        }
        drop(log);
        sim.crash(CrashMode::DropAll, 0)
    }

    async fn scan_of(sim: &SimStorage) -> Result<Scanned> {
        let log_id = crate::log_dir::load(sim, Path::new(LOG)).await?;
        let exp = Expect {
            log_id,
            shard: ShardId(0),
            max_payload: crate::format::MAX_RECORD_HARD,
        };
        let dir = crate::segment::shard_dir(Path::new(LOG), ShardId(0));
        scan(sim, &dir, exp, ScanOptions::default(), |_, _, _| true).await
    }

    /// Cut at epoch 3; apply, letting only `halt` changes through.
    async fn recover(sim: &SimStorage, halt: Option<u64>) -> Result<ShardRecovery> {
        let sc = scan_of(sim).await?;
        let at = sc.summary.cut_for(Epoch(3));
        let cut = decide(sc, at, Some(Epoch(4)));
        if let Some(h) = halt {
            sim.halt_after(h);
        }
        let r = apply(sim, cut).await.map(|r| r.report);
        sim.heal();
        r
    }

    #[test]
    fn a_recovery_interrupted_anywhere_recovers_like_an_uninterrupted_one() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .unwrap();
        ex.run(async {
            let disk = written().await;
            let whole = recover(&disk.crash(CrashMode::KeepAll, 0), None)
                .await
                .unwrap();
            assert!(whole.removed.len() >= 3, "{whole:?}");
            let mut halts = 0;
            for h in 0.. {
                let d = disk.crash(CrashMode::KeepAll, 0);
                let before = d.changes();
                let interrupted = recover(&d, Some(h)).await;
                if interrupted.is_ok() {
                    break;
                }
                halts += 1;
                assert!(d.changes() > before);
                for mode in [CrashMode::DropAll, CrashMode::KeepAll, CrashMode::Random] {
                    let after = d.crash(mode, h);
                    let again = recover(&after, None).await.unwrap_or_else(|e| {
                        panic!("recovery after one interrupted at change {h} ({mode:?}): {e}")
                    });
                    assert_eq!(
                        (again.next_seq, again.epoch),
                        (whole.next_seq, whole.epoch),
                        "interrupted at change {h} ({mode:?})"
                    );
                }
            }
            assert!(halts >= 4, "only {halts} crash points");
        });
    }
}
