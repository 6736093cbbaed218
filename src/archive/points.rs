//! Where each sealed barrier ends in a live shard's files.
//!
//! A shard publishes one [`Point`] per barrier it acknowledges (and one at
//! start, for the recovered sealed epoch), before the acknowledgement: so
//! once epoch `e` is sealed, every live shard's point for `e` is here. The
//! archiver reads the newest point at or below the epoch it archives and
//! uploads that shard's files up to it. One lock per epoch per shard; never
//! per record.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::ids::Epoch;

/// The end of `barrier(epoch)` in a shard's files: byte `end` of segment
/// `segment`. Everything before it is durable once the epoch is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Point {
    pub epoch: Epoch,
    pub segment: u64,
    pub end: u64,
}

/// A bound on the points kept per shard: only the ones not yet archived are
/// needed, and the archiver takes them every pass; a stalled archive keeps
/// the newest.
const KEEP: usize = 4096;

/// One live shard's points, newest last.
#[derive(Debug, Default)]
pub(crate) struct ShardPoints {
    points: Mutex<VecDeque<Point>>,
}

impl ShardPoints {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Point>> {
        // Only pushes and pops happen under it: a panic elsewhere leaves it
        // consistent.
        self.points
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publish the end of `barrier(p.epoch)`.
    pub(crate) fn publish(&self, p: Point) {
        let mut q = self.lock();
        if q.back().is_some_and(|b| b.epoch >= p.epoch) {
            return;
        }
        if q.len() == KEEP {
            q.pop_front();
        }
        q.push_back(p);
    }

    /// The newest point at or below `epoch`; older ones are dropped.
    pub(crate) fn at_or_below(&self, epoch: Epoch) -> Option<Point> {
        let mut q = self.lock();
        let i = q.iter().rposition(|p| p.epoch <= epoch)?;
        q.drain(..i);
        q.front().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_point_at_or_below_wins() {
        let s = ShardPoints::default();
        assert_eq!(s.at_or_below(Epoch(3)), None);
        for e in [2, 3, 5] {
            s.publish(Point {
                epoch: Epoch(e),
                segment: e,
                end: 4096 * e,
            });
        }
        s.publish(Point {
            epoch: Epoch(4),
            segment: 0,
            end: 0,
        });
        assert_eq!(s.at_or_below(Epoch(4)).map(|p| p.epoch), Some(Epoch(3)));
        assert_eq!(s.at_or_below(Epoch(9)).map(|p| p.segment), Some(5));
        assert_eq!(s.at_or_below(Epoch(2)), None);
    }
}
