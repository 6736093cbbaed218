//! Newtypes for the identifiers that appear in every record: shard, epoch,
//! sequence number, LSN and checkpoint id.
//!
//! Keeping them distinct types means a sequence number can never be passed
//! where an epoch is expected. Transitions that must be `+1` are asserted.

use std::fmt;

/// Index of a shard (one pinned core's log) within a log directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ShardId(pub u32);

/// A global logical clock advanced only by the coordinator.
///
/// Records appended on a shard between `barrier(e-1)` and `barrier(e)` belong
/// to epoch `e`. Epoch `0` is never used for records; a fresh log starts in
/// epoch `1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u64);

/// A shard-local, dense sequence number: `+1` per record, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(pub u64);

/// Identifier of a checkpoint, assigned by the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CheckpointId(pub u64);

/// Log sequence number: where a record sits in the sharded log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lsn {
    /// The shard that owns the record.
    pub shard: ShardId,
    /// The epoch the record belongs to.
    pub epoch: Epoch,
    /// The record's shard-local sequence number.
    pub seq: Seq,
}

impl Epoch {
    /// The first epoch of a new log.
    pub const FIRST: Epoch = Epoch(1);

    /// No frame has this epoch (the format refuses one that claims it), so
    /// the last epoch a barrier can end is the one before it.
    pub const END: Epoch = Epoch(u64::MAX);

    /// The epoch after this one. Panics on overflow (2^64 epochs never happen).
    #[must_use]
    pub fn next(self) -> Epoch {
        Epoch(self.0.checked_add(1).expect("epoch overflow"))
    }
}

impl Seq {
    /// No record has this sequence number (the format refuses a frame that
    /// claims it): it can only be an exclusive bound, the `next_seq` after
    /// the last possible record.
    pub const END: Seq = Seq(u64::MAX);

    /// The sequence number after this one.
    #[must_use]
    pub fn next(self) -> Seq {
        Seq(self.0.checked_add(1).expect("sequence number overflow"))
    }
}

impl CheckpointId {
    /// The checkpoint id after this one. Panics on overflow.
    #[must_use]
    pub fn next(self) -> CheckpointId {
        CheckpointId(self.0.checked_add(1).expect("checkpoint id overflow"))
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {}", self.0)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {}", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}", self.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.shard.0, self.epoch.0, self.seq.0)
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "checkpoint {}", self.0)
    }
}
