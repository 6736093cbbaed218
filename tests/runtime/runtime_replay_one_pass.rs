//! The one-pass replay of `Runtime::start_replaying`: each core replays its
//! shard's records while recovery scans the log, and gets exactly what
//! `ShardContext::replay` gives after a plain start on a copy of the same
//! directory: same snapshots, same records, same order, nothing of a cut
//! epoch.
//!
//! The logs are written shard by shard with bare writers (so each shard can
//! hold barriers the other never wrote, and unsealed records after its last
//! barrier), over many small segments:
//! - the last shard's scan ends *below* the other's progress: shard 1 stops
//!   at barrier 5 and then holds a long unsealed tail, so its scan is the
//!   one that ends last, while shard 0 has long since read barriers 6..12
//!   and the records between them: none of those may be replayed;
//! - an epoch larger than the replay buffer (its records are read from the
//!   log again, and the scan copies again after it: two such epochs apart
//!   leave the epochs between and after them to the one pass);
//! - random shapes;
//! - checkpoints (snapshots and a replay position inside a segment);
//! - a start on fewer shards (a core that adopts a retired shard replays
//!   from the log after the start, merged, and says so);
//! - a start that fails (corruption) ends the replay with an error.

use crate::recovery_common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use recovery_common::*;
use shardwal::rng::SplitMix;
use shardwal::{
    ControlEvent, CoordinatorConfig, DmaStorage, Error, ReplayCounts, Runtime, RuntimeConfig,
    ShardConfig, ShardId, ShardLog,
};

const WAIT: Duration = Duration::from_secs(120);

fn shard_config() -> ShardConfig {
    small_shard(1 << 20)
}

fn config(shards: usize, buffer: usize) -> RuntimeConfig {
    RuntimeConfig {
        replay_buffer: buffer,
        ..runtime_config(shards, shard_config())
    }
}

/// How one shard's bare log is written: records per epoch (each closed by
/// a barrier), then records after the last barrier (never sealed).
#[derive(Debug, Clone)]
struct ShardShape {
    epochs: Vec<(usize, usize)>,
    tail: (usize, usize),
}

/// (count, payload length) pairs, written with lengths varied around them.
async fn write_shard(dir: &Path, shard: u32, shape: &ShardShape) {
    let log = ShardLog::open(DmaStorage, dir, ShardId(shard), shard_config())
        .await
        .expect("open bare shard");
    let mut key = u64::from(shard) << 40;
    let mut put = async |count: usize, len: usize| {
        for i in 0..count {
            let l = (len + i * 37 % 512).clamp(1, 4096);
            log.append(&fill(key, l)).await.expect("append");
            key += 1;
        }
    };
    for &(count, len) in &shape.epochs {
        put(count, len).await;
        log.barrier().await.expect("barrier");
    }
    put(shape.tail.0, shape.tail.1).await;
    log.close().await.expect("close");
}

fn write_log(dir: &Path, shapes: &[ShardShape]) {
    for (s, shape) in shapes.iter().enumerate() {
        let (d, shape) = (dir.to_path_buf(), shape.clone());
        run("write-shard", move || async move {
            write_shard(&d, s as u32, &shape).await
        });
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let t = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).expect("copy");
        }
    }
}

/// What one core replayed.
#[derive(Debug, PartialEq, Eq)]
struct Replayed {
    shard: u32,
    snapshots: Vec<(u32, Vec<u8>)>,
    records: Vec<Rec>,
}

/// Start with `start_replaying` on `dir`, collect every core's replay, shut
/// down. Returns the replays by shard, whether they were one pass, and the
/// sealed epoch recovered.
fn one_pass(dir: &Path, cfg: RuntimeConfig) -> (Vec<Replayed>, Vec<(bool, ReplayCounts)>, u64) {
    let n = cfg.shards.expect("shards");
    let (tx, rx) = mpsc::channel();
    let d = dir.to_path_buf();
    let rt = within(WAIT, "start_replaying", move || {
        Runtime::start_replaying(
            &d,
            cfg,
            move |mut r| {
                let tx = tx.clone();
                async move {
                    let shard = r.shard().0;
                    let snapshots = r
                        .snapshots()
                        .await?
                        .into_iter()
                        .map(|(s, b)| (s.0, b))
                        .collect();
                    let mut records = Vec::new();
                    while let Some(rec) = r.next().await? {
                        assert_eq!(rec.payload.as_ptr() as usize % 8, 0, "alignment");
                        records.push(Rec::of(&rec));
                    }
                    let one = (r.is_one_pass(), r.counts());
                    let _ = tx.send((
                        Replayed {
                            shard,
                            snapshots,
                            records,
                        },
                        one,
                    ));
                    Ok(())
                }
            },
            |_ctx, ()| async { Ok(()) },
        )
    })
    .expect("start_replaying");
    let sealed = rt.recovery_report().sealed.0;
    let mut got: Vec<(Replayed, (bool, ReplayCounts))> = (0..n)
        .map(|_| rx.recv_timeout(WAIT).expect("a core's replay"))
        .collect();
    within(WAIT, "shutdown", move || rt.shutdown()).expect("shutdown");
    got.sort_by_key(|(r, _)| r.shard);
    let flags = got.iter().map(|(_, o)| *o).collect();
    (got.into_iter().map(|(r, _)| r).collect(), flags, sealed)
}

/// Start with `start` on `dir` and collect what `ShardContext::replay`
/// gives every core, shut down.
fn after_start(dir: &Path, cfg: RuntimeConfig) -> (Vec<Replayed>, u64) {
    let n = cfg.shards.expect("shards");
    let (tx, rx) = mpsc::channel();
    let d = dir.to_path_buf();
    let rt = within(WAIT, "start", move || {
        Runtime::start(&d, cfg, move |ctx| {
            let tx = tx.clone();
            async move {
                let snapshots = ctx
                    .snapshots()
                    .await?
                    .into_iter()
                    .map(|(s, b)| (s.0, b))
                    .collect();
                let records = drain_merged(ctx.replay().await?).await?;
                let _ = tx.send(Replayed {
                    shard: ctx.shard().0,
                    snapshots,
                    records,
                });
                Ok(())
            }
        })
    })
    .expect("start");
    let sealed = rt.recovery_report().sealed.0;
    let mut got: Vec<Replayed> = (0..n)
        .map(|_| rx.recv_timeout(WAIT).expect("a core's replay"))
        .collect();
    within(WAIT, "shutdown", move || rt.shutdown()).expect("shutdown");
    got.sort_by_key(|r| r.shard);
    (got, sealed)
}

/// Both ways on copies of `orig`; they must agree. Returns the one-pass
/// replays, where their records came from, and the sealed epoch.
fn compare(
    orig: &Path,
    scratch: &Path,
    cfg: RuntimeConfig,
    one: bool,
) -> (Vec<Replayed>, Vec<ReplayCounts>, u64) {
    let (a, b) = (scratch.join("one-pass"), scratch.join("after-start"));
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
    copy_tree(orig, &a);
    copy_tree(orig, &b);
    let (got, flags, sealed) = one_pass(&a, cfg.clone());
    let (want, sealed_b) = after_start(&b, cfg);
    assert_eq!(
        sealed, sealed_b,
        "both starts recover the same sealed epoch"
    );
    assert!(flags.iter().all(|&(f, _)| f == one), "one pass: {flags:?}");
    for (r, (_, c)) in got.iter().zip(&flags) {
        assert_eq!(
            c.from_scan + c.from_log,
            r.records.len() as u64,
            "shard {}: {c:?}",
            r.shard
        );
    }
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.snapshots, w.snapshots, "shard {} snapshots", g.shard);
        assert_eq!(
            g.records.len(),
            w.records.len(),
            "shard {}: records replayed",
            g.shard
        );
        if let Some((x, y)) = g.records.iter().zip(&w.records).find(|(x, y)| x != y) {
            panic!(
                "shard {}: one pass gave seq {} epoch {} ({:?}), the replay after the start seq {} epoch {} ({:?})",
                g.shard, x.seq, x.epoch, x.kind, y.seq, y.epoch, y.kind
            );
        }
        for r in &g.records {
            assert!(
                r.epoch <= sealed,
                "shard {} replayed seq {} of epoch {} > sealed {sealed}",
                g.shard,
                r.seq,
                r.epoch
            );
        }
    }
    (got, flags.into_iter().map(|(_, c)| c).collect(), sealed)
}

fn epochs(n: usize, count: usize, len: usize) -> Vec<(usize, usize)> {
    vec![(count, len); n]
}

#[test]
fn the_last_scan_to_end_is_below_the_others_and_nothing_cut_is_replayed() {
    let root = tempfile::tempdir().expect("tempdir");
    let orig = root.path().join("orig");
    // Shard 0: 12 sealed-looking epochs. Shard 1: 5, then ~24 MiB of
    // records it never sealed, so its scan ends last, at barrier 5.
    write_log(
        &orig,
        &[
            ShardShape {
                epochs: epochs(12, 300, 600),
                tail: (50, 300),
            },
            ShardShape {
                epochs: epochs(5, 200, 900),
                tail: (6000, 4000),
            },
        ],
    );
    let (got, counts, sealed) = compare(&orig, root.path(), config(2, 64 << 20), true);
    assert_eq!(sealed, 5, "epochs 6.. are not sealed on shard 1");
    // Everything came from the scan's reads, and shard 0 replayed before
    // its cut was known (while shard 1 was still scanning).
    assert!(counts.iter().all(|c| c.from_log == 0), "{counts:?}");
    assert!(counts[0].before_cut > 0, "{counts:?}");
    // Shard 0 replays epochs 1..=5 and their barriers, nothing after.
    let last = got[0].records.last().expect("records");
    assert_eq!((last.epoch, last.kind), (5, shardwal::RecordKind::Barrier));
    assert_eq!(got[0].records.len(), 5 * 301);
    assert_eq!(got[1].records.len(), 5 * 201);
}

#[test]
fn an_epoch_larger_than_the_replay_buffer_is_read_again_from_the_log() {
    let root = tempfile::tempdir().expect("tempdir");
    let orig = root.path().join("orig");
    let mut big = epochs(6, 100, 500);
    big[2] = (2000, 3000); // ~6 MiB in epoch 3
    write_log(
        &orig,
        &[
            ShardShape {
                epochs: big,
                tail: (10, 100),
            },
            ShardShape {
                epochs: epochs(7, 100, 800),
                tail: (0, 0),
            },
        ],
    );
    let (got, counts, sealed) = compare(&orig, root.path(), config(2, 2 << 20), true);
    assert_eq!(sealed, 6);
    assert!(
        counts[0].from_scan > 0 && counts[0].from_log > 0,
        "{counts:?}"
    );
    assert_eq!(got[0].records.len(), 5 * 101 + 2001);
}

#[test]
fn after_an_epoch_larger_than_the_replay_buffer_the_scan_copies_again() {
    let root = tempfile::tempdir().expect("tempdir");
    let orig = root.path().join("orig");
    // Shard 0: 3 small epochs, a ~6 MiB one, 20 small, another ~6 MiB one,
    // 10 small. Each big epoch overflows the 2 MiB buffer.
    let mut shape = epochs(3, 100, 500);
    shape.push((2000, 3000));
    shape.extend(epochs(20, 100, 500));
    shape.push((2000, 3000));
    shape.extend(epochs(10, 100, 500));
    write_log(
        &orig,
        &[
            ShardShape {
                epochs: shape,
                tail: (10, 100),
            },
            ShardShape {
                epochs: epochs(40, 50, 800),
                tail: (0, 0),
            },
        ],
    );
    let (got, counts, sealed) = compare(&orig, root.path(), config(2, 2 << 20), true);
    assert_eq!(sealed, 35);
    assert_eq!(got[0].records.len(), 33 * 101 + 2 * 2001);
    let c = counts[0];
    // What was read twice is at most the two big epochs and a few small
    // epochs after each (a gap ends at the first barrier after the buffer
    // is half free again); the rest came from the scan. Without copying
    // again after a gap, everything from the first big epoch's overflow on
    // (over 2 * 2001 + 30 * 101 records) would be read twice.
    assert!(c.from_log > 0, "{c:?}");
    assert!(c.from_log <= 2 * 2001 + 2 * 5 * 101, "{c:?}");
    assert!(c.from_scan >= 20 * 101, "{c:?}");
}

#[test]
fn random_shapes_replay_the_same_records_in_one_pass() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut rng = SplitMix(test_seed());
    for trial in 0..4 {
        let orig = root.path().join(format!("orig{trial}"));
        let mut shapes = Vec::new();
        for _ in 0..2 {
            let n = 1 + (rng.next_u64() % 10) as usize;
            let epochs = (0..n)
                .map(|_| {
                    (
                        (rng.next_u64() % 400) as usize,
                        16 + (rng.next_u64() % 3000) as usize,
                    )
                })
                .collect();
            let tail = ((rng.next_u64() % 300) as usize, 100);
            shapes.push(ShardShape { epochs, tail });
        }
        let buffer = [2 << 20, 64 << 20][trial % 2];
        eprintln!("trial {trial}: {shapes:?}, buffer {buffer}");
        write_log(&orig, &shapes);
        let (_, _, sealed) = compare(
            &orig,
            &root.path().join(format!("t{trial}")),
            config(2, buffer),
            true,
        );
        let want = shapes.iter().map(|s| s.epochs.len() as u64).min().unwrap();
        assert_eq!(sealed, want);
    }
}

#[test]
fn a_core_that_adopts_a_retired_shard_replays_after_the_start() {
    let root = tempfile::tempdir().expect("tempdir");
    let orig = root.path().join("orig");
    write_log(
        &orig,
        &[
            ShardShape {
                epochs: epochs(4, 150, 700),
                tail: (20, 100),
            },
            ShardShape {
                epochs: epochs(4, 120, 900),
                tail: (20, 100),
            },
        ],
    );
    let (got, counts, sealed) = compare(&orig, root.path(), config(1, 64 << 20), false);
    assert_eq!(counts[0].from_scan, 0, "{counts:?}");
    assert_eq!(sealed, 4);
    let shards: Vec<u32> = got[0].records.iter().map(|r| r.shard).collect();
    assert!(
        shards.contains(&0) && shards.contains(&1),
        "both logs replayed"
    );
}

/// An engine that appends, commits and checkpoints (streaming nothing
/// special: the one-slice form), for `epochs` epochs, every third a
/// checkpoint.
fn write_with_checkpoints(dir: &Path, epochs: u64) {
    let cfg = RuntimeConfig {
        coordinator: CoordinatorConfig {
            keep_checkpoints: 2,
            ..CoordinatorConfig::default()
        },
        ..config(2, 64 << 20)
    };
    let d: PathBuf = dir.to_path_buf();
    let rt = within(WAIT, "start", move || {
        Runtime::start(&d, cfg, |ctx| async move {
            let shard = ctx.shard().0;
            let mut n = 0u64;
            loop {
                while let Some(ev) = ctx.poll_control() {
                    match ev {
                        ControlEvent::Barrier(req) => {
                            let snap = req
                                .checkpoint
                                .map(|c| fill(u64::from(shard) << 32 | c.0, 5000 + n as usize));
                            ctx.complete_barrier(req, snap.as_deref()).await?;
                        }
                        _ => return Ok(()),
                    }
                }
                for _ in 0..20 {
                    ctx.log()
                        .append(&fill(u64::from(shard) << 40 | n, 200 + (n % 700) as usize))
                        .await?;
                    n += 1;
                }
                glommio::timer::sleep(Duration::from_micros(300)).await;
            }
        })
    })
    .expect("start");
    let c = rt.coordinator();
    for i in 1..=epochs {
        if i % 3 == 0 {
            c.checkpoint()
                .expect("checkpoint")
                .wait_timeout(WAIT)
                .expect("checkpoint completes");
        } else {
            c.advance_epoch()
                .expect("epoch")
                .wait_timeout(WAIT)
                .expect("epoch seals");
        }
    }
    within(WAIT, "shutdown", move || rt.shutdown()).expect("shutdown");
}

#[test]
fn checkpoints_snapshots_and_the_replay_position_are_those_of_the_plain_start() {
    let root = tempfile::tempdir().expect("tempdir");
    let orig = root.path().join("orig");
    write_with_checkpoints(&orig, 8);
    let (got, _, _) = compare(&orig, root.path(), config(2, 64 << 20), true);
    for r in &got {
        assert_eq!(r.snapshots.len(), 1, "shard {} has its snapshot", r.shard);
        assert!(!r.records.is_empty());
    }
}

#[test]
fn a_start_that_fails_ends_the_replay_with_an_error() {
    let root = tempfile::tempdir().expect("tempdir");
    let orig = root.path().join("orig");
    write_log(
        &orig,
        &[
            ShardShape {
                epochs: epochs(6, 300, 900),
                tail: (0, 0),
            },
            ShardShape {
                epochs: epochs(6, 300, 900),
                tail: (0, 0),
            },
        ],
    );
    // Flip a byte in the middle of shard 1's first segment: corruption.
    let seg = std::fs::read_dir(orig.join("shard-0001"))
        .expect("shard dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .min()
        .expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[300_000] ^= 0x40;
    std::fs::write(&seg, &bytes).expect("write");
    let (tx, rx) = mpsc::channel();
    let d = orig.clone();
    let r = within(WAIT, "start_replaying", move || {
        Runtime::start_replaying(
            &d,
            config(2, 64 << 20),
            move |mut r| {
                let tx = tx.clone();
                async move {
                    let mut n = 0u64;
                    let end = loop {
                        match r.next().await {
                            Ok(Some(_)) => n += 1,
                            Ok(None) => break Ok(n),
                            Err(e) => break Err(e.to_string()),
                        }
                    };
                    let _ = tx.send((r.shard().0, end));
                    Ok(())
                }
            },
            |_ctx, ()| async { Ok(()) },
        )
    });
    let err = r.err().expect("the start fails");
    assert!(
        matches!(&err, Error::ShardFailed { .. } | Error::Corruption { .. }),
        "{err}"
    );
    // Each core's replay ended (with an error, or was cancelled with the
    // failed start); none reached a clean end.
    for (shard, end) in rx.try_iter() {
        assert!(
            end.is_err(),
            "shard {shard}'s replay ended cleanly: {end:?}"
        );
    }
}

fn test_seed() -> u64 {
    let seed = std::env::var("SHARDWAL_ONE_PASS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0e_9a55);
    eprintln!("SHARDWAL_ONE_PASS_SEED={seed}");
    seed
}
