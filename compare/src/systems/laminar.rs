//! laminar-storage 0.18.11's per-core WAL (the last line of releases that
//! has it: 0.18.12 and later removed `per_core_wal`). Each thread owns a
//! `CoreWalWriter` on `wal-{core}.log`, the file `PerCoreWalConfig` names
//! for that core. `PerCoreWalManager` only holds the writers in one `Vec`
//! behind `&mut self`, so two threads cannot each use theirs through it;
//! the writer is the per-core object its docs describe ("lock-free, no
//! cross-core sync"). Records are `append_put(key = [], value = payload)`;
//! a durable point is `CoreWalWriter::sync()`.
//!
//! What `sync()` does (checked in `src/per_core_wal/writer.rs`): flush the
//! 64 KiB `BufWriter`, then `File::sync_data` (fdatasync). The directory is
//! never fsynced after the segment file is created.

use std::path::Path;
use std::time::Instant;

use laminar_storage::per_core_wal::{
    CoreWalWriter, PerCoreWalConfig, PerCoreWalReader, WalOperation,
};

use crate::system::{Gate, Res, Role, Sink, System, ThreadOutcome, ctx, drive};
use crate::workload::{Verifier, WriteSpec};

/// The laminar-storage per-core WAL.
pub struct Laminar;

fn path(dir: &Path, thread: usize) -> std::path::PathBuf {
    PerCoreWalConfig::new(dir, thread + 1).segment_path(thread)
}

struct LaminarSink {
    w: CoreWalWriter,
}

impl Sink for LaminarSink {
    fn append(&mut self, payload: &[u8]) -> Res<()> {
        self.w.append_put(&[], payload).map_err(ctx("append_put"))?;
        Ok(())
    }

    fn durable(&mut self) -> Res<()> {
        self.w.sync().map_err(ctx("sync"))
    }
}

fn create(dir: &Path, thread: usize) -> Res<CoreWalWriter> {
    CoreWalWriter::new(thread, &path(dir, thread)).map_err(ctx("CoreWalWriter::new"))
}

impl System for Laminar {
    fn name(&self) -> &'static str {
        "laminar"
    }

    fn role(&self) -> Role {
        Role::Peer
    }

    fn sync_note(&self) -> &'static str {
        "CoreWalWriter::sync: BufWriter flush + File::sync_data (fdatasync); no directory fsync after creating the file (src/per_core_wal/writer.rs)"
    }

    fn run_write(
        &self,
        spec: &WriteSpec,
        dir: &Path,
        thread: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome> {
        let mut sink = LaminarSink {
            w: create(dir, thread)?,
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
        let r = PerCoreWalReader::open(thread, &path(dir, thread))
            .map_err(ctx("PerCoreWalReader::open"))?;
        let opened = t0.elapsed();
        // The reader's iterator ends at EOF and turns a torn write, a CRC
        // mismatch or corruption into an error.
        for e in r {
            let e = e.map_err(|e| format!("record {}: {e}", v.next))?;
            match &e.operation {
                WalOperation::Put { value, .. } => v.check(value)?,
                other => return Err(format!("unexpected entry {other:?}")),
            }
        }
        let elapsed = t0.elapsed();
        let n = v.finish(records)?;
        Ok(ThreadOutcome {
            open: Some(opened),
            ..ThreadOutcome::timed(n, n * payload_bytes as u64, elapsed)
        })
    }

    fn run_open(&self, dir: &Path, thread: usize, start: &Gate) -> Res<ThreadOutcome> {
        crate::system::drive_open(
            thread,
            start,
            || create(dir, thread),
            |w, p| w.append_put(&[], p).map(|_| ()).map_err(ctx("append_put")),
            |mut w| w.sync().map_err(ctx("sync")),
        )
    }
}
