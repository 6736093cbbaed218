//! Checkpoints: the rkyv payloads of commit records and checkpoint markers,
//! per-shard snapshot files, and the coordinator's checkpoint manifests.

pub mod manifest;
pub mod payloads;
pub mod snapshot;

pub use manifest::{Manifest, ShardCheckpoint};
pub use payloads::{CheckpointMarker, CommitRecord, SnapshotRef, SourceOffset};
