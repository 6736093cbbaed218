//! ironwal 0.6, one `Wal` per thread (its own root directory), stream
//! `"bench"`, default `WalOptions` (`SyncMode::Strict`, 64 MiB segments, no
//! compression). ironwal has no public "sync" call: durability comes with
//! the write. A durable point is therefore one write of the records since
//! the previous one: `append_batch` of the group's records (a `TxnWriter`
//! holds them until then; its `commit` is `append_batch`), and `append` in
//! `sync`, where every record is its own durable point.
//!
//! What the write's sync does (checked in the source): `append_batch` ends
//! with `ActiveSegment::flush` = `BufWriter::flush` + `File::sync_data`
//! (fdatasync, `src/segment.rs`); under `Strict` a rotated segment is
//! fdatasynced when the write cache evicts it (`FlushOnEvict`), and the
//! segment index and head file are written with `sync_all` + a directory
//! fsync (`src/index.rs`, `src/state.rs`).
//!
//! Why not `SyncMode::BatchOnly` with `append` + one final `append_batch`:
//! under `BatchOnly` an evicted (rotated) segment is only flushed to the
//! OS, not fdatasynced (`FlushOnEvict::on_evict`), so a final batch would
//! leave every earlier segment of a `buffered` run not durable; and
//! `append` issues one `write(2)` per record there.

use std::path::Path;
use std::time::Instant;

use ironwal::{Wal, WalOptions};

use crate::system::{Gate, Res, Role, Sink, System, ThreadOutcome, ctx, drive};
use crate::workload::{Verifier, WriteSpec};

const STREAM: &str = "bench";

/// The ironwal system.
pub struct IronWal;

fn open(dir: &Path) -> Res<Wal> {
    Wal::new(WalOptions::new(dir)).map_err(ctx("ironwal open"))
}

struct IronSink {
    wal: Wal,
    /// Every record is its own durable point (the `sync` workload).
    each: bool,
    txn: Option<ironwal::TxnWriter>,
}

impl Sink for IronSink {
    fn append(&mut self, payload: &[u8]) -> Res<()> {
        if self.each {
            self.wal.append(STREAM, payload).map_err(ctx("append"))?;
            return Ok(());
        }
        self.txn
            .get_or_insert_with(|| self.wal.writer(STREAM))
            .add(payload);
        Ok(())
    }

    fn durable(&mut self) -> Res<()> {
        if let Some(txn) = self.txn.take() {
            txn.commit().map_err(ctx("TxnWriter::commit"))?;
        }
        Ok(())
    }
}

impl System for IronWal {
    fn name(&self) -> &'static str {
        "ironwal"
    }

    fn role(&self) -> Role {
        Role::Peer
    }

    fn sync_note(&self) -> &'static str {
        "no sync call: under the default SyncMode::Strict each append / append_batch ends with BufWriter flush + File::sync_data (fdatasync); rotated segments are fdatasynced on eviction (src/segment.rs flush, src/wal/mod.rs write_batch/FlushOnEvict). BatchOnly is not durable across segment rotation"
    }

    fn run_write(
        &self,
        spec: &WriteSpec,
        dir: &Path,
        thread: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome> {
        let mut sink = IronSink {
            wal: open(dir)?,
            each: spec.group == 1,
            txn: None,
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
        // Opening scans each stream's segments (and truncates a torn tail).
        let wal = open(dir)?;
        let opened = t0.elapsed();
        for e in wal.iter(STREAM, 0).map_err(ctx("iter"))? {
            let e = e.map_err(|e| format!("record {}: {e}", v.next))?;
            v.check(&e)?;
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
            || open(dir),
            |wal, p| wal.append(STREAM, p).map(|_| ()).map_err(ctx("append")),
            |_| Ok(()),
        )
    }
}
