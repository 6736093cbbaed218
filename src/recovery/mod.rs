//! Recovery of one shard: scan its segments, classify where the valid log
//! ends ([`scan`], written as a table of cases), and cut a torn tail
//! ([`shard`]).

#[cfg(test)]
mod chunked_scan_tests;
pub mod scan;
pub mod shard;
pub mod summary;

pub use scan::{
    Corrupt, Expect, ScanOutcome, ScannedSegment, Scanner, SegmentBytes, Stop, TornTail, classify,
};
pub use shard::{CutPoint, ShardRecovery};
pub use summary::{BadCommit, ScanSummary};
