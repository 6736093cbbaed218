//! Model test of multi-shard recovery (proptest).
//!
//! Each case drives 2 or 3 shards — one `ShardLog` per shard, each on its
//! own simulated disk (`SimStorage`), all on one glommio executor — through
//! a random sequence of appends on random shards, commit records, barriers
//! (every shard ends epoch `e`; the test waits for durability on a random
//! subset of shards), explicit syncs, checkpoints (snapshot files, markers,
//! barrier, then a manifest in the real log directory, as the coordinator
//! writes it; optionally truncation behind the older kept manifest), and
//! crashes. A crash takes every shard's disk at the same instant with
//! `SimStorage::crash(CrashMode::Random, ..)`: each unsynced write is kept,
//! dropped, or torn at 512-byte sectors. Some crashes also damage the
//! newest of the two manifests kept, so recovery must fall back to the
//! older checkpoint (whose log truncation has kept).
//!
//! After each crash the real recovery runs: `Runtime::start_with` on the
//! log directory (its `LOG_ID` and manifests are real files), with a
//! storage factory that rebuilds each shard's crashed disk on that shard's
//! executor. Every shard's engine code reports its replay plan, snapshot
//! and replayed records, and the disk as recovery left it (which the next
//! round of operations continues on). The properties, checked against a
//! model that knows every record appended and which barriers were reported
//! durable:
//!
//! - recovery never fails: an honest crash is never reported as corruption;
//! - the recovered sealed epoch lies between the last epoch whose barrier
//!   was reported durable on every shard and the last barrier issued, and
//!   the newest valid manifest is the checkpoint used (damaged newer ones
//!   are reported as skipped);
//! - every shard replays exactly the model's records from the checkpoint's
//!   replay position through `barrier(sealed)` — same seqs, epochs, kinds
//!   and bytes — and nothing after it survives (writing resumes at the cut,
//!   in epoch `sealed + 1`, which the next round checks on reopening);
//! - the snapshot is the checkpoint's bytes, and the source offsets and
//!   watermark are those of the shard's latest commit record at or before
//!   the sealed epoch (merged over shards by maximum).
//!
//! `PROPTEST_CASES` overrides the number of cases (default 64).

use crate::recovery_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use recovery_common::*;
use shardwal::checkpoint::payloads::{self, CheckpointMarker};
use shardwal::checkpoint::{ShardCheckpoint, manifest, snapshot};
use shardwal::io::sim::CrashMode;
use shardwal::{
    CheckpointId, CommitRecord, Epoch, Lsn, Manifest, RecordKind, RecoveryReport, ReplayPlan,
    Runtime, Seq, ShardConfig, ShardId, ShardLog, SourceOffset, StdStorage,
};

#[derive(Debug, Clone)]
enum Op {
    /// Append `count` data records of about `len` bytes on one shard.
    Append {
        shard: usize,
        count: usize,
        len: usize,
    },
    /// Every shard ends the epoch; shards in `commit` first log a commit
    /// record; the test then waits for the barrier to be durable on the
    /// shards in `wait` (bit masks).
    Barrier { wait: u8, commit: u8 },
    /// `sync()` one shard: everything it holds becomes durable.
    Sync { shard: usize },
    /// Let the background write and sync tasks run for a while.
    Settle,
    /// A checkpoint at the end of the current epoch. Complete: barriers
    /// durable everywhere, then the manifest (and truncation, if asked).
    /// Incomplete: snapshots, markers and barriers issued, no manifest.
    Checkpoint { complete: bool, truncate: bool },
    /// Power loss; with `damage`, the newest manifest is also found damaged
    /// (when two are kept), so recovery must fall back to the older one.
    Crash { seed: u64, damage: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3, 1usize..24, 0usize..700)
            .prop_map(|(shard, count, len)| Op::Append { shard, count, len }),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(wait, commit)| Op::Barrier { wait, commit }),
        1 => (0usize..3).prop_map(|shard| Op::Sync { shard }),
        1 => Just(Op::Settle),
        1 => (any::<bool>(), any::<bool>())
            .prop_map(|(complete, truncate)| Op::Checkpoint { complete, truncate }),
        1 => (any::<u64>(), prop::bool::weighted(0.3))
            .prop_map(|(seed, damage)| Op::Crash { seed, damage }),
    ]
}

/// One record in the model.
#[derive(Debug, Clone)]
struct MRec {
    epoch: u64,
    kind: RecordKind,
    payload: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
struct ShardModel {
    /// Every record appended and not cut by a recovery; `recs[i]` has seq `i`.
    recs: Vec<MRec>,
    /// The highest epoch whose barrier was reported durable on this shard.
    durable_barrier: u64,
}

/// A checkpoint whose manifest is on disk.
#[derive(Debug, Clone)]
struct Ckpt {
    id: u64,
    epoch: u64,
    replay_from: Vec<u64>,
    snapshots: Vec<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Model {
    shards: Vec<ShardModel>,
    /// The epoch of the next record, on every shard.
    epoch: u64,
    /// Manifests on disk, oldest first.
    manifests: Vec<Ckpt>,
    next_checkpoint: u64,
    next_uid: u64,
    /// Segments were removed by truncation since the last recovery.
    truncated: bool,
}

impl Model {
    fn new(n: usize) -> Model {
        Model {
            shards: vec![ShardModel::default(); n],
            epoch: 1,
            manifests: Vec::new(),
            next_checkpoint: 1,
            next_uid: 1,
            truncated: false,
        }
    }

    /// Record an append the writer acknowledged with `lsn`.
    fn push(&mut self, s: usize, lsn: Lsn, kind: RecordKind, payload: Vec<u8>) {
        let sh = &mut self.shards[s];
        assert_eq!(
            (lsn.shard, lsn.seq.0, lsn.epoch.0),
            (ShardId(s as u32), sh.recs.len() as u64, self.epoch),
            "shard {s}: the writer's LSN for a {kind:?} record"
        );
        sh.recs.push(MRec {
            epoch: self.epoch,
            kind,
            payload,
        });
    }

    /// The latest commit record among the first `upto` records of shard `s`.
    fn latest_commit(&self, s: usize, upto: usize) -> Option<CommitRecord> {
        self.shards[s].recs[..upto]
            .iter()
            .rev()
            .find(|r| r.kind == RecordKind::Commit)
            .map(|r| payloads::decode(&r.payload, "commit").expect("model commit decodes"))
    }
}

struct Setup {
    dir: PathBuf,
    n: usize,
    cfg: ShardConfig,
    log_id: [u8; 16],
}

fn shard_config() -> ShardConfig {
    ShardConfig {
        segment_size: 16 << 10,
        buffer_size: 4 << 10,
        write_behind: 2,
        max_record_size: 1024,
        ..ShardConfig::default()
    }
}

/// Open every shard on its disk image, run `ops`, then crash: returns the
/// updated model and every shard's disk after the crash.
async fn phase(
    setup: Arc<Setup>,
    images: Vec<Image>,
    mut model: Model,
    ops: Vec<Op>,
    seed: u64,
) -> (Model, Vec<Image>) {
    let n = setup.n;
    let sims: Vec<_> = images.iter().map(sim_from_image).collect();
    let mut logs = Vec::with_capacity(n);
    for (s, sim) in sims.iter().enumerate() {
        let log = ShardLog::open_with_log_id(
            sim.clone(),
            &setup.dir,
            ShardId(s as u32),
            setup.log_id,
            setup.cfg.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("shard {s}: reopening the recovered log: {e}"));
        // Writing resumes just after the cut, in the epoch after the sealed one.
        assert_eq!(
            (log.next_seq().0, log.epoch().0),
            (model.shards[s].recs.len() as u64, model.epoch),
            "shard {s}: (next seq, epoch) on reopening"
        );
        logs.push(log);
    }
    for op in ops {
        match op {
            Op::Append { shard, count, len } => {
                let s = shard % n;
                for i in 0..count {
                    let uid = model.next_uid;
                    model.next_uid += 1;
                    let mut p = uid.to_le_bytes().to_vec();
                    p.extend_from_slice(&fill(uid, (len + i * 37) % 700));
                    let lsn = logs[s].append(&p).await.expect("append");
                    model.push(s, lsn, RecordKind::Data, p);
                }
            }
            Op::Barrier { wait, commit } => {
                for (s, log) in logs.iter().enumerate() {
                    if commit & (1 << s) != 0 {
                        let uid = model.next_uid;
                        model.next_uid += 1;
                        let c = CommitRecord {
                            epoch: model.epoch,
                            offsets: vec![
                                SourceOffset {
                                    source: format!("src-{s}"),
                                    offset: uid,
                                },
                                SourceOffset {
                                    source: "shared".into(),
                                    offset: uid.wrapping_mul(0x9E37) % 1000,
                                },
                            ],
                            watermark: uid * 10,
                        };
                        let p = payloads::encode(&c).expect("encode commit");
                        let lsn = log
                            .append_kind(RecordKind::Commit, &p)
                            .await
                            .expect("commit");
                        model.push(s, lsn, RecordKind::Commit, p);
                    }
                }
                let mut lsns = Vec::with_capacity(n);
                for (s, log) in logs.iter().enumerate() {
                    let lsn = log.barrier().await.expect("barrier");
                    model.push(s, lsn, RecordKind::Barrier, Vec::new());
                    lsns.push(lsn);
                }
                let e = model.epoch;
                model.epoch += 1;
                for (s, log) in logs.iter().enumerate() {
                    if wait & (1 << s) != 0 {
                        log.wait_durable(lsns[s]).await.expect("barrier durable");
                        model.shards[s].durable_barrier = e;
                    }
                }
            }
            Op::Sync { shard } => {
                let s = shard % n;
                logs[s].sync().await.expect("sync");
                model.shards[s].durable_barrier = model.epoch - 1;
            }
            Op::Settle => {
                for _ in 0..16 {
                    futures_lite::future::yield_now().await;
                }
            }
            Op::Checkpoint { complete, truncate } => {
                let id = model.next_checkpoint;
                model.next_checkpoint += 1;
                let e = model.epoch;
                let mut parts = Vec::with_capacity(n);
                for (s, log) in logs.iter().enumerate() {
                    let snap = fill(id * 1000 + s as u64, 50 + (id as usize * 131 + s * 7) % 900);
                    let sref = snapshot::write(&sims[s], log.dir(), s as u32, id, &snap)
                        .await
                        .expect("snapshot");
                    let marker = CheckpointMarker {
                        checkpoint: id,
                        epoch: e,
                        snapshot: sref.clone(),
                    };
                    let p = payloads::encode(&marker).expect("encode marker");
                    let ml = log
                        .append_kind(RecordKind::Checkpoint, &p)
                        .await
                        .expect("marker");
                    model.push(s, ml, RecordKind::Checkpoint, p);
                    let bl = log.barrier().await.expect("barrier");
                    model.push(s, bl, RecordKind::Barrier, Vec::new());
                    parts.push((ml, bl, sref, snap));
                }
                model.epoch += 1;
                if !complete {
                    continue;
                }
                for (s, log) in logs.iter().enumerate() {
                    log.wait_durable(parts[s].1).await.expect("barrier durable");
                    model.shards[s].durable_barrier = e;
                }
                let m = Manifest {
                    log_id: setup.log_id,
                    checkpoint: id,
                    epoch: e,
                    shards: parts
                        .iter()
                        .enumerate()
                        .map(|(s, (ml, bl, sref, _))| ShardCheckpoint {
                            shard: s as u32,
                            replay_from: bl.seq.0 + 1,
                            marker_seq: ml.seq.0,
                            snapshot: sref.clone(),
                            commit: model.latest_commit(s, bl.seq.0 as usize + 1),
                        })
                        .collect(),
                };
                manifest::write(&StdStorage, &setup.dir, &m)
                    .await
                    .expect("manifest");
                model.manifests.push(Ckpt {
                    id,
                    epoch: e,
                    replay_from: parts.iter().map(|p| p.1.seq.0 + 1).collect(),
                    snapshots: parts.into_iter().map(|p| p.3).collect(),
                });
                if truncate && model.manifests.len() >= 2 {
                    // As the coordinator does with two manifests kept.
                    let drop_n = model.manifests.len() - 2;
                    for old in model.manifests.drain(..drop_n) {
                        std::fs::remove_file(manifest_path(&setup.dir, old.id))
                            .expect("rm manifest");
                    }
                    let oldest = model.manifests[0].clone();
                    for (s, log) in logs.iter().enumerate() {
                        let removed = log
                            .truncate_before(Seq(oldest.replay_from[s]))
                            .await
                            .expect("truncate");
                        model.truncated |= removed > 0;
                    }
                }
            }
            Op::Crash { .. } => unreachable!("phases end at crashes"),
        }
    }
    // Power loss: every disk at this instant, unsynced writes kept, dropped or torn.
    let crashed = sims
        .iter()
        .enumerate()
        .map(|(s, sim)| image_of(&sim.crash(CrashMode::Random, seed ^ (s as u64 * 0x5851_F42D))))
        .collect();
    drop(logs);
    (model, crashed)
}

fn manifest_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(manifest::CHECKPOINT_DIR)
        .join(manifest::manifest_name(id))
}

/// What one shard's engine code saw after recovery.
struct ShardOut {
    shard: usize,
    plan: ReplayPlan,
    snapshot: Result<Option<Vec<u8>>, String>,
    replay: Result<Vec<Rec>, String>,
    next_seq: u64,
    epoch: u64,
    /// The shard's disk as recovery left it (durable state).
    image: Image,
}

/// Run the runtime's recovery on the crashed disks.
fn recover(setup: &Setup, crashed: Vec<Image>) -> (RecoveryReport, Vec<ShardOut>) {
    let crashed = Arc::new(crashed);
    let (tx, rx) = crossbeam_channel::unbounded::<ShardOut>();
    let started = Runtime::start_with(
        &setup.dir,
        runtime_config(setup.n, setup.cfg.clone()),
        move |shard: ShardId| sim_from_image(&crashed[shard.0 as usize]),
        move |ctx| {
            let tx = tx.clone();
            async move {
                let plan = ctx.replay_plan().clone();
                let snapshot = ctx.snapshot().await.map_err(|e| e.to_string());
                let replay = match ctx.replay().await {
                    Ok(r) => drain_merged(r).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let image = image_of(&ctx.log().storage().crash(CrashMode::DropAll, 0));
                let _ = tx.send(ShardOut {
                    shard: ctx.shard().0 as usize,
                    plan,
                    snapshot,
                    replay,
                    next_seq: ctx.log().next_seq().0,
                    epoch: ctx.log().epoch().0,
                    image,
                });
                Ok(())
            }
        },
    );
    let rt = started.unwrap_or_else(|e| panic!("recovery after an honest crash failed: {e}"));
    let mut outs: Vec<ShardOut> = (0..setup.n)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("every shard reports its replay")
        })
        .collect();
    outs.sort_by_key(|o| o.shard);
    let report = rt.recovery_report().clone();
    within(Duration::from_secs(30), "shutdown", move || rt.shutdown()).expect("clean shutdown");
    (report, outs)
}

#[derive(Default)]
struct Stats {
    recoveries: AtomicU64,
    cut: AtomicU64,
    torn: AtomicU64,
    fallbacks: AtomicU64,
    beyond_durable: AtomicU64,
    from_checkpoint: AtomicU64,
    truncated: AtomicU64,
    commits: AtomicU64,
}

/// Compare what recovery produced with the model, then apply the cut to it.
fn check(model: &mut Model, report: &RecoveryReport, outs: &[ShardOut], stats: &Stats) {
    let sealed = report.sealed.0;
    let lower = model
        .shards
        .iter()
        .map(|s| s.durable_barrier)
        .min()
        .unwrap();
    let upper = model.epoch - 1;
    assert!(
        lower <= sealed && sealed <= upper,
        "recovered sealed epoch {sealed}, but barriers up to {lower} were durable everywhere \
         and the last barrier issued was {upper}: {report:?}"
    );
    let newest = model.manifests.last().cloned();
    assert_eq!(
        report.checkpoint,
        newest.as_ref().map(|c| CheckpointId(c.id)),
        "the checkpoint used"
    );
    if let Some(c) = &newest {
        assert!(
            sealed >= c.epoch,
            "sealed epoch {sealed} is before checkpoint {} at epoch {}",
            c.id,
            c.epoch
        );
    }
    stats.recoveries.fetch_add(1, Ordering::Relaxed);
    if sealed > lower {
        stats.beyond_durable.fetch_add(1, Ordering::Relaxed);
    }
    if newest.is_some() {
        stats.from_checkpoint.fetch_add(1, Ordering::Relaxed);
    }
    if model.truncated {
        stats.truncated.fetch_add(1, Ordering::Relaxed);
        model.truncated = false;
    }
    let mut commits = Vec::new();
    let mut untils = Vec::new();
    for (s, out) in outs.iter().enumerate() {
        let recs = &model.shards[s].recs;
        let until = if sealed == 0 {
            0
        } else {
            1 + recs
                .iter()
                .position(|r| r.kind == RecordKind::Barrier && r.epoch == sealed)
                .expect("the model holds barrier(sealed)")
        };
        let from = newest.as_ref().map_or(0, |c| c.replay_from[s] as usize);
        let p = &out.plan;
        assert_eq!(p.sealed, Epoch(sealed), "shard {s}: plan.sealed");
        assert_eq!(
            p.checkpoint, report.checkpoint,
            "shard {s}: plan.checkpoint"
        );
        assert_eq!(
            (p.from.0, p.until.0),
            (from as u64, until as u64),
            "shard {s}: replay range"
        );
        assert_eq!(
            (out.next_seq, out.epoch),
            (until as u64, sealed + 1),
            "shard {s}: writing resumes at the cut, in epoch sealed + 1"
        );
        let r = &report.shards[s];
        assert_eq!(
            (r.shard, r.next_seq, r.epoch),
            (ShardId(s as u32), Seq(until as u64), Epoch(sealed + 1))
        );
        if r.cut_records > 0 {
            stats.cut.fetch_add(1, Ordering::Relaxed);
        }
        if r.torn.is_some() {
            stats.torn.fetch_add(1, Ordering::Relaxed);
        }
        // The snapshot.
        let want_snap = newest.as_ref().map(|c| c.snapshots[s].clone());
        assert_eq!(
            out.snapshot.as_ref(),
            Ok(&want_snap),
            "shard {s}: snapshot of checkpoint {:?}",
            report.checkpoint
        );
        // The records: exactly the model's, from the checkpoint to barrier(sealed).
        let got = out
            .replay
            .as_ref()
            .unwrap_or_else(|e| panic!("shard {s}: replay failed: {e}"));
        for (k, g) in got.iter().enumerate() {
            let seq = from + k;
            assert!(
                seq < until,
                "shard {s}: replay yields seq {} beyond the cut {until}",
                g.seq
            );
            let m = &recs[seq];
            assert_eq!(
                (g.shard, g.seq, g.epoch, g.kind),
                (s as u32, seq as u64, m.epoch, m.kind),
                "shard {s}: record {k} of the replay"
            );
            assert!(
                g.payload == m.payload,
                "shard {s} seq {seq}: payload differs"
            );
        }
        assert_eq!(
            got.len(),
            until - from,
            "shard {s}: number of records replayed"
        );
        // Source offsets and watermark of the latest commit at or before sealed.
        let c = model.latest_commit(s, until);
        if c.is_some() {
            stats.commits.fetch_add(1, Ordering::Relaxed);
        }
        assert_eq!(
            p.offsets,
            c.as_ref().map_or(Vec::new(), |c| c.offsets.clone()),
            "shard {s}: plan.offsets"
        );
        assert_eq!(
            p.watermark,
            c.as_ref().map(|c| c.watermark),
            "shard {s}: plan.watermark"
        );
        commits.push(c);
        untils.push(until);
    }
    let mut merged: Vec<SourceOffset> = Vec::new();
    for o in commits.iter().flatten().flat_map(|c| &c.offsets) {
        match merged.iter_mut().find(|m| m.source == o.source) {
            Some(m) => m.offset = m.offset.max(o.offset),
            None => merged.push(o.clone()),
        }
    }
    merged.sort_by(|a, b| a.source.cmp(&b.source));
    for (s, out) in outs.iter().enumerate() {
        assert_eq!(
            out.plan.merged_offsets, merged,
            "shard {s}: plan.merged_offsets"
        );
    }
    // The recovered log is the model cut at barrier(sealed).
    for (sh, until) in model.shards.iter_mut().zip(untils) {
        sh.recs.truncate(until);
        sh.durable_barrier = sealed;
    }
    model.epoch = sealed + 1;
}

fn run_case(n: usize, ops: Vec<Op>, last_seed: u64, stats: &Stats) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let log_id = futures_lite::future::block_on(shardwal::log_dir::load_or_init(&StdStorage, &dir))
        .expect("log id");
    let setup = Arc::new(Setup {
        dir: dir.clone(),
        n,
        cfg: shard_config(),
        log_id,
    });
    // Split the operations into phases, each ended by a crash.
    let mut phases: Vec<(Vec<Op>, u64, bool)> = Vec::new();
    let mut cur = Vec::new();
    for op in ops {
        match op {
            Op::Crash { seed, damage } => phases.push((std::mem::take(&mut cur), seed, damage)),
            other => cur.push(other),
        }
    }
    phases.push((cur, last_seed, false));
    let mut images = vec![log_id_image(&dir, log_id); n];
    let mut model = Model::new(n);
    let mut damaged: Vec<u64> = Vec::new();
    for (ops, seed, damage) in phases {
        let (st, m) = (setup.clone(), model);
        let (m, crashed) = within(
            Duration::from_secs(60),
            "a phase of operations",
            move || run("recovery-model", move || phase(st, images, m, ops, seed)),
        );
        model = m;
        if damage && model.manifests.len() >= 2 {
            // One flipped payload byte: the manifest's CRC no longer matches.
            let newest = model.manifests.pop().unwrap();
            let path = manifest_path(&dir, newest.id);
            let mut bytes = std::fs::read(&path).expect("read manifest");
            bytes[40] ^= 0x10;
            std::fs::write(&path, bytes).expect("damage manifest");
            damaged.push(newest.id);
            stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        let (report, outs) = recover(&setup, crashed);
        let used = report.checkpoint.map_or(0, |c| c.0);
        let skipped: Vec<u64> = report
            .skipped_manifests
            .iter()
            .map(|(id, _)| id.0)
            .collect();
        let mut want: Vec<u64> = damaged.iter().copied().filter(|&id| id > used).collect();
        want.sort_unstable();
        assert_eq!(
            skipped, want,
            "damaged manifests newer than the one used are reported"
        );
        check(&mut model, &report, &outs, stats);
        images = outs.into_iter().map(|o| o.image).collect();
    }
}

#[test]
fn recovered_state_equals_the_model_at_the_sealed_epoch() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let stats = Stats::default();
    let strategy = (2usize..=3, vec(op(), 1..60), any::<u64>());
    let result = runner.run(&strategy, |(n, ops, last_seed)| {
        run_case(n, ops, last_seed, &stats);
        Ok(())
    });
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "{cases} cases: {} recoveries, {} from a checkpoint ({} after truncation, \
         {} falling back to an older manifest), \
         {} with a sealed epoch beyond the known-durable one, {} shards with unsealed records cut, \
         {} shards with a torn tail, {} shards with source offsets",
        get(&stats.recoveries),
        get(&stats.from_checkpoint),
        get(&stats.truncated),
        get(&stats.fallbacks),
        get(&stats.beyond_durable),
        get(&stats.cut),
        get(&stats.torn),
        get(&stats.commits),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    // The cases exercised what they are meant to.
    for (what, v) in [
        ("recoveries from a checkpoint", &stats.from_checkpoint),
        ("recoveries after truncation", &stats.truncated),
        ("manifest fallbacks", &stats.fallbacks),
        ("consistent cuts of unsealed records", &stats.cut),
        ("torn tails", &stats.torn),
        ("recovered source offsets", &stats.commits),
    ] {
        assert!(cases < 16 || get(v) > 0, "no case produced {what}");
    }
}
