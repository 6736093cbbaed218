//! shardwal, used as a new user who read the README would: one `ShardLog`
//! per thread on a glommio `LocalExecutor` pinned to that thread's core,
//! `DmaStorage`, `ShardConfig::default()` (no tuning of segment size,
//! buffers or segment preparation), `append().await`, and `sync().await` at
//! every durable point. With no barriers, the default `PerEpoch` policy
//! syncs only on `sync()` (and `close()`), like `Never`.

use std::path::Path;
use std::time::Instant;

use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use shardwal::{DmaStorage, RecordKind, ShardConfig, ShardId, ShardLog};

use crate::system::{Gate, Res, Role, System, ThreadOutcome, ctx, histogram};
use crate::workload::{Verifier, WriteSpec, fill};

/// glommio I/O memory per executor: the runtime's default (`ulimit -l` is small here).
const IO_MEMORY: usize = 1 << 20;

/// The shardwal system.
pub struct Shardwal {
    /// The CPU each thread's executor is pinned to.
    pub cpus: Vec<usize>,
}

impl Shardwal {
    fn executor(&self, thread: usize) -> Res<LocalExecutor> {
        let cpu = self.cpus[thread % self.cpus.len()];
        LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .io_memory(IO_MEMORY)
            .name("compare-shardwal")
            .make()
            .map_err(ctx("glommio executor"))
    }
}

async fn open(dir: &Path) -> Res<ShardLog<DmaStorage>> {
    ShardLog::open(DmaStorage, dir, ShardId(0), ShardConfig::default())
        .await
        .map_err(ctx("ShardLog::open"))
}

impl System for Shardwal {
    fn name(&self) -> &'static str {
        "shardwal"
    }

    fn role(&self) -> Role {
        Role::Subject
    }

    fn sync_note(&self) -> &'static str {
        "ShardLog::sync(): O_DIRECT writes of the buffered frames over io_uring, then fdatasync of the segment (src/writer/tasks.rs sync_task); segments are zero-filled and fsynced before use"
    }

    fn run_write(
        &self,
        spec: &WriteSpec,
        dir: &Path,
        thread: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome> {
        let ex = self.executor(thread)?;
        ex.run(async {
            let log = open(dir).await?;
            let mut buf = vec![0u8; spec.payload_bytes];
            let mut hist = spec.records_latency().then(histogram);
            start.wait();
            let t0 = Instant::now();
            let mut seq = 0;
            while seq < spec.records {
                let end = (seq + spec.group).min(spec.records);
                let g0 = Instant::now();
                while seq < end {
                    fill(&mut buf, thread, seq);
                    log.append(&buf).await.map_err(ctx("append"))?;
                    seq += 1;
                }
                log.sync().await.map_err(ctx("sync"))?;
                if let Some(h) = hist.as_mut() {
                    h.saturating_record(g0.elapsed().as_nanos() as u64);
                }
            }
            let elapsed = t0.elapsed();
            // Each durable point follows new appends, so it needs its own
            // fdatasync: fewer would mean a sync() that did not sync.
            let points = spec.records.div_ceil(spec.group);
            let syncs = log.stats().syncs;
            if syncs < points {
                return Err(format!(
                    "{points} durable points but only {syncs} fdatasyncs (WriterStats::syncs)"
                ));
            }
            log.close().await.map_err(ctx("close"))?;
            Ok(ThreadOutcome {
                latency_ns: hist,
                ..ThreadOutcome::timed(spec.records, spec.payload_total(), elapsed)
            })
        })
    }

    fn run_recover(
        &self,
        dir: &Path,
        thread: usize,
        records: u64,
        payload_bytes: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome> {
        let ex = self.executor(thread)?;
        ex.run(async {
            let mut v = Verifier::new(thread, payload_bytes);
            start.wait();
            let t0 = Instant::now();
            // One pass: reopening recovers the shard (scan, torn-tail cut)
            // and hands over every record as the scan reads it.
            let mut bad = None;
            let opened = ShardLog::open_replaying(
                DmaStorage,
                dir,
                ShardId(0),
                ShardConfig::default(),
                |rec| {
                    if rec.kind == RecordKind::Data
                        && let Err(e) = v.check(rec.payload)
                    {
                        bad = Some(e);
                        return Err(shardwal::Error::Config("payload check failed".into()));
                    }
                    Ok(())
                },
            )
            .await;
            if let Some(e) = bad {
                return Err(e);
            }
            let log = opened.map_err(ctx("ShardLog::open_replaying"))?;
            let elapsed = t0.elapsed();
            let opened = elapsed;
            log.close().await.map_err(ctx("close"))?;
            let n = v.finish(records)?;
            Ok(ThreadOutcome {
                open: Some(opened),
                ..ThreadOutcome::timed(n, n * payload_bytes as u64, elapsed)
            })
        })
    }

    fn run_open(&self, dir: &Path, thread: usize, start: &Gate) -> Res<ThreadOutcome> {
        let ex = self.executor(thread)?;
        ex.run(async {
            let mut buf = vec![0u8; crate::workload::SMALL];
            fill(&mut buf, thread, 0);
            start.wait();
            let t0 = Instant::now();
            let log = open(dir).await?;
            log.append(&buf).await.map_err(ctx("append"))?;
            let elapsed = t0.elapsed();
            log.close().await.map_err(ctx("close"))?;
            Ok(ThreadOutcome {
                open: Some(elapsed),
                ..ThreadOutcome::timed(1, buf.len() as u64, elapsed)
            })
        })
    }
}
