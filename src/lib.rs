//! # shardwal
//!
//! A thread-per-core, sharded write-ahead log for stream processors. Each
//! pinned core owns one shard: its own segment files, writer, dense sequence
//! numbers and epoch. Nothing on the append path is shared between shards.
//!
//! See `ARCHITECTURE.md` for the code map and `docs/FORMAT.md` for the bytes.

#![warn(missing_docs)]

pub mod archive;
pub mod checkpoint;
pub mod config;
pub mod control;
pub mod coordinator;
pub mod error;
pub mod format;
pub mod ids;
pub mod io;
pub mod layout;
pub mod lock;
pub mod log_dir;
pub mod merged;
pub mod meta_file;
pub mod metrics;
pub mod reader;
pub mod recovery;
mod reply;
pub mod rng;
pub mod runtime;
pub mod segment;
pub mod writer;

pub use archive::{ArchiveConfig, ArchiveTicket, RestoreOptions, RestoreReport, restore};
pub use checkpoint::{CommitRecord, Manifest, SourceOffset};
pub use config::{FsyncPolicy, SegmentPrepare, ShardConfig};
pub use control::{BarrierRequest, ControlEvent};
pub use coordinator::{
    CheckpointInfo, CheckpointTicket, Coordinator, CoordinatorConfig, EpochTicket,
};
pub use error::{Error, Result};
pub use format::frame::RecordKind;
pub use ids::{CheckpointId, Epoch, Lsn, Seq, ShardId};
pub use io::dma::DmaStorage;
pub use io::read_only::ReadOnlyStorage;
pub use io::sim::SimStorage;
pub use io::std_fs::StdStorage;
pub use io::{Storage, StorageFile};
pub use layout::Layout;
pub use merged::MergedReader;
pub use metrics::{LatencySummary, RecoveryFigures, RuntimeMetrics, ShardMetrics};
pub use reader::{Record, ShardReader};
pub use recovery::ShardRecovery;
pub use runtime::{
    RecoveryReport, Replay, ReplayCounts, ReplayPlan, ReplaySource, Runtime, RuntimeConfig,
    ShardContext, SnapshotWriter,
};
pub use writer::{BatchLsns, ShardLog, WriterStats};
