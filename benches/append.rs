//! Append throughput and group-commit benchmarks, each next to a raw
//! `std::fs::File` + `BufWriter` + `sync_data` baseline measured in the same
//! run (numbers on a shared machine are noisy: compare within one run).
//!
//! ```sh
//! cargo bench --bench append
//! ```
//!
//! What each function measures (every payload is 128 bytes; a shardwal frame
//! adds a 40-byte header, so shardwal writes 168 bytes per record where the
//! raw baseline writes 128):
//!
//! - `buffered_128b/*`: one iteration is a batch of [`BATCH`] records.
//!   - `shardwal`: `append().await` × BATCH under `FsyncPolicy::Never`, then
//!     `sync()`, so every record of the batch is written and fdatasynced
//!     before the clock stops (the same work as the raw baseline).
//!   - `shardwal_no_sync`: the same appends without the final `sync()`. The
//!     write-behind pipeline still bounds it (`append` waits when every
//!     buffer is in flight), but up to `buffer_size × (write_behind + 1)`
//!     bytes of a sample are still unwritten when the clock stops.
//!   - `shardwal_fallocate`: as `shardwal`, with `SegmentPrepare::Fallocate`
//!     instead of the default `ZeroFill` (which writes every segment twice).
//!   - `raw_bufwriter`: `write_all` of each payload through a default
//!     `BufWriter<File>` on an appended file, then `flush` + `sync_data`.
//! - `append_path_128b/shardwal_try_append_no_io`: one iteration is BATCH
//!   `try_append` calls into 16 × 4 MiB buffers (no waiting); each batch's
//!   `sync()` runs after the clock stops. The cost of the append path alone
//!   (framing, CRC, copy, and first-touch page faults in the buffers the
//!   writer allocates after a sync), in wall time on the bench thread: the
//!   per-core ceiling when the device is not the bottleneck.
//! - `group_commit_128b/*`: one iteration is 64 durable records.
//!   - `shardwal_every_append_64[_fallocate]`: 64 tasks on the shard's
//!     executor, each looping `append().await` then `wait_durable()`, under
//!     `FsyncPolicy::EveryAppend`.
//!   - `raw_sync_per_group`: 64 × `write_all` through a `BufWriter`, then
//!     `flush` + `sync_data`, on an appended (growing) file.
//! - `sync_each_128b/*`: one iteration is one record made durable by a single
//!   appender (append + `wait_durable`), so the time per iteration is the
//!   commit latency; it compares segment preparation modes, and the raw
//!   `write_all` + `flush` + `sync_data` on an appended file.
//!
//! The buffered benchmarks open a fresh log (or file) in a fresh temporary
//! directory for every sample and remove it afterwards (they write hundreds
//! of MiB per sample); opening (which prepares the first segment), closing
//! and removal are outside the timed region, while the preparation of every
//! later segment runs in the background inside it, as in steady state.
//! The group-commit and sync-each benchmarks write little, so each function
//! keeps one log open across all its samples (warm-up included): a fresh log
//! per sample would put the first background segment preparation, which
//! competes with the commits, at the start of every short sample.
//! The glommio executor is created once, on the bench thread, and reused.
//! `raw_sync_each_overwrite` is the floor: 128 B `pwrite` + `sync_data` into a
//! file whose blocks were all written and synced beforehand.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use shardwal::{DmaStorage, FsyncPolicy, SegmentPrepare, ShardConfig, ShardId, ShardLog};

/// Records per iteration of the buffered benchmarks.
const BATCH: u64 = 200_000;
/// Concurrent appenders, and records per iteration, of the group-commit benchmarks.
const GROUP: u64 = 64;
/// Payload size.
const PAYLOAD: usize = 128;
/// Size of the prefilled file of `raw_sync_each_overwrite`.
const PREFILL: u64 = 64 << 20;

fn payload() -> [u8; PAYLOAD] {
    let mut p = [0u8; PAYLOAD];
    for (i, b) in p.iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn executor() -> LocalExecutor {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(2 << 20)
        .name("bench-append")
        .make()
        .expect("glommio executor")
}

fn config(fsync: FsyncPolicy, prepare: SegmentPrepare) -> ShardConfig {
    ShardConfig {
        fsync,
        prepare,
        ..ShardConfig::default()
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

async fn open(dir: &Path, cfg: ShardConfig) -> ShardLog<DmaStorage> {
    ShardLog::open(DmaStorage, dir, ShardId(0), cfg)
        .await
        .expect("open shard")
}

/// `iters` batches of [`BATCH`] appends; with `sync`, each batch ends with `sync()`.
fn shardwal_buffered(
    ex: &LocalExecutor,
    iters: u64,
    prepare: SegmentPrepare,
    sync: bool,
) -> Duration {
    let dir = tempdir();
    ex.run(async {
        let log = open(dir.path(), config(FsyncPolicy::Never, prepare)).await;
        let p = payload();
        let start = Instant::now();
        for _ in 0..iters {
            for _ in 0..BATCH {
                log.append(&p).await.expect("append");
            }
            if sync {
                log.sync().await.expect("sync");
            }
        }
        let elapsed = start.elapsed();
        log.close().await.expect("close");
        elapsed
    })
}

/// The append path alone: `iters` batches of [`BATCH`] `try_append` calls
/// into buffers large enough that no batch waits; each batch's `sync()` (the
/// device writes) runs after the clock stops. This is the CPU cost per record
/// (framing, CRC, copy), the per-core ceiling when the device keeps up.
fn shardwal_append_path(ex: &LocalExecutor, log: &ShardLog<DmaStorage>, iters: u64) -> Duration {
    ex.run(async {
        let p = payload();
        let mut timed = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            for _ in 0..BATCH {
                match log.try_append(&p) {
                    Ok(_) => {}
                    // Only if the next segment is not prepared yet: wait (timed).
                    Err(shardwal::Error::Backpressure) => {
                        log.append(&p).await.expect("append");
                    }
                    Err(e) => panic!("append: {e}"),
                }
            }
            timed += start.elapsed();
            log.sync().await.expect("sync");
        }
        timed
    })
}

fn raw_buffered(iters: u64) -> Duration {
    let dir = tempdir();
    let file = File::create(dir.path().join("raw.log")).expect("create");
    let mut w = BufWriter::new(file);
    let p = payload();
    let start = Instant::now();
    for _ in 0..iters {
        for _ in 0..BATCH {
            w.write_all(&p).expect("write");
        }
        w.flush().expect("flush");
        w.get_ref().sync_data().expect("sync_data");
    }
    start.elapsed()
}

/// [`GROUP`] tasks, each making `iters` records durable one after another.
fn shardwal_group_commit(ex: &LocalExecutor, log: &ShardLog<DmaStorage>, iters: u64) -> Duration {
    ex.run(async {
        let done = Rc::new(Cell::new(0u64));
        let start = Instant::now();
        let tasks: Vec<_> = (0..GROUP)
            .map(|_| {
                let log = log.clone();
                let done = done.clone();
                glommio::spawn_local(async move {
                    let p = payload();
                    for _ in 0..iters {
                        let lsn = log.append(&p).await.expect("append");
                        log.wait_durable(lsn).await.expect("wait_durable");
                        done.set(done.get() + 1);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let elapsed = start.elapsed();
        assert_eq!(done.get(), iters * GROUP);
        elapsed
    })
}

/// `iters` groups of [`GROUP`] records, each group made durable by one `sync_data`.
fn raw_sync_groups(iters: u64, group: u64) -> Duration {
    let dir = tempdir();
    let file = File::create(dir.path().join("raw.log")).expect("create");
    let mut w = BufWriter::new(file);
    let p = payload();
    let start = Instant::now();
    for _ in 0..iters {
        for _ in 0..group {
            w.write_all(&p).expect("write");
        }
        w.flush().expect("flush");
        w.get_ref().sync_data().expect("sync_data");
    }
    start.elapsed()
}

/// One appender making `iters` records durable one at a time.
fn shardwal_sync_each(ex: &LocalExecutor, log: &ShardLog<DmaStorage>, iters: u64) -> Duration {
    ex.run(async {
        let p = payload();
        let start = Instant::now();
        for _ in 0..iters {
            let lsn = log.append(&p).await.expect("append");
            log.wait_durable(lsn).await.expect("wait_durable");
        }
        start.elapsed()
    })
}

/// As [`raw_sync_groups`] with groups of one, overwriting a file whose blocks
/// were all written and synced before the clock starts (so each `sync_data`
/// flushes data only: the floor for a commit on this device).
fn raw_sync_each_overwrite(dir: &Path, iters: u64) -> Duration {
    let path = dir.join("prefilled.log");
    let len = PREFILL;
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(len) {
        let mut w = BufWriter::new(File::create(&path).expect("create"));
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..len / zeros.len() as u64 {
            w.write_all(&zeros).expect("prefill");
        }
        w.into_inner().expect("flush").sync_all().expect("sync");
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    let p = payload();
    let mut off = 0u64;
    let start = Instant::now();
    for _ in 0..iters {
        if off + PAYLOAD as u64 > len {
            off = 0;
        }
        file.write_all_at(&p, off).expect("write");
        file.sync_data().expect("sync_data");
        off += PAYLOAD as u64;
    }
    start.elapsed()
}

/// Open a shard that stays open across the samples of one benchmark function,
/// so that each segment's preparation costs what it costs in steady state
/// (once per segment) rather than once per sample.
fn open_persistent(ex: &LocalExecutor, dir: &Path, cfg: ShardConfig) -> ShardLog<DmaStorage> {
    ex.run(open(dir, cfg))
}

fn close_persistent(ex: &LocalExecutor, log: ShardLog<DmaStorage>) {
    ex.run(log.close()).expect("close");
}

fn benches(c: &mut Criterion) {
    let ex = executor();

    let mut g = c.benchmark_group("buffered_128b");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(2));
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("shardwal", |b| {
        b.iter_custom(|iters| shardwal_buffered(&ex, iters, SegmentPrepare::ZeroFill, true))
    });
    g.bench_function("shardwal_no_sync", |b| {
        b.iter_custom(|iters| shardwal_buffered(&ex, iters, SegmentPrepare::ZeroFill, false))
    });
    g.bench_function("shardwal_fallocate", |b| {
        b.iter_custom(|iters| shardwal_buffered(&ex, iters, SegmentPrepare::Fallocate, true))
    });
    g.bench_function("raw_bufwriter", |b| b.iter_custom(raw_buffered));
    g.finish();

    let mut g = c.benchmark_group("append_path_128b");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
    {
        let dir = tempdir();
        // 16 × 4 MiB buffers hold a whole batch (200k × 168 B = 33.6 MB).
        let cfg = ShardConfig {
            buffer_size: 4 << 20,
            write_behind: 16,
            segment_size: 1 << 30,
            ..config(FsyncPolicy::Never, SegmentPrepare::Create)
        };
        let log = open_persistent(&ex, dir.path(), cfg);
        g.bench_function("shardwal_try_append_no_io", |b| {
            b.iter_custom(|iters| shardwal_append_path(&ex, &log, iters))
        });
        close_persistent(&ex, log);
    }
    g.finish();

    let mut g = c.benchmark_group("group_commit_128b");
    g.throughput(Throughput::Elements(GROUP));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(2));
    g.measurement_time(Duration::from_secs(6));
    for (name, prepare) in [
        ("shardwal_every_append_64", SegmentPrepare::ZeroFill),
        (
            "shardwal_every_append_64_fallocate",
            SegmentPrepare::Fallocate,
        ),
    ] {
        let dir = tempdir();
        let log = open_persistent(&ex, dir.path(), config(FsyncPolicy::EveryAppend, prepare));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| shardwal_group_commit(&ex, &log, iters))
        });
        close_persistent(&ex, log);
    }
    g.bench_function("raw_sync_per_group", |b| {
        b.iter_custom(|iters| raw_sync_groups(iters, GROUP))
    });
    g.finish();

    let mut g = c.benchmark_group("sync_each_128b");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(2));
    g.measurement_time(Duration::from_secs(5));
    for (name, prepare) in [
        ("shardwal_zerofill", SegmentPrepare::ZeroFill),
        ("shardwal_fallocate", SegmentPrepare::Fallocate),
        ("shardwal_create", SegmentPrepare::Create),
    ] {
        let dir = tempdir();
        let log = open_persistent(&ex, dir.path(), config(FsyncPolicy::EveryAppend, prepare));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| shardwal_sync_each(&ex, &log, iters))
        });
        close_persistent(&ex, log);
    }
    g.bench_function("raw_sync_each", |b| {
        b.iter_custom(|iters| raw_sync_groups(iters, 1))
    });
    let dir = tempdir();
    g.bench_function("raw_sync_each_overwrite", |b| {
        b.iter_custom(|iters| raw_sync_each_overwrite(dir.path(), iters))
    });
    g.finish();
}

criterion_group! {
    name = append;
    // Fewer bootstrap resamples than the default 100k: the analysis of 15
    // functions otherwise takes a noticeable share of the run on 2 cores.
    config = Criterion::default().nresamples(10_000);
    targets = benches
}
criterion_main!(append);
