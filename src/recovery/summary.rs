//! What the runtime needs to know of each shard's log to compute the
//! consistent cut: where every barrier ends, the first record, and the
//! commit records of the epochs since the checkpoint.

use crate::checkpoint::payloads::{self, CommitRecord};
use crate::format::frame::{Frame, RecordKind};

use super::shard::CutPoint;

/// Facts gathered while scanning one shard.
#[derive(Debug, Clone, Default)]
pub struct ScanSummary {
    /// For every barrier seen: its epoch and the point just after it.
    pub barriers: Vec<(u64, CutPoint)>,
    /// The first frame seen at or after the replay position.
    pub from_point: Option<CutPoint>,
    /// The last commit record of each epoch seen, in epoch order.
    pub commits: Vec<CommitRecord>,
    /// The replay position (frames before it are not of interest).
    pub from_seq: u64,
    /// Barriers seen at or after the replay position.
    pub barriers_since_from: u64,
}

impl ScanSummary {
    /// A summary that starts paying attention at `from_seq`.
    pub fn new(from_seq: u64) -> ScanSummary {
        ScanSummary {
            from_seq,
            ..ScanSummary::default()
        }
    }

    /// Account for one valid frame at (`segment`, `offset`).
    pub fn observe(&mut self, f: &Frame<'_>, segment: u64, offset: usize) {
        let here = CutPoint {
            seq: f.meta.seq,
            segment,
            offset: offset as u64,
        };
        if f.meta.seq >= self.from_seq && self.from_point.is_none() {
            self.from_point = Some(here);
        }
        match f.meta.kind {
            RecordKind::Barrier => {
                if f.meta.seq >= self.from_seq {
                    self.barriers_since_from += 1;
                }
                self.barriers.push((
                    f.meta.epoch,
                    CutPoint {
                        seq: f.meta.seq + 1,
                        segment,
                        offset: (offset + f.len) as u64,
                    },
                ))
            }
            RecordKind::Commit => {
                if let Ok(c) = payloads::decode::<CommitRecord>(f.payload, "commit") {
                    match self.commits.last_mut() {
                        Some(last) if last.epoch == c.epoch => *last = c,
                        _ => self.commits.push(c),
                    }
                }
            }
            _ => {}
        }
    }

    /// The highest epoch whose barrier this shard holds durably
    /// (`floor`: what the checkpoint already proves).
    pub fn last_barrier(&self, floor: u64) -> u64 {
        self.barriers.last().map_or(floor, |(e, _)| (*e).max(floor))
    }

    /// Where to cut so that the log ends with its last barrier of an epoch
    /// at or before `sealed`: `barrier(sealed)` itself on a shard that wrote
    /// every epoch, an older one on a shard that was retired, or that
    /// joined, with no barrier written since.
    pub fn cut_for(&self, sealed: u64) -> Option<CutPoint> {
        if let Some((_, p)) = self.barriers.iter().rev().find(|(e, _)| *e <= sealed) {
            return Some(*p);
        }
        // The sealed epoch ends before every barrier seen: keep nothing
        // after the replay position.
        self.from_point
    }

    /// The commit record that holds for `sealed`.
    pub fn commit_for(&self, sealed: u64) -> Option<&CommitRecord> {
        self.commits.iter().rev().find(|c| c.epoch <= sealed)
    }
}
