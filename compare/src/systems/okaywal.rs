//! okaywal 0.3, one `WriteAheadLog` per thread, as its crate docs show: a
//! durable point is one entry (`begin_entry`, a chunk per record,
//! `commit`). `commit` flushes the entry and calls `File::sync_data`
//! (fdatasync) on the segment, batching concurrent committers into one
//! call, and fsyncs the directory after a new segment file was created
//! (`WriteAheadLog::reclaim` → `LogFile::synchronize_locked` in
//! `src/log_file.rs`, `sync_directory` in `src/lib.rs`). New segments are
//! zero-filled to `preallocate_bytes` (1 MiB).
//!
//! Default `Configuration`, except in `buffered`: there
//! `checkpoint_after_bytes` is `u64::MAX`. Otherwise the background
//! checkpointer hands the committed segment to the `LogManager` right after
//! the commit and recycles it, and the `recover` pass, which reopens that
//! log, would find nothing to replay. During the write this changes nothing
//! (okaywal only checks the size after a commit, and `buffered` commits
//! once); it skips one 1 MiB segment activation after the final commit.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use okaywal::{
    Configuration, Entry, EntryId, LogManager, ReadChunkResult, SegmentReader, WriteAheadLog,
};

use crate::system::{Gate, Res, Role, Sink, System, ThreadOutcome, ctx, drive};
use crate::workload::{Verifier, WorkloadKind, WriteSpec};

/// The okaywal system.
pub struct OkayWal;

/// A `LogManager` that keeps nothing elsewhere (the benchmark's state is
/// the log) and, on recovery, verifies every chunk it is given.
#[derive(Debug)]
struct Manager {
    verify: Option<Arc<Mutex<RecoverState>>>,
}

#[derive(Debug)]
struct RecoverState {
    v: Verifier,
    buf: Vec<u8>,
    error: Option<String>,
}

impl LogManager for Manager {
    fn recover(&mut self, entry: &mut Entry<'_>) -> std::io::Result<()> {
        let Some(state) = &self.verify else {
            return Ok(());
        };
        let mut st = state.lock().expect("recover state");
        let st = &mut *st;
        loop {
            match entry.read_chunk()? {
                ReadChunkResult::Chunk(mut chunk) => {
                    st.buf.clear();
                    chunk.read_to_end(&mut st.buf)?;
                    if !chunk.check_crc()? {
                        st.error
                            .get_or_insert(format!("record {}: CRC mismatch", st.v.next));
                    } else if let Err(e) = st.v.check(&st.buf) {
                        st.error.get_or_insert(e);
                    }
                }
                ReadChunkResult::EndOfEntry | ReadChunkResult::AbortedEntry => return Ok(()),
            }
        }
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: EntryId,
        _checkpointed_entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

fn config(dir: &Path, kind: Option<WorkloadKind>) -> Configuration {
    let cfg = Configuration::default_for(dir);
    if kind == Some(WorkloadKind::Buffered) {
        cfg.checkpoint_after_bytes(u64::MAX)
    } else {
        cfg
    }
}

struct OkaySink<'a> {
    wal: &'a WriteAheadLog,
    entry: Option<okaywal::EntryWriter<'a>>,
}

impl Sink for OkaySink<'_> {
    fn append(&mut self, payload: &[u8]) -> Res<()> {
        if self.entry.is_none() {
            self.entry = Some(self.wal.begin_entry().map_err(ctx("begin_entry"))?);
        }
        let entry = self.entry.as_mut().expect("entry just begun");
        entry.write_chunk(payload).map_err(ctx("write_chunk"))?;
        Ok(())
    }

    fn durable(&mut self) -> Res<()> {
        if let Some(entry) = self.entry.take() {
            entry.commit().map_err(ctx("commit"))?;
        }
        Ok(())
    }
}

impl System for OkayWal {
    fn name(&self) -> &'static str {
        "okaywal"
    }

    fn role(&self) -> Role {
        Role::Peer
    }

    fn sync_note(&self) -> &'static str {
        "EntryWriter::commit: flush + File::sync_data (fdatasync) of the segment, shared by concurrent committers, plus a directory fsync after a new segment (src/log_file.rs synchronize_locked, src/lib.rs reclaim/sync_directory)"
    }

    fn run_write(
        &self,
        spec: &WriteSpec,
        dir: &Path,
        thread: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome> {
        let wal = config(dir, Some(spec.kind))
            .open(Manager { verify: None })
            .map_err(ctx("okaywal open"))?;
        let out = {
            let mut sink = OkaySink {
                wal: &wal,
                entry: None,
            };
            drive(spec, thread, start, &mut sink)?
        };
        wal.shutdown().map_err(ctx("okaywal shutdown"))?;
        Ok(out)
    }

    fn run_recover(
        &self,
        dir: &Path,
        thread: usize,
        records: u64,
        payload_bytes: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome> {
        let state = Arc::new(Mutex::new(RecoverState {
            v: Verifier::new(thread, payload_bytes),
            buf: Vec::with_capacity(payload_bytes),
            error: None,
        }));
        start.wait();
        let t0 = Instant::now();
        // okaywal replays every entry not yet checkpointed inside open.
        let wal = config(dir, Some(WorkloadKind::Buffered))
            .open(Manager {
                verify: Some(state.clone()),
            })
            .map_err(ctx("okaywal recover"))?;
        let elapsed = t0.elapsed();
        wal.shutdown().map_err(ctx("okaywal shutdown"))?;
        let st = state.lock().expect("recover state");
        if let Some(e) = &st.error {
            return Err(e.clone());
        }
        let n = st.v.finish(records)?;
        Ok(ThreadOutcome {
            open: Some(elapsed),
            ..ThreadOutcome::timed(n, n * payload_bytes as u64, elapsed)
        })
    }

    fn run_open(&self, dir: &Path, thread: usize, start: &Gate) -> Res<ThreadOutcome> {
        // The first append is the first chunk of an entry; the commit that
        // makes it durable runs after the clock stops, as in the other systems.
        let mut buf = vec![0u8; crate::workload::SMALL];
        crate::workload::fill(&mut buf, thread, 0);
        start.wait();
        let t0 = Instant::now();
        let wal = config(dir, None)
            .open(Manager { verify: None })
            .map_err(ctx("okaywal open"))?;
        let mut e = wal.begin_entry().map_err(ctx("begin_entry"))?;
        e.write_chunk(&buf).map_err(ctx("write_chunk"))?;
        let elapsed = t0.elapsed();
        e.commit().map_err(ctx("commit"))?;
        wal.shutdown().map_err(ctx("okaywal shutdown"))?;
        Ok(ThreadOutcome {
            open: Some(elapsed),
            ..ThreadOutcome::timed(1, buf.len() as u64, elapsed)
        })
    }
}
