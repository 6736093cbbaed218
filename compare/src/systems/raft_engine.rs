//! raft-engine 0.4, one `Engine` per thread (its own directory), default
//! `Config` (so LZ4 compression of batches above 8 KiB, log recycling,
//! 4 recovery threads). Records are raft-log entries of region 1:
//! protobuf `BytesValue`s whose raft index is one more than the record's
//! sequence number (the payload's first 8 bytes). Records are written in `LogBatch`es
//! of at most [`BATCH`] entries; a durable point writes the pending batch
//! with `sync = true`.
//!
//! What `sync = true` does (checked in the source): `Engine::write`'s write
//! group leader appends the batches of the group, then calls
//! `FilePipeLog::sync` → `LogFileWriter::sync` → `LogFd::sync`, which is
//! `nix::unistd::fdatasync` on Linux (`src/env/log_fd/unix.rs`). A sync
//! failure panics (`expect("pipe::sync()")`). A rotation truncates and
//! fdatasyncs the old file and fsyncs the directory (`rotate_imp`).
//!
//! `Engine::sync()` is NOT a durable point in 0.4.2: it calls
//! `write(&mut LogBatch::default(), true)`, and `write` returns `Ok(0)` on
//! an empty batch before reaching the fdatasync (`src/engine.rs`). Only a
//! non-empty `write(batch, true)` syncs, so the sink keeps each group's last
//! records for that write.

use std::path::Path;
use std::time::Instant;

use protobuf::well_known_types::BytesValue;
use raft_engine::{Config, Engine, LogBatch, MessageExt};

use crate::system::{Gate, Res, Role, Sink, System, ThreadOutcome, ctx, drive};
use crate::workload::{Verifier, WriteSpec, seq_of};

/// Entries per `LogBatch` between durable points (buffered and large).
pub const BATCH: usize = 64;
/// The raft group every thread writes (each thread has its own engine).
const REGION: u64 = 1;
/// Entries fetched per `fetch_entries_to` call in the recover pass.
const FETCH: u64 = 4096;

/// The raft-engine system.
pub struct RaftEngine;

/// Our raft entries: `BytesValue` payloads, indexed by their sequence number + 1.
#[derive(Clone)]
struct Records;

impl MessageExt for Records {
    type Entry = BytesValue;
    fn index(e: &BytesValue) -> u64 {
        seq_of(&e.value).map_or(0, |s| s + 1)
    }
}

fn open(dir: &Path) -> Res<Engine> {
    let cfg = Config {
        dir: dir.to_string_lossy().into_owned(),
        ..Config::default()
    };
    Engine::open(cfg).map_err(ctx("raft-engine open"))
}

struct RaftSink {
    engine: Engine,
    batch: LogBatch,
    pending: Vec<BytesValue>,
}

impl RaftSink {
    fn write(&mut self, sync: bool) -> Res<()> {
        if !self.pending.is_empty() {
            self.batch
                .add_entries::<Records>(REGION, &self.pending)
                .map_err(ctx("add_entries"))?;
            self.pending.clear();
        }
        if self.batch.is_empty() {
            // Nothing to write. (`Engine::sync()` would not help: it writes an
            // empty batch, and `Engine::write` returns early on an empty batch
            // without any fdatasync. The sink never gets here with `sync`, as
            // it keeps the last records of a group for the durable write.)
            return Ok(());
        }
        self.engine
            .write(&mut self.batch, sync)
            .map_err(ctx("Engine::write"))?;
        Ok(())
    }
}

impl Sink for RaftSink {
    fn append(&mut self, payload: &[u8]) -> Res<()> {
        // A full batch is written (without sync) only when the next record
        // comes, so the durable point always has records to write with sync.
        if self.pending.len() >= BATCH {
            self.write(false)?;
        }
        let mut e = BytesValue::new();
        e.value = payload.to_vec();
        self.pending.push(e);
        Ok(())
    }

    fn durable(&mut self) -> Res<()> {
        self.write(true)
    }
}

impl System for RaftEngine {
    fn name(&self) -> &'static str {
        "raft-engine"
    }

    fn role(&self) -> Role {
        Role::Peer
    }

    fn sync_note(&self) -> &'static str {
        "Engine::write(batch, sync=true): the write-group leader appends (pwrite), then FilePipeLog::sync -> LogFd::sync = fdatasync on Linux (src/env/log_fd/unix.rs); panics if it fails. Engine::sync() does nothing (an empty batch returns before the sync, src/engine.rs)"
    }

    fn run_write(
        &self,
        spec: &WriteSpec,
        dir: &Path,
        thread: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome> {
        let mut sink = RaftSink {
            engine: open(dir)?,
            batch: LogBatch::default(),
            pending: Vec::with_capacity(BATCH),
        };
        drive(spec, thread, start, &mut sink)
    }

    fn run_recover(
        &self,
        dir: &Path,
        thread: usize,
        records: u64,
        payload_bytes: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome> {
        let mut v = Verifier::new(thread, payload_bytes);
        start.wait();
        let t0 = Instant::now();
        // Opening replays every log file into the memtables (the index).
        let engine = open(dir)?;
        let opened = t0.elapsed();
        let first = engine.first_index(REGION).unwrap_or(1);
        let last = engine.last_index(REGION).unwrap_or(0);
        let mut entries = Vec::with_capacity(FETCH as usize);
        let mut i = first;
        while i <= last {
            let end = (i + FETCH).min(last + 1);
            entries.clear();
            engine
                .fetch_entries_to::<Records>(REGION, i, end, None, &mut entries)
                .map_err(ctx("fetch_entries_to"))?;
            for e in &entries {
                v.check(&e.value)?;
            }
            i = end;
        }
        let elapsed = t0.elapsed();
        let n = v.finish(records)?;
        Ok(ThreadOutcome {
            open: Some(opened),
            ..ThreadOutcome::timed(n, n * payload_bytes as u64, elapsed)
        })
    }

    fn run_open(&self, dir: &Path, thread: usize, start: &Gate) -> Res<ThreadOutcome> {
        let mut buf = vec![0u8; crate::workload::SMALL];
        crate::workload::fill(&mut buf, thread, 0);
        start.wait();
        let t0 = Instant::now();
        let engine = open(dir)?;
        let mut e = BytesValue::new();
        e.value = buf.clone();
        let mut batch = LogBatch::default();
        batch
            .add_entries::<Records>(REGION, &[e])
            .map_err(ctx("add_entries"))?;
        engine
            .write(&mut batch, false)
            .map_err(ctx("Engine::write"))?;
        let elapsed = t0.elapsed();
        Ok(ThreadOutcome {
            open: Some(elapsed),
            ..ThreadOutcome::timed(1, buf.len() as u64, elapsed)
        })
    }
}
