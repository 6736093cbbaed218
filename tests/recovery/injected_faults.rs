//! Injected faults, on the fault-injecting simulated disk (`SimStorage`):
//!
//! - EIO on a write, EIO on an fsync, a short write, and EIO while the next
//!   segment is being prepared each poison the shard (fail-stop): every later
//!   call returns `Error::Poisoned` naming the first failure, tasks already
//!   waiting for durability wake up with it, nothing hangs, and no write or
//!   fsync is issued after the failure.
//! - ENOSPC, whether hit by a record write or by preparing the next segment,
//!   is reported as a poisoned shard whose cause says "No space left on
//!   device"; after a crash that keeps or drops every unsynced write, the
//!   reopened log holds every record that was acknowledged as durable.
//! - A model check over many seeds: after random appends, syncs and yields,
//!   a crash that keeps, drops or tears (per 512-byte sector) each unsynced
//!   write never loses an acknowledged record, never invents one, and is
//!   never reported as corruption.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{check_records, payload, read_all, run, within};
use shardwal::io::sim::{CrashMode, WriteFault};
use shardwal::rng::SplitMix;
use shardwal::segment::{segment_name, shard_dir};
use shardwal::{
    Error, FsyncPolicy, Lsn, SegmentPrepare, Seq, ShardConfig, ShardId, ShardLog, ShardRecovery,
    SimStorage,
};

const TAG: u64 = 0xFA17;
const MAX_LEN: usize = 300;
const SHARD: ShardId = ShardId(0);
/// Every call must return well within this (a hang is a bug).
const LIMIT: Duration = Duration::from_secs(10);

fn log_dir() -> &'static Path {
    Path::new("/sim/log")
}

fn rec(seq: u64) -> Vec<u8> {
    payload(TAG, seq, MAX_LEN)
}

fn config(prepare: SegmentPrepare) -> ShardConfig {
    ShardConfig {
        segment_size: 64 << 10,
        buffer_size: 16 << 10,
        write_behind: 2,
        max_record_size: 4096,
        fsync: FsyncPolicy::Never,
        prepare,
        repair: false,
    }
}

async fn open(sim: &SimStorage, prepare: SegmentPrepare) -> ShardLog<SimStorage> {
    within(
        LIMIT,
        "open",
        ShardLog::open(sim.clone(), log_dir(), SHARD, config(prepare)),
    )
    .await
    .expect("open")
}

/// Append records `from..to`, checking each seq.
async fn append_range(log: &ShardLog<SimStorage>, from: u64, to: u64) -> Result<(), Error> {
    for seq in from..to {
        let lsn = within(LIMIT, "append", log.append(&rec(seq))).await?;
        assert_eq!(lsn.seq, Seq(seq));
    }
    Ok(())
}

fn assert_poisoned<T: std::fmt::Debug>(what: &str, r: Result<T, Error>, cause_has: &str) {
    match r {
        Err(Error::Poisoned { shard, cause }) => {
            assert_eq!(shard, SHARD);
            assert!(
                cause.contains(cause_has),
                "{what}: poison cause {cause:?} does not mention {cause_has:?}"
            );
        }
        other => panic!("{what}: expected Error::Poisoned, got {other:?}"),
    }
}

/// Every entry point of a poisoned shard fails fast with the poison, a
/// record that was durable before stays durable, and no I/O is issued.
async fn check_fail_stop(
    sim: &SimStorage,
    log: ShardLog<SimStorage>,
    durable: Option<Lsn>,
    pending: Lsn,
    cause_has: &str,
) {
    let cause = log.poisoned().expect("the shard reports its poison");
    assert!(cause.contains(cause_has), "{cause:?} vs {cause_has:?}");
    let io_before = sim.counters();
    assert_poisoned("try_append", log.try_append(b"x"), cause_has);
    assert_poisoned(
        "append",
        within(LIMIT, "append", log.append(b"x")).await,
        cause_has,
    );
    assert_poisoned(
        "append_batch",
        within(
            LIMIT,
            "append_batch",
            log.append_batch(&[&b"a"[..], &b"b"[..]]),
        )
        .await,
        cause_has,
    );
    assert_poisoned(
        "barrier",
        within(LIMIT, "barrier", log.barrier()).await,
        cause_has,
    );
    assert_poisoned("sync", within(LIMIT, "sync", log.sync()).await, cause_has);
    assert_poisoned(
        "wait_durable",
        within(LIMIT, "wait_durable", log.wait_durable(pending)).await,
        cause_has,
    );
    if let Some(lsn) = durable {
        within(
            LIMIT,
            "wait_durable of a durable record",
            log.wait_durable(lsn),
        )
        .await
        .expect("a record durable before the failure stays durable");
    }
    assert!(!log.is_durable(pending));
    // Give the background tasks every chance to (wrongly) retry.
    glommio::timer::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        sim.counters(),
        io_before,
        "no write or fsync is issued after the failure"
    );
    assert_poisoned(
        "close",
        within(LIMIT, "close", log.close()).await,
        cause_has,
    );
}

/// Reopen the disk image `sim` and check that records `0..durable` are
/// there, that every recovered record is one that was appended, and that
/// the log takes new records. Returns what recovery found.
async fn reopen_and_check(
    sim: SimStorage,
    durable: u64,
    appended: u64,
    what: &str,
) -> ShardRecovery {
    let log = within(
        LIMIT,
        "reopen",
        ShardLog::open(
            sim.clone(),
            log_dir(),
            SHARD,
            config(SegmentPrepare::Create),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let r = log.recovery().clone();
    assert!(
        r.records >= durable,
        "{what}: {} records recovered, {durable} were durable",
        r.records
    );
    assert!(
        r.records <= appended,
        "{what}: {} records recovered, only {appended} were appended",
        r.records
    );
    let next = r.records;
    append_range(&log, next, next + 3)
        .await
        .expect("append after reopen");
    within(LIMIT, "sync", log.sync())
        .await
        .expect("sync after reopen");
    within(LIMIT, "close", log.close()).await.expect("close");
    let recs = read_all(sim, log_dir(), SHARD, 0).await;
    assert_eq!(recs.len() as u64, next + 4, "{what}: recovered, new, close");
    check_records(&recs, 0, rec);
    r
}

/// Everything up to `n` appended and made durable; returns the last LSN.
async fn durable_prefix(log: &ShardLog<SimStorage>, n: u64) -> Lsn {
    append_range(log, 0, n).await.expect("append");
    assert_eq!(
        within(LIMIT, "sync", log.sync()).await.expect("sync"),
        Seq(n)
    );
    Lsn {
        shard: SHARD,
        epoch: log.epoch(),
        seq: Seq(n - 1),
    }
}

#[test]
fn eio_on_a_write_poisons_the_shard() {
    run("eio-write", || async {
        let sim = SimStorage::new();
        let log = open(&sim, SegmentPrepare::Create).await;
        let durable = durable_prefix(&log, 100).await;
        sim.fail_write(0, WriteFault::Eio);
        append_range(&log, 100, 150)
            .await
            .expect("buffered appends");
        let pending = Lsn {
            seq: Seq(149),
            ..durable
        };
        assert_poisoned(
            "sync",
            within(LIMIT, "sync", log.sync()).await,
            "os error 5",
        );
        check_fail_stop(&sim, log, Some(durable), pending, "os error 5").await;
        reopen_and_check(sim.crash(CrashMode::KeepAll, 1), 100, 150, "keep all").await;
        reopen_and_check(sim.crash(CrashMode::DropAll, 1), 100, 150, "drop all").await;
    });
}

#[test]
fn eio_on_an_fsync_poisons_the_shard_and_wakes_waiters() {
    run("eio-fsync", || async {
        let sim = SimStorage::new();
        let log = open(&sim, SegmentPrepare::Create).await;
        let durable = durable_prefix(&log, 100).await;
        append_range(&log, 100, 150)
            .await
            .expect("buffered appends");
        let pending = Lsn {
            seq: Seq(149),
            ..durable
        };
        // A task already waiting for durability when the fsync fails.
        let waiter = {
            let log = log.clone();
            glommio::spawn_local(async move { log.wait_durable(pending).await }).detach()
        };
        glommio::executor().yield_now().await;
        sim.fail_sync(0);
        assert_poisoned(
            "sync",
            within(LIMIT, "sync", log.sync()).await,
            "os error 5",
        );
        let woken = within(LIMIT, "a waiter of the failed fsync", waiter)
            .await
            .expect("waiter task");
        assert_poisoned("the waiter", woken, "os error 5");
        check_fail_stop(&sim, log, Some(durable), pending, "os error 5").await;
        // The failed fsync lost the unsynced bytes (as Linux may): only the
        // first hundred were acknowledged, and they are there.
        reopen_and_check(sim.crash(CrashMode::KeepAll, 2), 100, 150, "keep all").await;
        reopen_and_check(sim.crash(CrashMode::DropAll, 2), 100, 150, "drop all").await;
    });
}

#[test]
fn a_short_write_poisons_the_shard() {
    run("short-write", || async {
        let sim = SimStorage::new();
        let log = open(&sim, SegmentPrepare::Create).await;
        let durable = durable_prefix(&log, 100).await;
        sim.fail_write(0, WriteFault::Short);
        append_range(&log, 100, 150)
            .await
            .expect("buffered appends");
        let pending = Lsn {
            seq: Seq(149),
            ..durable
        };
        assert_poisoned(
            "sync",
            within(LIMIT, "sync", log.sync()).await,
            "short write",
        );
        check_fail_stop(&sim, log, Some(durable), pending, "short write").await;
        reopen_and_check(sim.crash(CrashMode::KeepAll, 3), 100, 150, "keep all").await;
        reopen_and_check(sim.crash(CrashMode::DropAll, 3), 100, 150, "drop all").await;
    });
}

#[test]
fn eio_while_preparing_the_next_segment_poisons_the_shard() {
    run("eio-prepare", || async {
        let sim = SimStorage::new();
        let log = open(&sim, SegmentPrepare::ZeroFill).await;
        // Segment 1 is prepared at once; segment 2 when records roll into
        // segment 1. Its first zero-fill write fails.
        let seg2 = shard_dir(log_dir(), SHARD).join(segment_name(2));
        sim.fail_write_to(&seg2, WriteFault::Eio);
        let (durable, appended) = fill_until_poisoned(&log, "os error 5").await;
        let cause = log.poisoned().expect("poisoned");
        assert!(
            cause.contains("zero-fill") && cause.contains(&*seg2.to_string_lossy()),
            "{cause}"
        );
        assert!(
            durable > 100,
            "{durable} records made durable before the failure"
        );
        let pending = not_durable(&log, durable, appended);
        check_fail_stop(&sim, log, None, pending, "os error 5").await;
        reopen_and_check(
            sim.crash(CrashMode::KeepAll, 6),
            durable,
            appended,
            "keep all",
        )
        .await;
        reopen_and_check(
            sim.crash(CrashMode::DropAll, 6),
            durable,
            appended,
            "drop all",
        )
        .await;
    });
}

/// Bytes of every file on the simulated disk.
fn used(sim: &SimStorage) -> u64 {
    sim.files()
        .iter()
        .map(|p| sim.read_file(p).map_or(0, |b| b.len() as u64))
        .sum()
}

/// Append and sync in rounds until the shard is poisoned with a cause that
/// mentions `cause_has`; returns the number of records acknowledged as
/// durable and the number appended.
///
/// An fdatasync in flight when another task poisons the shard (the next
/// segment's preparation) may still complete: the records it covered are
/// then durable, and reported as such, although the `sync` that asked for
/// it returned the poison. `durable` counts them.
async fn fill_until_poisoned(log: &ShardLog<SimStorage>, cause_has: &str) -> (u64, u64) {
    fill_from_until_poisoned(log, 0, cause_has).await
}

/// A record that is not durable after [`fill_until_poisoned`]: the last one
/// appended, or, if an fdatasync in flight made every appended record
/// durable after the poison, the next seq (never appended).
fn not_durable(log: &ShardLog<SimStorage>, durable: u64, appended: u64) -> Lsn {
    Lsn {
        shard: SHARD,
        epoch: log.epoch(),
        seq: Seq(if durable == appended {
            appended
        } else {
            appended - 1
        }),
    }
}

/// [`fill_until_poisoned`] after records `0..from` were appended and made
/// durable.
async fn fill_from_until_poisoned(
    log: &ShardLog<SimStorage>,
    from: u64,
    cause_has: &str,
) -> (u64, u64) {
    let mut durable = from;
    let mut seq = from;
    loop {
        let batch = within(LIMIT, "append", async {
            for _ in 0..20 {
                log.append(&rec(seq)).await?;
                seq += 1;
            }
            Ok::<_, Error>(())
        })
        .await;
        let r = match batch {
            Ok(()) => within(LIMIT, "sync", log.sync()).await.map(|s| s.0),
            Err(e) => Err(e),
        };
        match r {
            Ok(d) => {
                assert_eq!(d, seq);
                durable = d;
            }
            Err(e) => {
                assert_poisoned("append or sync", Err::<(), _>(e), cause_has);
                let last = Lsn {
                    shard: SHARD,
                    epoch: log.epoch(),
                    seq: Seq(seq.saturating_sub(1)),
                };
                if seq > durable && log.is_durable(last) {
                    durable = seq;
                }
                return (durable, seq);
            }
        }
        assert!(seq < 100_000, "the fault never happened");
    }
}

#[test]
fn enospc_on_a_record_write_is_a_clear_error_and_durable_records_survive() {
    run("enospc-write", || async {
        let sim = SimStorage::new();
        // Segments created empty: every record write grows the file.
        let log = open(&sim, SegmentPrepare::Create).await;
        glommio::timer::sleep(Duration::from_millis(5)).await;
        sim.set_capacity(Some(used(&sim) + 40_000));
        let (durable, appended) = fill_until_poisoned(&log, "No space left on device").await;
        assert!(
            durable > 50,
            "{durable} records made durable before the disk filled"
        );
        let pending = Lsn {
            shard: SHARD,
            epoch: log.epoch(),
            seq: Seq(appended - 1),
        };
        check_fail_stop(&sim, log, None, pending, "No space left on device").await;
        reopen_and_check(
            sim.crash(CrashMode::KeepAll, 4),
            durable,
            appended,
            "keep all",
        )
        .await;
        reopen_and_check(
            sim.crash(CrashMode::DropAll, 4),
            durable,
            appended,
            "drop all",
        )
        .await;
    });
}

#[test]
fn enospc_while_preparing_the_next_segment_is_a_clear_error_and_durable_records_survive() {
    run("enospc-prepare", || async {
        let sim = SimStorage::new();
        // Zero-filled segments: record writes never grow a file, preparing
        // the next segment does. Segment 1 is zero-filled once segment 0 is
        // half full: append until it is, then leave the disk 8 KiB, less
        // than segment 2's preparation needs.
        let log = open(&sim, SegmentPrepare::ZeroFill).await;
        let mut from = 0;
        within(LIMIT, "segment 1 prepared", async {
            while sim.files().len() < 3 || used(&sim) < 4096 + 2 * (64 << 10) {
                append_range(&log, from, from + 10).await.expect("append");
                from += 10;
                log.sync().await.expect("sync");
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        glommio::timer::sleep(Duration::from_millis(5)).await;
        sim.set_capacity(Some(used(&sim) + 8192));
        let (durable, appended) =
            fill_from_until_poisoned(&log, from, "No space left on device").await;
        assert!(
            durable > 100,
            "{durable} records made durable before the disk filled"
        );
        let cause = log.poisoned().expect("poisoned");
        assert!(cause.contains("zero-fill"), "{cause}");
        let pending = not_durable(&log, durable, appended);
        check_fail_stop(&sim, log, None, pending, "No space left on device").await;
        reopen_and_check(
            sim.crash(CrashMode::KeepAll, 5),
            durable,
            appended,
            "keep all",
        )
        .await;
        reopen_and_check(
            sim.crash(CrashMode::DropAll, 5),
            durable,
            appended,
            "drop all",
        )
        .await;
    });
}

/// What the model runs saw, to check that they exercise every case.
#[derive(Debug, Default)]
struct Seen {
    torn: u64,
    unsynced_lost: u64,
    unsynced_kept: u64,
}

/// One model run: random appends, syncs and yields, then a crash.
async fn model_run(seed: u64, seen: &mut Seen) {
    let mut rng = SplitMix(seed);
    let sim = SimStorage::new();
    let prepare = match rng.below(3) {
        0 => SegmentPrepare::ZeroFill,
        1 => SegmentPrepare::Fallocate,
        _ => SegmentPrepare::Create,
    };
    let mut cfg = config(prepare);
    // Small buffers: records reach the disk (unsynced) without a sync, so
    // crashes find writes to keep, drop or tear.
    cfg.buffer_size = 4096;
    cfg.write_behind = 4;
    cfg.fsync = match rng.below(3) {
        0 => FsyncPolicy::EveryAppend,
        _ => FsyncPolicy::Never,
    };
    let log = within(
        LIMIT,
        "open",
        ShardLog::open(sim.clone(), log_dir(), SHARD, cfg),
    )
    .await
    .expect("open");
    let mut seq = 0;
    let mut acked = 0;
    let steps = 1 + rng.below(40);
    for _ in 0..steps {
        match rng.below(6) {
            0 => {
                acked = within(LIMIT, "sync", log.sync()).await.expect("sync").0;
                assert_eq!(acked, seq);
            }
            1 => glommio::executor().yield_now().await,
            _ => {
                for _ in 0..rng.below(30) {
                    let lsn = within(LIMIT, "append", log.append(&rec(seq)))
                        .await
                        .expect("append");
                    assert_eq!(lsn.seq, Seq(seq));
                    seq += 1;
                }
            }
        }
    }
    // The watermark at the moment of the crash: everything below it was
    // reported durable.
    let durable = log.durable_next().0.max(acked);
    let mode = match rng.below(4) {
        0 => CrashMode::DropAll,
        1 => CrashMode::KeepAll,
        _ => CrashMode::Random,
    };
    let crashed = sim.crash(mode, rng.next_u64());
    drop(log);
    let what = format!(
        "seed {seed} ({mode:?}, {prepare:?}, {} appended, {durable} durable)",
        seq
    );
    let r = reopen_and_check(crashed, durable, seq, &what).await;
    seen.torn += u64::from(r.torn.is_some());
    seen.unsynced_lost += u64::from(r.records < seq);
    seen.unsynced_kept += u64::from(r.records > durable);
}

#[test]
fn random_crashes_lose_no_acknowledged_record_and_invent_none() {
    let seed = common::test_seed("random_crashes_lose_no_acknowledged_record_and_invent_none");
    run("model", move || async move {
        let mut rng = SplitMix(seed);
        let mut seen = Seen::default();
        for _ in 0..1000 {
            model_run(rng.next_u64(), &mut seen).await;
        }
        assert!(
            seen.torn > 50 && seen.unsynced_lost > 50 && seen.unsynced_kept > 50,
            "the runs do not exercise every case: {seen:?}"
        );
        eprintln!("{seen:?}");
    });
}
