//! Recovery: scan each shard's segments and classify where its valid log
//! ends ([`scan`], written as a table of cases; [`shard`] streams a
//! directory through it and carries out a cut), and decide the consistent
//! cut across shards ([`plan`], pure).

#[cfg(test)]
mod chunked_scan_tests;
pub mod plan;
pub mod scan;
pub mod shard;
pub mod summary;

pub use scan::{
    Corrupt, Expect, ScanOutcome, ScannedSegment, Scanner, SegmentBytes, Stop, TornTail, classify,
};
pub use shard::{CutPoint, ScanOptions, Scanned, ShardCut, ShardRecovery, SkippedSegment};
pub use summary::{BadCommit, ScanSummary};
