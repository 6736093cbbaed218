//! Truncation after checkpoints, with small segments (64 KiB) and many
//! records: it removes exactly the segments wholly before the oldest
//! retained checkpoint's `replay_from` (never one that holds a later record,
//! and never before that checkpoint's manifest is durable), deletes the
//! snapshots and manifests of older checkpoints, and after a restart every
//! record after each retained checkpoint is still there, matching its
//! snapshot. Truncation goes on in the next run with the manifests it
//! found on disk.

use crate::runtime_common;

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use runtime_common::*;
use shardwal::{
    ControlEvent, CoordinatorConfig, DmaStorage, Epoch, Manifest, RecordKind, Runtime,
    RuntimeConfig, ShardConfig, ShardContext,
};

const SHARDS: u32 = 2;
/// Data records each shard appends right after each barrier.
const PER_EPOCH: u64 = 120;
const WAIT: Duration = Duration::from_secs(30);

struct Shared {
    /// Data records appended per shard (the next data index).
    counts: Vec<AtomicU64>,
    /// Stop appending (so that every data record is in a sealed epoch).
    stop: AtomicBool,
}

/// Snapshot = the number of data records appended before the checkpoint.
async fn engine(ctx: Rc<ShardContext<DmaStorage>>, sh: Arc<Shared>) -> shardwal::Result<()> {
    let shard = ctx.shard().0;
    let log = ctx.log().clone();
    let mut count = sh.counts[shard as usize].load(Ordering::SeqCst);
    loop {
        while let Some(ev) = ctx.poll_control() {
            match ev {
                ControlEvent::Barrier(req) => {
                    let snap = count.to_le_bytes();
                    let snap = req.checkpoint.map(|_| &snap[..]);
                    ctx.complete_barrier(req, snap).await?;
                    if !sh.stop.load(Ordering::SeqCst) {
                        for _ in 0..PER_EPOCH {
                            let d = Data {
                                shard,
                                epoch: log.epoch().0,
                                index: count,
                            };
                            log.append(&data_payload(d, pad_len(count, 400))).await?;
                            count += 1;
                        }
                    }
                    sh.counts[shard as usize].store(count, Ordering::SeqCst);
                }
                _ => return Ok(()),
            }
        }
        glommio::timer::sleep(Duration::from_micros(200)).await;
    }
}

fn config(keep: usize) -> RuntimeConfig {
    RuntimeConfig {
        coordinator: CoordinatorConfig {
            keep_checkpoints: keep,
            ..CoordinatorConfig::default()
        },
        ..runtime_config(
            SHARDS as usize,
            ShardConfig {
                segment_size: 64 << 10,
                buffer_size: 16 << 10,
                write_behind: 2,
                max_record_size: 1024,
                ..small_shard()
            },
        )
    }
}

fn start(dir: &Path, keep: usize, sh: &Arc<Shared>) -> Runtime {
    let sh = sh.clone();
    Runtime::start(dir, config(keep), move |ctx| engine(ctx, sh.clone())).expect("start runtime")
}

fn shutdown(rt: Runtime) {
    within(Duration::from_secs(60), "shutdown", move || rt.shutdown()).expect("clean shutdown");
}

/// The oldest manifest on disk.
fn oldest_manifest(dir: &Path) -> Manifest {
    let ids = manifest_ids(dir);
    read_manifest(dir, ids[0]).expect("oldest manifest validates")
}

/// Safety: no record at or after `replay_from` of the oldest manifest is
/// gone. The oldest segment left must start at or before it.
fn check_nothing_needed_is_gone(dir: &Path, m: &Manifest) {
    for sc in &m.shards {
        let segs: Vec<SegFile> = segments(dir, sc.shard)
            .into_iter()
            .filter(|s| s.header.is_some())
            .collect();
        let first = segs[0].header.as_ref().unwrap();
        assert!(
            first.first_seq <= shardwal::Seq(sc.replay_from),
            "shard {}: segment {} starts at seq {} but checkpoint {} replays from {}",
            sc.shard,
            segs[0].index,
            first.first_seq,
            m.checkpoint,
            sc.replay_from
        );
    }
}

/// Truncation has done all it should for manifest `m`, the oldest retained:
/// every segment wholly before its `replay_from` is gone, and so is every
/// snapshot of an older checkpoint.
fn truncation_done(dir: &Path, m: &Manifest) -> bool {
    m.shards.iter().all(|sc| {
        let segs: Vec<SegFile> = segments(dir, sc.shard)
            .into_iter()
            .filter(|s| s.header.is_some())
            .collect();
        let second_after = segs
            .get(1)
            .is_none_or(|s| s.header.as_ref().unwrap().first_seq > shardwal::Seq(sc.replay_from));
        let snaps_gone = snapshot_ids(dir, sc.shard)
            .iter()
            .all(|&id| id >= m.checkpoint);
        second_after && snaps_gone
    })
}

/// The segments and snapshots of every shard, for failure messages.
fn describe(dir: &Path, m: &Manifest) -> String {
    let mut out = String::new();
    for sc in &m.shards {
        let segs: Vec<String> = segments(dir, sc.shard)
            .iter()
            .map(|s| match &s.header {
                Some(h) => format!("{}@{}", s.index, h.first_seq),
                None => format!("{}@blank", s.index),
            })
            .collect();
        out += &format!(
            "\n  shard {}: replay_from {}, segments (index@first_seq) {:?}, snapshots {:?}",
            sc.shard,
            sc.replay_from,
            segs,
            snapshot_ids(dir, sc.shard)
        );
    }
    out
}

/// Run `epochs` epochs, a checkpoint every `every`; after each checkpoint,
/// check that truncation has not removed anything the oldest retained one
/// needs. Then stop appending, seal one more epoch, and wait until
/// truncation for the oldest retained checkpoint is complete.
fn run_and_truncate(rt: &Runtime, dir: &Path, sh: &Shared, epochs: u64, every: u64) -> Vec<u64> {
    let c = rt.coordinator();
    let mut ids = Vec::new();
    sh.stop.store(false, Ordering::SeqCst);
    for i in 1..=epochs {
        if i.is_multiple_of(every) {
            let info = c
                .checkpoint()
                .expect("checkpoint")
                .wait_timeout(WAIT)
                .expect("checkpoint completes");
            ids.push(info.id.0);
            check_nothing_needed_is_gone(dir, &oldest_manifest(dir));
        } else {
            c.advance_epoch()
                .expect("advance")
                .wait_timeout(WAIT)
                .expect("epoch seals");
        }
    }
    sh.stop.store(true, Ordering::SeqCst);
    c.advance_epoch()
        .expect("advance")
        .wait_timeout(WAIT)
        .expect("epoch seals");
    let m = oldest_manifest(dir);
    let deadline = Instant::now() + WAIT;
    while !truncation_done(dir, &m) {
        assert!(
            Instant::now() < deadline,
            "truncation for checkpoint {} did not happen: {}",
            m.checkpoint,
            describe(dir, &m)
        );
        check_nothing_needed_is_gone(dir, &m);
        std::thread::sleep(Duration::from_millis(5));
    }
    ids
}

/// Everything about the files left once truncation is complete.
fn check_files(dir: &Path, sh: &Shared, keep: usize, ids: &[u64]) -> Vec<Manifest> {
    let retained: Vec<u64> = ids[ids.len() - keep..].to_vec();
    assert_eq!(
        manifest_ids(dir),
        retained,
        "the last {keep} manifests are kept"
    );
    let ms: Vec<Manifest> = retained
        .iter()
        .map(|&id| read_manifest(dir, id).expect("manifest validates"))
        .collect();
    let oldest = &ms[0];
    check_nothing_needed_is_gone(dir, oldest);
    assert!(truncation_done(dir, oldest));
    for s in 0..SHARDS {
        assert_eq!(snapshot_ids(dir, s), retained, "shard {s}: snapshots kept");
        let all = segments(dir, s);
        let data: Vec<&SegFile> = all.iter().filter(|f| f.header.is_some()).collect();
        // Segments are numbered densely; the removed ones are those before
        // the first left, and they held only seqs below its first seq.
        for (k, f) in all.iter().enumerate() {
            assert_eq!(
                f.index,
                all[0].index + k as u64,
                "shard {s}: segment indices"
            );
        }
        assert!(
            data[0].index > 0,
            "shard {s}: truncation removed segments (first left: {})",
            data[0].index
        );
        let first_left = data[0].header.as_ref().unwrap().first_seq;
        let replay_from = oldest.shards[s as usize].replay_from;
        assert!(first_left <= shardwal::Seq(replay_from));
        // Every record left is readable, dense, in order, and its data is
        // the engine's sequence of records.
        let recs = read_log(dir, s, 0);
        assert_eq!(
            recs[0].seq, first_left.0,
            "shard {s}: the log starts at the first segment left"
        );
        assert_dense(s, &recs);
        let data_recs: Vec<Data> = recs
            .iter()
            .filter(|r| r.kind == RecordKind::Data)
            .map(|r| parse_data(&r.payload))
            .collect();
        for w in data_recs.windows(2) {
            assert_eq!(
                w[1].index,
                w[0].index + 1,
                "shard {s}: data records in order"
            );
        }
        assert_eq!(
            data_recs.last().map(|d| d.index + 1),
            Some(sh.counts[s as usize].load(Ordering::SeqCst)),
            "shard {s}: the last record appended is there"
        );
    }
    ms
}

/// After a restart: each retained checkpoint's snapshot plus the log from
/// its `replay_from` gives back every data record appended.
fn check_recovery_from(dir: &Path, sh: &Shared, ms: &[Manifest]) {
    for m in ms {
        for sc in &m.shards {
            let s = sc.shard;
            let snap = read_snapshot(dir, m, s).expect("snapshot verifies");
            let mut next = u64::from_le_bytes(snap[..8].try_into().unwrap());
            let recs = read_log(dir, s, sc.replay_from);
            assert_eq!(
                recs.first().map(|r| r.seq),
                Some(sc.replay_from),
                "shard {s}: replay of checkpoint {} starts at its replay_from",
                m.checkpoint
            );
            assert_dense(s, &recs);
            for r in recs.iter().filter(|r| r.kind == RecordKind::Data) {
                let d = parse_data(&r.payload);
                assert_eq!(
                    d.index, next,
                    "shard {s}: replay after checkpoint {}",
                    m.checkpoint
                );
                assert!(r.epoch > m.epoch);
                next += 1;
            }
            assert_eq!(
                next,
                sh.counts[s as usize].load(Ordering::SeqCst),
                "shard {s}: snapshot of checkpoint {} + replay = every record",
                m.checkpoint
            );
        }
    }
}

fn truncation_keeping(keep: usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sh = Arc::new(Shared {
        counts: (0..SHARDS).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
    });

    // Run 1: 40 epochs, 5 checkpoints, about 20 segments per shard.
    let rt = start(d, keep, &sh);
    let ids = run_and_truncate(&rt, d, &sh, 40, 8);
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    shutdown(rt);
    let ms = check_files(d, &sh, keep, &ids);

    // Run 2: a restart recovers from the newest checkpoint; every retained
    // checkpoint still replays to the end.
    let rt = start(d, keep, &sh);
    assert_eq!(rt.manifest(), ms.last(), "restart uses the newest manifest");
    let sealed = rt.coordinator().sealed_epoch();
    assert!(sealed >= Epoch(41), "the sealed epoch survives: {sealed:?}");
    for r in rt.recovered() {
        assert_eq!(
            r.epoch,
            sealed.next(),
            "shard {}: recovered epoch",
            r.shard.0
        );
    }
    shutdown(rt);
    check_recovery_from(d, &sh, &ms);

    // Run 3: truncation continues from the manifests found on disk.
    let rt = start(d, keep, &sh);
    let more = run_and_truncate(&rt, d, &sh, 3 * (keep as u64 + 1), 3);
    assert_eq!(more.len(), keep + 1);
    assert!(more[0] > 5, "checkpoint ids continue");
    shutdown(rt);
    let ms = check_files(d, &sh, keep, &more);
    check_recovery_from(d, &sh, &ms);
}

#[test]
fn truncation_keeping_one_checkpoint() {
    truncation_keeping(1);
}

#[test]
fn truncation_keeping_two_checkpoints() {
    truncation_keeping(2);
}

/// The minimal case of the bug the two tests above also hit with
/// `keep_checkpoints = 2`: the segments a restart finds before the newest
/// checkpoint's `replay_from` (kept on disk for the older retained
/// checkpoint) must still be removed once later checkpoints make them
/// obsolete.
#[test]
fn segments_kept_for_an_older_checkpoint_are_removed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sh = Arc::new(Shared {
        counts: (0..SHARDS).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
    });
    // Checkpoints 1 and 2 with about 4 segments of data between them.
    let rt = start(d, 2, &sh);
    assert_eq!(run_and_truncate(&rt, d, &sh, 16, 8), vec![1, 2]);
    shutdown(rt);
    let m1 = read_manifest(d, 1).expect("manifest 1");
    let m2 = read_manifest(d, 2).expect("manifest 2");
    for s in 0..SHARDS {
        let kept_for_m1: Vec<u64> = segments(d, s)
            .iter()
            .filter(|f| {
                f.header.as_ref().is_some_and(|h| {
                    h.first_seq <= shardwal::Seq(m2.shards[s as usize].replay_from)
                })
            })
            .map(|f| f.index)
            .collect();
        assert!(
            kept_for_m1.len() >= 2,
            "shard {s}: segments between checkpoints 1 and 2 are kept for checkpoint 1 ({:?})",
            describe(d, &m1)
        );
    }
    // After a restart, checkpoints 3 and 4 make checkpoint 2 the oldest
    // retained: everything wholly before its replay_from must go, including
    // the segments written before the restart.
    let rt = start(d, 2, &sh);
    assert_eq!(run_and_truncate(&rt, d, &sh, 6, 3), vec![3, 4]);
    shutdown(rt);
    check_files(d, &sh, 2, &[1, 2, 3, 4]);
}
