//! Shard configuration and fsync policies.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::{BLOCK, MAX_RECORD_HARD, frame::frame_len, segment_header};

/// When the shard makes appended records durable on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Group commit: every append is made durable as soon as possible; the
    /// appends made while one fdatasync is in flight share the next one.
    EveryAppend,
    /// At most this long after an append, it is made durable.
    Interval(Duration),
    /// Only at epoch barriers (and explicit `sync`/`close`). The default.
    #[default]
    PerEpoch,
    /// Only on explicit `sync`/`close` (for tests and benchmarks).
    Never,
}

/// How the next segment file is prepared before it is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentPrepare {
    /// Write zeros over the whole file and fsync it, so that later data
    /// writes never change file metadata and each fdatasync flushes data only.
    #[default]
    ZeroFill,
    /// Reserve the blocks with fallocate (unwritten extents: the first write
    /// to each needs a metadata update in the next fdatasync), set the
    /// file's length to the segment size, and fsync it.
    Fallocate,
    /// Create the file and nothing else.
    Create,
}

/// Configuration of one shard's writer.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Capacity of a segment file in bytes (a multiple of 4 KiB). Default 64 MiB.
    pub segment_size: u64,
    /// Size of each write buffer (a multiple of 4 KiB). Default 1 MiB.
    pub buffer_size: usize,
    /// How many buffers may be in flight to the device at once. Default 4.
    pub write_behind: usize,
    /// Largest payload accepted, at most 64 MiB. Default 1 MiB.
    pub max_record_size: usize,
    /// When records become durable without an explicit `sync`.
    pub fsync: FsyncPolicy,
    /// How the next segment is prepared.
    pub prepare: SegmentPrepare,
    /// Repair on open: mid-log corruption, normally refused with
    /// `Error::Corruption`, is instead cut off like a torn tail: the
    /// damaged record and everything after it are dropped, and the drop is
    /// reported in `ShardRecovery::repaired`. Acknowledged records after
    /// the damage are lost, so this is for an operator's explicit choice.
    /// Default false.
    pub repair: bool,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            segment_size: 64 << 20,
            buffer_size: 1 << 20,
            write_behind: 4,
            max_record_size: 1 << 20,
            fsync: FsyncPolicy::PerEpoch,
            prepare: SegmentPrepare::ZeroFill,
            repair: false,
        }
    }
}

impl ShardConfig {
    /// Check the invariants between the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !self.segment_size.is_multiple_of(BLOCK as u64)
            || !(segment_header::MIN_SEGMENT_SIZE..=segment_header::MAX_SEGMENT_SIZE)
                .contains(&self.segment_size)
        {
            return bad(format!(
                "segment_size {} must be a multiple of {BLOCK} between {} and {}",
                self.segment_size,
                segment_header::MIN_SEGMENT_SIZE,
                segment_header::MAX_SEGMENT_SIZE
            ));
        }
        if self.buffer_size == 0 || !self.buffer_size.is_multiple_of(BLOCK) {
            return bad(format!(
                "buffer_size {} must be a non-zero multiple of {BLOCK}",
                self.buffer_size
            ));
        }
        if self.write_behind == 0 || self.write_behind > 64 {
            return bad(format!(
                "write_behind {} must be in 1..=64",
                self.write_behind
            ));
        }
        if self.max_record_size > MAX_RECORD_HARD {
            return bad(format!(
                "max_record_size {} exceeds the hard bound {MAX_RECORD_HARD}",
                self.max_record_size
            ));
        }
        let frame = frame_len(self.max_record_size) as u64;
        if frame > self.segment_size - segment_header::RECORDS_START as u64 {
            return bad("max_record_size does not fit in a segment".into());
        }
        if frame > (self.buffer_size * self.write_behind) as u64 {
            return bad("max_record_size must fit in buffer_size * write_behind".into());
        }
        if let FsyncPolicy::Interval(d) = self.fsync
            && d.is_zero()
        {
            return bad("fsync interval must be non-zero".into());
        }
        Ok(())
    }
}
