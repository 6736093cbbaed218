//! The crate's typed error. Every variant carries the context an operator
//! needs at 3 a.m.: operation, path, shard, segment, offset.

use std::io;
use std::path::PathBuf;

use crate::ids::{Seq, ShardId};

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in shardwal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("{op} failed on {path}: {source}")]
    Io {
        /// What was being done (e.g. "write", "fdatasync").
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A write completed with fewer bytes than requested.
    #[error("short write on {path} at offset {offset}: wrote {written} of {expected} bytes")]
    ShortWrite {
        /// The segment file.
        path: PathBuf,
        /// File offset of the write.
        offset: u64,
        /// Bytes actually written.
        written: usize,
        /// Bytes requested.
        expected: usize,
    },
    /// An earlier write or fsync failed; the shard refuses all further work
    /// (fail-stop). Reopen the log to recover what is durable.
    #[error("{shard} is poisoned by an earlier failure: {cause}")]
    Poisoned {
        /// The poisoned shard.
        shard: ShardId,
        /// Description of the first failure.
        cause: String,
    },
    /// A record in the middle of the log failed verification.
    #[error("corruption in {shard}, segment {segment}, offset {offset}: {detail}")]
    Corruption {
        /// The shard whose log is corrupt.
        shard: ShardId,
        /// Segment file name.
        segment: PathBuf,
        /// Byte offset of the bad frame within the segment file.
        offset: u64,
        /// What check failed (CRC mismatch with expected/actual, sequence gap, ...).
        detail: String,
    },
    /// A record is larger than the configured maximum.
    #[error("record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// Payload length.
        len: usize,
        /// Configured maximum payload length.
        max: usize,
    },
    /// The write-behind buffers are all in flight; await `append` instead of
    /// `try_append`, or sync more often.
    #[error("write-behind buffers are full")]
    Backpressure,
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The log directory is not a shardwal log, or belongs to another format version.
    #[error("{path} is not a usable shardwal log: {detail}")]
    NotALog {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The log directory is locked by another owner.
    #[error("log directory {path} is locked by another owner")]
    Locked {
        /// The locked directory.
        path: PathBuf,
    },
    /// The shard has been closed.
    #[error("{shard} is closed")]
    Closed {
        /// The closed shard.
        shard: ShardId,
    },
    /// A shard failed an epoch barrier or checkpoint (it is poisoned, gone,
    /// or its engine returned an error).
    #[error("{shard} failed {what}: {cause}")]
    ShardFailed {
        /// The failing shard.
        shard: ShardId,
        /// What it failed ("barrier of epoch 7", "checkpoint 3").
        what: String,
        /// Why.
        cause: String,
    },
    /// A shard did not do what it was asked within the time allowed (answer
    /// a barrier, stop at shutdown). Its engine code may be stuck.
    #[error("{shard} did not answer {waiting_for} within {waited:?}")]
    ShardStuck {
        /// The shard.
        shard: ShardId,
        /// What it was asked ("the barrier of epoch 7", "shutdown").
        waiting_for: String,
        /// How long it was waited for.
        waited: std::time::Duration,
    },
    /// The runtime has shut down (or its coordinator is gone).
    #[error("the runtime has shut down")]
    ShutDown,
    /// A wait timed out.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A sequence number was requested that the log does not hold.
    #[error("{shard} holds no record {seq}")]
    NoSuchRecord {
        /// The shard.
        shard: ShardId,
        /// The missing sequence number.
        seq: Seq,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True for the fail-stop state.
    pub fn is_poisoned(&self) -> bool {
        matches!(self, Error::Poisoned { .. })
    }

    /// True if the error reports mid-log corruption.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}
