//! Recovery of one shard's directory: stream its segments through the
//! [`Scanner`], cut a torn tail (zero the bytes past the valid end, delete
//! segments after it), and hand the writer the position to resume from.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::scan::{Expect, ScanOutcome, Scanner, SegmentBytes, TornTail};
use crate::error::{Error, Result};
use crate::format::frame::Frame;
use crate::format::{BLOCK, align_down, align_up};
use crate::ids::{Epoch, Seq, ShardId};
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

fn corrupt(shard: ShardId, path: PathBuf, offset: u64, detail: String) -> Error {
    Error::Corruption {
        shard,
        segment: path,
        offset,
        detail,
    }
}

pub(crate) async fn read_all<S: Storage>(
    storage: &S,
    path: &Path,
) -> Result<<S::File as StorageFile>::ReadBuf> {
    let f = storage
        .open(path, false)
        .await
        .map_err(|e| Error::io("open", path, e))?;
    let size = f.size().await.map_err(|e| Error::io("stat", path, e))?;
    let size = usize::try_from(size).map_err(|_| Error::NotALog {
        path: path.to_path_buf(),
        detail: "segment larger than memory".into(),
    })?;
    // Bounded: segment sizes are bounded by the header format (16 GiB) and,
    // in practice, by the configured segment size.
    let cap = crate::format::segment_header::MAX_SEGMENT_SIZE as usize;
    let bytes = f
        .read_at(0, align_up(size.min(cap), BLOCK))
        .await
        .map_err(|e| Error::io("read", path, e))?;
    let _ = f.close().await;
    Ok(bytes)
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

/// Scan and repair the tail of the shard directory `dir`.
/// `on_frame` sees every recovered frame in log order.
pub(crate) async fn recover<S: Storage>(
    storage: &S,
    dir: &Path,
    shard: ShardId,
    exp: Expect,
    mut on_frame: impl FnMut(&Frame<'_>),
) -> Result<Recovered<S::File>> {
    let started = Instant::now();
    let names = storage
        .list(dir)
        .await
        .map_err(|e| Error::io("list", dir, e))?;
    let segs = segments_in(&names);
    let max_index = segs.last().map(|(i, _)| *i);
    let mut scanner = Scanner::new(exp);
    let mut outcome: Option<ScanOutcome> = None;
    for (k, (index, name)) in segs.iter().enumerate() {
        let path = dir.join(name);
        let bytes = read_all(storage, &path).await?;
        let next_head = match segs.get(k + 1) {
            Some((_, n)) => Some(read_head(storage, &dir.join(n)).await?),
            None => None,
        };
        let seg = SegmentBytes {
            index: *index,
            path: path.clone(),
            bytes: &bytes,
        };
        if let Some(mut stop) = scanner.feed(&seg, next_head.as_deref(), &mut on_frame) {
            drop(bytes);
            for (li, ln) in &segs[k + 1..] {
                let lp = dir.join(ln);
                let lb = read_all(storage, &lp).await?;
                stop.consider_later(
                    &SegmentBytes {
                        index: *li,
                        path: lp,
                        bytes: &lb,
                    },
                    &exp,
                );
            }
            let decided = scanner
                .decide(stop)
                .map_err(|c| corrupt(shard, c.path, c.offset, c.detail))?;
            outcome = Some(decided);
            break;
        }
    }
    let outcome = match outcome {
        Some(o) => o,
        None => scanner.finish(),
    };

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
        removed_segments: outcome.dropped.len(),
        next_seq: Seq(outcome.next_seq),
        epoch: Epoch(
            outcome
                .next_epoch
                .unwrap_or(Epoch::FIRST.0)
                .max(Epoch::FIRST.0),
        ),
        elapsed: started.elapsed(),
    };
    Ok(Recovered {
        report,
        kept: outcome
            .kept
            .iter()
            .map(|k| (k.index, k.header.first_seq, k.path.clone()))
            .collect(),
        resume,
        max_index,
    })
}
