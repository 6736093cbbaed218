//! What the runtime needs to know of each shard's log to compute the
//! consistent cut: where every barrier ends, the first record, and the
//! commit records of the epochs since the checkpoint.
//!
//! A commit record whose frame passes its CRC but whose payload does not
//! decode is not dropped: the summary keeps the first one
//! ([`ScanSummary::bad_commit`]) and [`ScanSummary::check`] turns it into
//! `Error::Corruption`, which the caller returns before using the summary
//! (with or without repair: the cut would otherwise rewind sources to an
//! older commit without a word).

use std::path::Path;

use crate::checkpoint::payloads::{self, CommitRecord};
use crate::error::{CorruptionCause, Error, Result};
use crate::format::frame::{Frame, RecordKind};
use crate::ids::{Epoch, Seq, ShardId};
use crate::segment::segment_name;

use super::shard::CutPoint;

/// Facts gathered while scanning one shard.
#[derive(Debug, Clone, Default)]
pub struct ScanSummary {
    /// For every barrier seen: its epoch and the point just after it.
    pub barriers: Vec<(Epoch, CutPoint)>,
    /// The first frame seen at or after the replay position.
    pub from_point: Option<CutPoint>,
    /// The last commit record of each epoch seen, in epoch order.
    pub commits: Vec<CommitRecord>,
    /// The replay position (frames before it are not of interest).
    pub from_seq: Seq,
    /// Barriers seen at or after the replay position.
    pub barriers_since_from: u64,
    /// The first commit record whose frame is valid but whose payload does
    /// not decode.
    pub bad_commit: Option<BadCommit>,
}

/// A commit record that passed its CRC and failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCommit {
    /// Index of its segment.
    pub segment: u64,
    /// Its byte offset in that segment.
    pub offset: u64,
    /// What the decoder said.
    pub cause: CorruptionCause,
}

impl ScanSummary {
    /// A summary that starts paying attention at `from_seq`.
    pub fn new(from_seq: Seq) -> ScanSummary {
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
                        seq: f.meta.seq.next(),
                        segment,
                        offset: (offset + f.len) as u64,
                    },
                ))
            }
            RecordKind::Commit => {
                match payloads::decode::<CommitRecord>(f.payload, "commit") {
                    Ok(c) => match self.commits.last_mut() {
                        Some(last) if last.epoch == c.epoch => *last = c,
                        _ => self.commits.push(c),
                    },
                    Err(error) if self.bad_commit.is_none() => {
                        self.bad_commit = Some(BadCommit {
                            segment,
                            offset: offset as u64,
                            cause: CorruptionCause::InvalidPayload {
                                seq: f.meta.seq,
                                error,
                            },
                        });
                    }
                    // Only the first one is reported.
                    Err(_) => {}
                }
            }
            _ => {}
        }
    }

    /// `Error::Corruption` for the shard whose directory is `dir` if the
    /// scan saw a commit record it could not decode.
    pub fn check(&self, shard: ShardId, dir: &Path) -> Result<()> {
        match &self.bad_commit {
            None => Ok(()),
            Some(b) => Err(Error::Corruption {
                shard,
                segment: dir.join(segment_name(b.segment)),
                offset: b.offset,
                cause: b.cause.clone(),
            }),
        }
    }

    /// The highest epoch whose barrier this shard holds durably
    /// (`floor`: what the checkpoint already proves).
    pub fn last_barrier(&self, floor: Epoch) -> Epoch {
        self.barriers.last().map_or(floor, |(e, _)| (*e).max(floor))
    }

    /// Where to cut so that the log ends with its last barrier of an epoch
    /// at or before `sealed`: `barrier(sealed)` itself on a shard that wrote
    /// every epoch, an older one on a shard that was retired, or that
    /// joined, with no barrier written since.
    pub fn cut_for(&self, sealed: Epoch) -> Option<CutPoint> {
        if let Some((_, p)) = self.barriers.iter().rev().find(|(e, _)| *e <= sealed) {
            return Some(*p);
        }
        // The sealed epoch ends before every barrier seen: keep nothing
        // after the replay position.
        self.from_point
    }

    /// The commit record that holds for `sealed`.
    pub fn commit_for(&self, sealed: Epoch) -> Option<&CommitRecord> {
        self.commits.iter().rev().find(|c| c.epoch <= sealed.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::frame::{FrameMeta, frame_len};

    fn frame(seq: u64, kind: RecordKind, payload: &[u8]) -> Frame<'_> {
        Frame {
            meta: FrameMeta {
                seq: Seq(seq),
                epoch: Epoch(3),
                durable_next: Seq(0),
                kind,
            },
            payload,
            len: frame_len(payload.len()),
        }
    }

    #[test]
    fn a_commit_that_does_not_decode_is_reported_as_corruption() {
        let good = payloads::encode(&CommitRecord {
            epoch: 3,
            ..CommitRecord::default()
        })
        .unwrap();
        let mut s = ScanSummary::new(Seq(0));
        s.observe(&frame(7, RecordKind::Commit, &good), 2, 4096);
        assert!(s.check(ShardId(1), Path::new("d")).is_ok());
        s.observe(&frame(8, RecordKind::Commit, &[0xff; 24]), 2, 4200);
        s.observe(&frame(9, RecordKind::Commit, &[0xee; 24]), 2, 4300);
        assert_eq!(s.commits.len(), 1, "the valid commit still counts");
        match s.check(ShardId(1), Path::new("d")) {
            Err(Error::Corruption {
                shard,
                segment,
                offset,
                cause: CorruptionCause::InvalidPayload { seq, .. },
            }) => {
                assert_eq!(
                    (shard, offset, seq),
                    (ShardId(1), 4200, Seq(8)),
                    "the first one"
                );
                assert_eq!(segment, Path::new("d").join(segment_name(2)));
            }
            other => panic!("{other:?}"),
        }
    }
}
