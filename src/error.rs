//! The crate's typed error. Every variant carries the context an operator
//! needs at 3 a.m.: operation, path, shard, segment, offset, and for
//! corruption the check that failed with the values it compared
//! ([`CorruptionCause`]).
//!
//! The causes of the format's own decoders live beside them in `format/`
//! ([`FrameFault`], [`HeaderFault`]); the ones here are those that need
//! more than one structure's bytes to state (a sequence gap, a vouched-for
//! stop) and those of the checkpoint files. This module imports only `ids`
//! and `format`.

use std::io;
use std::path::PathBuf;

use crate::format::frame::FrameFault;
use crate::format::segment_header::HeaderFault;
use crate::ids::{CheckpointId, Epoch, Seq, ShardId};

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
    /// A record in the middle of the log (or a snapshot file) failed
    /// verification.
    #[error("corruption in {shard}, segment {segment}, offset {offset}: {cause}")]
    Corruption {
        /// The shard whose log is corrupt.
        shard: ShardId,
        /// Segment file name (or snapshot file name).
        segment: PathBuf,
        /// Byte offset of the bad frame within the segment file.
        offset: u64,
        /// What check failed, with the values it compared.
        cause: CorruptionCause,
    },
    /// A typed payload (commit record, checkpoint marker, manifest, layout,
    /// or an engine's own rkyv value) could not be serialized or validated.
    #[error(transparent)]
    Payload(#[from] PayloadError),
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
    /// The log directory is locked by another owner: its lock was still
    /// held after a few short retries (31 ms in all; see `lock.rs`).
    #[error("log directory {path} is locked by another owner")]
    Locked {
        /// The locked directory.
        path: PathBuf,
    },
    /// A number space of the shard's log is used up: sequence numbers,
    /// epochs or segment indexes (2^64 of them, so only a log whose files
    /// claim numbers near the limit gets here).
    #[error("{shard} has used up its {what}")]
    Exhausted {
        /// The shard.
        shard: ShardId,
        /// Which numbers: "sequence numbers", "epochs", "segment indexes".
        what: &'static str,
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
    /// The coordinator failed for a reason no single shard stands for.
    #[error("the coordinator failed: {cause}")]
    Coordinator {
        /// Why.
        cause: String,
    },
    /// The runtime has shut down (or its coordinator is gone).
    #[error("the runtime has shut down")]
    ShutDown,
    /// The object-store archive: an object missing, damaged or refused, or
    /// the archiver stopped (`object` is empty when no one object is at
    /// fault).
    #[error("archive: {object}: {cause}")]
    Archive {
        /// The object concerned (its full path in the store).
        object: String,
        /// What is wrong with it.
        cause: String,
    },
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

/// Why bytes in the log (or a snapshot) are not what was written: the check
/// that failed, with the values it compared. `Display` gives one line for
/// an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptionCause {
    /// A frame failed its own checks (length, kind, padding, CRC, ...).
    #[error(transparent)]
    Frame(#[from] FrameFault),
    /// A frame that was written whole (in a segment zeroed before use,
    /// every sector it spans holds some of its bytes) fails its checks:
    /// its bytes were damaged after they landed, not torn by a crash.
    #[error("{0}, in a frame that was written whole: damaged, not torn")]
    LandedFrameDamaged(FrameFault),
    /// A valid frame, but not the sequence number expected there.
    #[error("sequence gap: expected {expected}, found {found}")]
    SeqGap {
        /// The sequence number expected.
        expected: Seq,
        /// The one found.
        found: Seq,
    },
    /// A valid frame whose epoch is below the epoch the log had reached.
    #[error("epoch went backwards: {seq} has {epoch} after {floor}")]
    EpochBackwards {
        /// The frame's sequence number.
        seq: Seq,
        /// Its epoch.
        epoch: Epoch,
        /// The epoch the log had reached before it.
        floor: Epoch,
    },
    /// A zeroed frame header with non-zero bytes after it in the segment.
    #[error("zeroed frame header followed by data")]
    ZeroedHeaderBeforeData,
    /// A segment ends cleanly, but the next segment of the same shard
    /// starts at another sequence number.
    #[error("the next segment does not continue this one (it starts at {found}, not {expected})")]
    SegmentDoesNotContinue {
        /// The sequence number after this segment's last record.
        expected: Seq,
        /// The next segment's first sequence number.
        found: Seq,
    },
    /// A segment's header names a first sequence number other than the
    /// one the previous segment ends at.
    #[error("segment starts at {found} but {expected} was expected")]
    SegmentStartsElsewhere {
        /// The sequence number expected.
        expected: Seq,
        /// The header's first sequence number.
        found: Seq,
    },
    /// The segment header is all zeros (a segment prepared, never written).
    #[error("blank segment header")]
    BlankSegmentHeader,
    /// The segment header fails its checks (it may also be cut short).
    #[error(transparent)]
    SegmentHeader(HeaderFault),
    /// A segment header that passes its own checks (CRC included) but names
    /// another log id than `LOG_ID`'s: a segment written under another
    /// log's identity. Never a torn tail and never repaired: recovery
    /// refuses the shard and leaves the file as it is (with
    /// `ShardConfig::repair` too), since deleting it could lose records
    /// that were acknowledged under that id.
    #[error(
        "segment belongs to another log: its header names log id {}, LOG_ID holds {}; \
         refusing to open the shard (the segment is left untouched)",
        hex_id(.found),
        hex_id(.expected)
    )]
    ForeignLogId {
        /// The log id in the segment's header.
        found: [u8; 16],
        /// The log id in `LOG_ID`.
        expected: [u8; 16],
    },
    /// A well-formed segment header of another shard.
    #[error("segment belongs to {found}, not {expected}")]
    WrongShard {
        /// The shard the header names.
        found: ShardId,
        /// The shard being read.
        expected: ShardId,
    },
    /// A segment header whose index is not its file name's.
    #[error("header index {header} does not match file name index {file}")]
    IndexMismatch {
        /// The index in the header.
        header: u64,
        /// The index in the file name.
        file: u64,
    },
    /// A complete segment header that fails its checks: media damage,
    /// since a crash leaves a header blank or whole.
    #[error("damaged segment header: {0} (a crash leaves a header blank or whole)")]
    DamagedSegmentHeader(HeaderFault),
    /// A segment flagged `SIZED` (its length was set to its size and made
    /// durable before its first write) whose file is shorter than that
    /// size: no crash shortens such a file, so bytes were lost after they
    /// were written (the file was truncated). The error's offset is the
    /// first frame that is not wholly in the file.
    #[error(
        "segment file is {len} bytes, shorter than its size {size}: truncated \
         (its length was durable before its first write; a crash does not shorten it)"
    )]
    SegmentTruncated {
        /// The file's length.
        len: u64,
        /// The segment size its header names.
        size: u64,
    },
    /// The log ends before the replay position of the checkpoint recovery
    /// uses (or starts after it): records that were durable before the
    /// manifest was written are missing.
    #[error(
        "the log holds seq {}..{}, but {checkpoint} replays it from {replay_from}: records that were durable before the checkpoint are missing",
        .first.0,
        .next.0
    )]
    ShorterThanCheckpoint {
        /// The checkpoint whose manifest proves the records.
        checkpoint: CheckpointId,
        /// Its replay position for the shard.
        replay_from: Seq,
        /// The first sequence number the log holds.
        first: Seq,
        /// The sequence number after the last record the log holds.
        next: Seq,
    },
    /// The log stopped at `inner`, and a later valid frame says the record
    /// expected there was already durable: the bytes were once good.
    #[error("{inner} (later records show {expected_seq} was durable)")]
    Vouched {
        /// The sequence number expected at the stop.
        expected_seq: Seq,
        /// Why the stop.
        inner: Box<CorruptionCause>,
    },
    /// A record that passed its CRC but whose typed payload does not
    /// validate (a commit record the recovery needs).
    #[error("record {seq}: {error}")]
    InvalidPayload {
        /// The record's sequence number.
        seq: Seq,
        /// What the payload decoder said.
        error: PayloadError,
    },
    /// A snapshot file fails its checks.
    #[error(transparent)]
    Snapshot(#[from] SnapshotFault),
}

/// A log id as 32 lowercase hex digits.
fn hex_id(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a typed payload could not be serialized or validated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The bytes are not a valid archive of the type expected.
    #[error("invalid {what} payload: {reason}")]
    Invalid {
        /// What was being decoded ("commit", "manifest", ...).
        what: &'static str,
        /// The validator's message.
        reason: String,
    },
    /// The value could not be serialized.
    #[error("cannot serialize a {type_name} payload: {reason}")]
    Encode {
        /// The Rust type being serialized.
        type_name: &'static str,
        /// The serializer's message.
        reason: String,
    },
}

/// Why a snapshot file does not hold the snapshot its reference names
/// (the layout is documented in `checkpoint::snapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotFault {
    /// The reference names a length above the bound.
    #[error("snapshot length {len} out of bounds (at most {max})")]
    LengthOutOfBounds {
        /// The length in the reference.
        len: u64,
        /// The bound.
        max: u64,
    },
    /// The file is shorter than its header and the snapshot.
    #[error("snapshot file has {have} bytes, expected at least {want}")]
    Truncated {
        /// Bytes present (or read).
        have: u64,
        /// Bytes needed.
        want: u64,
    },
    /// The magic bytes are wrong.
    #[error("bad snapshot magic")]
    BadMagic,
    /// A version this code does not read.
    #[error("unsupported snapshot version {0}")]
    Version(u32),
    /// The header's CRC does not match its bytes.
    #[error("snapshot header CRC mismatch: stored {expected:#010x}, computed {actual:#010x}")]
    HeaderCrc {
        /// The CRC stored in the header.
        expected: u32,
        /// The CRC of the header's bytes.
        actual: u32,
    },
    /// The header names another shard, checkpoint or length than the
    /// manifest's reference.
    #[error(
        "snapshot header (shard {shard}, checkpoint {checkpoint}, {len} bytes) does not match the manifest"
    )]
    NotTheManifests {
        /// The shard in the header.
        shard: u32,
        /// The checkpoint in the header.
        checkpoint: u64,
        /// The length in the header.
        len: u64,
    },
    /// The snapshot bytes do not have the CRC recorded for them.
    #[error("snapshot CRC mismatch: expected {expected:#010x}, computed {actual:#010x}")]
    Crc {
        /// The CRC in the reference (or the header, where they differ).
        expected: u32,
        /// The CRC of the bytes.
        actual: u32,
    },
}
