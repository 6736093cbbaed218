//! Per-core parallel replay after a restart.
//!
//! A 2-shard runtime logs typed records (rkyv `Reading`s) and a commit
//! record every epoch, checkpoints at epoch 5 (each shard's state snapshot,
//! rkyv too), runs epochs 6..=9 and shuts down (which seals epoch 10). Each
//! engine keeps a journal of every record it logged (with the LSN the log
//! returned) and its state at every barrier. On restart, each shard's engine,
//! on its own pinned core:
//!
//! - gets its snapshot bytes of checkpoint 1, exactly;
//! - replays exactly the journal's records after the checkpoint's barrier
//!   through `barrier(10)`: same seqs, epochs, kinds, bytes (the last
//!   barrier may be one the runtime wrote for the engine at shutdown);
//! - reads every data and commit payload in place with
//!   `Record::access::<T>()` (the archive lies inside the record's payload
//!   slice: zero copy), and rebuilds from snapshot + replay exactly the
//!   state it had at `barrier(10)` (or when it returned, at shutdown);
//! - replays concurrently with the other shard (both wait for each other
//!   in the middle of their replay, which a sequential replay could not do);
//! - finds in its replay plan the source offsets and watermark of its
//!   latest commit record (of epoch 9 or 10), and the offsets of all shards
//!   merged.
//!
//! A second test checks the offsets of an engine that commits only when
//! its offsets change: they must survive checkpoints that move the replay
//! position past the commit record.

use crate::recovery_common;

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use recovery_common::*;
use rkyv::{Archive, Deserialize, Serialize};
use shardwal::checkpoint::payloads::{self, CheckpointMarker};
use shardwal::{
    CheckpointId, CommitRecord, ControlEvent, CoordinatorConfig, DmaStorage, Epoch, RecordKind,
    ReplayPlan, Runtime, RuntimeConfig, ShardContext, SourceOffset,
};

const SHARDS: usize = 2;
const KEYS: usize = 16;

/// A typed input record.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Reading {
    shard: u32,
    epoch: u64,
    index: u64,
    key: u64,
    values: Vec<u32>,
    label: String,
}

/// A shard's state; its snapshot is this, archived with rkyv.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
struct State {
    count: u64,
    sum: u64,
    per_key: Vec<u64>,
}

impl State {
    fn apply(&mut self, key: u64, values: impl Iterator<Item = u32>) {
        if self.per_key.is_empty() {
            self.per_key = vec![0; KEYS];
        }
        self.count += 1;
        self.sum += values.map(u64::from).sum::<u64>();
        self.per_key[key as usize % KEYS] += 1;
    }
}

fn reading(shard: u32, epoch: u64, index: u64) -> Reading {
    let r = fill((u64::from(shard) << 40) ^ index, 16);
    Reading {
        shard,
        epoch,
        index,
        key: u64::from(r[0]) * 7 + u64::from(r[1]),
        values: (0..=(index % 6))
            .map(|i| u32::from(r[2 + i as usize]) * 1000)
            .collect(),
        label: format!("reading {shard}/{index}"),
    }
}

/// Everything one shard's engine logged, with the LSNs the log returned.
#[derive(Debug, Default)]
struct Journal {
    shard: u32,
    /// Records in seq order; checkpoint markers with an empty payload.
    records: Vec<Rec>,
    /// (checkpoint id, snapshot bytes).
    snapshots: Vec<(u64, Vec<u8>)>,
    /// (epoch, state at its barrier).
    states: Vec<(u64, State)>,
    /// (epoch, commit record).
    commits: Vec<(u64, CommitRecord)>,
    /// The state when the engine returned.
    final_state: State,
}

impl Journal {
    fn push(&mut self, seq: u64, epoch: u64, kind: RecordKind, payload: Vec<u8>) {
        if let Some(last) = self.records.last() {
            assert_eq!(seq, last.seq + 1, "shard {}: dense seqs", self.shard);
        }
        self.records.push(Rec {
            shard: self.shard,
            seq,
            epoch,
            kind,
            payload,
        });
    }
}

async fn append_reading(
    ctx: &ShardContext<DmaStorage>,
    j: &mut Journal,
    state: &mut State,
    index: &mut u64,
) -> shardwal::Result<()> {
    let r = reading(j.shard, ctx.log().epoch().0, *index);
    *index += 1;
    let p = payloads::encode(&r)?;
    let lsn = ctx.log().append(&p).await?;
    assert_eq!(lsn.epoch.0, r.epoch);
    j.push(lsn.seq.0, lsn.epoch.0, RecordKind::Data, p);
    state.apply(r.key, r.values.iter().copied());
    Ok(())
}

/// The first run's engine: typed records, a commit every epoch, snapshots
/// at checkpoints; sends its journal at shutdown.
async fn first_run(ctx: Rc<ShardContext<DmaStorage>>, tx: Sender<Journal>) -> shardwal::Result<()> {
    let s = ctx.shard().0;
    let mut j = Journal {
        shard: s,
        ..Journal::default()
    };
    let mut state = State::default();
    let mut index = 0u64;
    let mut in_epoch = 0;
    loop {
        while let Some(ev) = ctx.poll_control() {
            let ControlEvent::Barrier(req) = ev else {
                j.final_state = state;
                tx.send(j).map_err(|e| engine_err(e.to_string()))?;
                return Ok(());
            };
            for _ in 0..12 {
                append_reading(&ctx, &mut j, &mut state, &mut index).await?;
            }
            let e = ctx.log().epoch().0;
            let offsets = vec![
                SourceOffset {
                    source: format!("source-{s}"),
                    offset: index,
                },
                SourceOffset {
                    source: "shared".into(),
                    offset: e * 100 + u64::from(s),
                },
            ];
            let commit = CommitRecord {
                epoch: e,
                offsets: offsets.clone(),
                watermark: index * 2,
            };
            let lsn = ctx.commit(offsets, index * 2).await?;
            j.push(lsn.seq.0, e, RecordKind::Commit, payloads::encode(&commit)?);
            j.commits.push((e, commit));
            let snap = req
                .checkpoint
                .map(|_| payloads::encode(&state))
                .transpose()?;
            let lsn = ctx.complete_barrier(req, snap.as_deref()).await?;
            j.push(lsn.seq.0, e, RecordKind::Barrier, Vec::new());
            if let (Some(id), Some(bytes)) = (req.checkpoint, snap) {
                // The epoch sealed first; the marker follows once the
                // snapshot is durable, in the next epoch.
                j.push(lsn.seq.0 + 1, e + 1, RecordKind::Checkpoint, Vec::new());
                j.snapshots.push((id.0, bytes));
            }
            j.states.push((e, state.clone()));
            in_epoch = 0;
        }
        if in_epoch < 40 {
            append_reading(&ctx, &mut j, &mut state, &mut index).await?;
            in_epoch += 1;
        }
        glommio::timer::sleep(Duration::from_micros(200)).await;
    }
}

/// What a shard's engine saw on restart.
#[derive(Debug)]
struct Replayed {
    shard: u32,
    plan: ReplayPlan,
    snapshot: Option<Vec<u8>>,
    records: Vec<Rec>,
    restored: State,
    typed: usize,
    cpu: i32,
    thread: std::thread::ThreadId,
}

/// The restarted engine: snapshot, then the replay, typed and in place.
async fn restore(
    ctx: Rc<ShardContext<DmaStorage>>,
    started: Arc<AtomicUsize>,
    tx: Sender<Replayed>,
) -> shardwal::Result<()> {
    let s = ctx.shard().0;
    let err = |m: String| engine_err(format!("shard {s}: {m}"));
    let plan = ctx.replay_plan().clone();
    let snapshot = ctx.snapshot().await?;
    let mut restored = match &snapshot {
        Some(b) => payloads::decode::<State>(b, "snapshot")?,
        None => State::default(),
    };
    let mut reader = ctx.replay().await?;
    let mut records = Vec::new();
    let mut typed = 0;
    while let Some(rec) = reader.next().await? {
        let range = rec.payload.as_ptr_range();
        let inside = |p: *const u8| range.contains(&p);
        match rec.kind {
            RecordKind::Data => {
                let a = rec.access::<Reading>()?;
                if !inside((a as *const ArchivedReading).cast()) {
                    return Err(err("the archived reading is not inside the payload".into()));
                }
                let (shard, epoch) = (a.shard.to_native(), a.epoch.to_native());
                if (shard, epoch) != (s, rec.lsn.epoch.0)
                    || a.label.as_str() != format!("reading {s}/{}", a.index.to_native())
                {
                    return Err(err(format!("reading {shard}/{epoch} at {}", rec.lsn)));
                }
                restored.apply(a.key.to_native(), a.values.iter().map(|v| v.to_native()));
                typed += 1;
            }
            RecordKind::Commit => {
                let c = rec.access::<CommitRecord>()?;
                if c.epoch.to_native() != rec.lsn.epoch.0 {
                    return Err(err(format!(
                        "commit of epoch {} at {}",
                        c.epoch.to_native(),
                        rec.lsn
                    )));
                }
                typed += 1;
            }
            RecordKind::Checkpoint => {
                rec.access::<CheckpointMarker>()?;
            }
            _ => {}
        }
        records.push(Rec::of(&rec));
        if records.len() == 1 {
            // Meet the other shard in the middle of both replays.
            started.fetch_add(1, Ordering::SeqCst);
            let t0 = Instant::now();
            while started.load(Ordering::SeqCst) < SHARDS {
                if t0.elapsed() > Duration::from_secs(20) {
                    return Err(err("the other shard's replay never started".into()));
                }
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    tx.send(Replayed {
        shard: s,
        plan,
        snapshot,
        records,
        restored,
        typed,
        cpu,
        thread: std::thread::current().id(),
    })
    .map_err(|e| err(e.to_string()))?;
    Ok(())
}

fn config(pin: bool) -> RuntimeConfig {
    RuntimeConfig {
        pin,
        ..runtime_config(SHARDS, small_shard(128 << 10))
    }
}

#[test]
fn each_shard_replays_its_snapshot_and_log_to_the_sealed_epoch_in_parallel() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // First run.
    let (tx, rx) = crossbeam_channel::unbounded();
    let rt =
        Runtime::start(dir, config(false), move |ctx| first_run(ctx, tx.clone())).expect("start");
    let c = rt.coordinator();
    for e in 1..=4 {
        assert_eq!(c.advance_epoch().unwrap().wait().unwrap(), Epoch(e));
    }
    let ckpt = c.checkpoint().unwrap().wait().unwrap();
    assert_eq!(ckpt.epoch, Epoch(5));
    for e in 6..=9 {
        assert_eq!(c.advance_epoch().unwrap().wait().unwrap(), Epoch(e));
    }
    within(Duration::from_secs(30), "shutdown", move || rt.shutdown()).expect("shutdown");
    let sealed = 10; // shutdown seals one more epoch
    let mut journals: Vec<Journal> = rx.try_iter().collect();
    journals.sort_by_key(|j| j.shard);
    assert_eq!(journals.len(), SHARDS);

    // Restart, pinned: every shard restores itself on its own core.
    let (tx, rx) = crossbeam_channel::unbounded();
    let started = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::start(dir, config(true), move |ctx| {
        restore(ctx, started.clone(), tx.clone())
    })
    .expect("restart");
    let report = rt.recovery_report().clone();
    let mut got: Vec<Replayed> = (0..SHARDS)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("replay report")
        })
        .collect();
    within(Duration::from_secs(30), "shutdown", move || rt.shutdown()).expect("shutdown");
    got.sort_by_key(|r| r.shard);

    assert_eq!(report.sealed, Epoch(sealed));
    assert_eq!(report.checkpoint, Some(ckpt.id));
    assert_ne!(
        got[0].thread, got[1].thread,
        "each shard replays on its own thread"
    );
    let cores = shardwal::runtime::available_cores();
    let mut merged: Vec<SourceOffset> = Vec::new();
    for (j, r) in journals.iter().zip(&got) {
        let s = j.shard;
        assert_eq!(r.shard, s);
        if cores.len() >= SHARDS {
            assert_eq!(
                r.cpu, cores[s as usize] as i32,
                "shard {s} replays on its pinned core"
            );
        }
        let p = &r.plan;
        assert_eq!(
            (p.sealed, p.checkpoint),
            (Epoch(sealed), Some(CheckpointId(ckpt.id.0)))
        );
        // The snapshot: exactly the bytes given at checkpoint 1.
        let snap = &j
            .snapshots
            .iter()
            .find(|(id, _)| *id == ckpt.id.0)
            .unwrap()
            .1;
        assert_eq!(r.snapshot.as_ref(), Some(snap), "shard {s}: snapshot");
        // The range: after barrier(5) through barrier(10). The final
        // barrier may have been written by the runtime on the engine's
        // behalf, after the engine returned at shutdown: then it is not in
        // the journal.
        let barrier5 = j
            .records
            .iter()
            .find(|x| x.kind == RecordKind::Barrier && x.epoch == 5)
            .expect("barrier(5) in the journal")
            .seq;
        let last = r.records.last().expect("records to replay");
        assert_eq!(
            (last.kind, last.epoch),
            (RecordKind::Barrier, sealed),
            "shard {s}: the replay ends with barrier({sealed})"
        );
        assert_eq!(
            (p.from.0, p.until.0),
            (barrier5 + 1, last.seq + 1),
            "shard {s}: replay range"
        );
        let journal_end = j.records.last().unwrap().seq;
        assert!(
            j.records.iter().enumerate().all(|(i, x)| x.seq == i as u64),
            "shard {s}: the journal starts at seq 0, dense"
        );
        for (k, g) in r.records.iter().enumerate() {
            assert_eq!(g.seq, p.from.0 + k as u64, "shard {s}: dense replay");
            let Some(w) = j.records.get(g.seq as usize) else {
                assert!(
                    g.kind == RecordKind::Barrier && g.seq > journal_end,
                    "shard {s}: replayed {g:?}, which the engine never wrote"
                );
                continue;
            };
            assert_eq!(
                (g.seq, g.epoch, g.kind),
                (w.seq, w.epoch, w.kind),
                "shard {s}: replayed record"
            );
            if w.kind != RecordKind::Checkpoint {
                assert!(g.payload == w.payload, "shard {s} seq {}: payload", w.seq);
            }
        }
        assert!(
            p.until.0 > journal_end,
            "shard {s}: every record the engine wrote is replayed (it ended at {journal_end}, \
             the replay at {})",
            p.until.0
        );
        let data_and_commits = r
            .records
            .iter()
            .filter(|x| matches!(x.kind, RecordKind::Data | RecordKind::Commit))
            .count();
        assert_eq!(r.typed, data_and_commits, "shard {s}: typed accesses");
        assert!(r.typed > 40, "shard {s}: {} typed records", r.typed);
        // Snapshot + replay = the state at the sealed barrier (the engine's
        // final state if the runtime wrote that barrier).
        let at_sealed = j
            .states
            .iter()
            .find(|(e, _)| *e == sealed)
            .map_or(&j.final_state, |x| &x.1);
        assert_eq!(&r.restored, at_sealed, "shard {s}: restored state");
        // Source offsets of the latest commit record at or before the sealed epoch.
        let commit = &j
            .commits
            .iter()
            .rev()
            .find(|(e, _)| *e <= sealed)
            .unwrap()
            .1;
        assert_eq!(p.offsets, commit.offsets, "shard {s}: offsets");
        assert_eq!(p.watermark, Some(commit.watermark), "shard {s}: watermark");
        for o in &commit.offsets {
            match merged.iter_mut().find(|m| m.source == o.source) {
                Some(m) => m.offset = m.offset.max(o.offset),
                None => merged.push(o.clone()),
            }
        }
    }
    merged.sort_by(|a, b| a.source.cmp(&b.source));
    for r in &got {
        assert_eq!(
            r.plan.merged_offsets, merged,
            "shard {}: merged offsets",
            r.shard
        );
    }
}

/// An engine that commits its offsets only when they change (here: once,
/// in epoch 1), then logs enough to fill several segments per epoch, with
/// checkpoints at epochs 3 and 5 (one manifest kept, so the log before
/// checkpoint 5 is truncated). After a restart, the offsets "as of the
/// sealed epoch" are still those committed in epoch 1: a later checkpoint
/// must not make the recovered offsets go back to nothing.
#[test]
fn source_offsets_committed_before_a_checkpoint_survive_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = RuntimeConfig {
        coordinator: CoordinatorConfig {
            keep_checkpoints: 1,
            ..CoordinatorConfig::default()
        },
        ..runtime_config(SHARDS, small_shard(32 << 10))
    };
    let offset = |s: u32| 1000 + u64::from(s);
    let rt = Runtime::start(dir, cfg.clone(), move |ctx| async move {
        let s = ctx.shard().0;
        loop {
            while let Some(ev) = ctx.poll_control() {
                let ControlEvent::Barrier(req) = ev else {
                    return Ok(());
                };
                let e = ctx.log().epoch().0;
                for i in 0..40u64 {
                    let t = Tag {
                        generation: 0,
                        shard: s,
                        epoch: e,
                        index: i,
                    };
                    ctx.log().append(&t.payload(1000)).await?;
                }
                if e == 1 {
                    let o = SourceOffset {
                        source: format!("source-{s}"),
                        offset: offset(s),
                    };
                    ctx.commit(vec![o], offset(s)).await?;
                }
                let snap = format!("shard {s} at epoch {e}");
                ctx.complete_barrier(req, Some(snap.as_bytes())).await?;
            }
            glommio::timer::sleep(Duration::from_micros(200)).await;
        }
    })
    .expect("start");
    let c = rt.coordinator();
    c.advance_epoch().unwrap().wait().unwrap();
    c.advance_epoch().unwrap().wait().unwrap();
    assert_eq!(c.checkpoint().unwrap().wait().unwrap().epoch, Epoch(3));
    c.advance_epoch().unwrap().wait().unwrap();
    assert_eq!(c.checkpoint().unwrap().wait().unwrap().epoch, Epoch(5));
    c.advance_epoch().unwrap().wait().unwrap();
    within(Duration::from_secs(30), "shutdown", move || rt.shutdown()).expect("shutdown");

    let (tx, rx) = crossbeam_channel::unbounded();
    let rt = Runtime::start(dir, cfg, move |ctx| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((ctx.shard().0, ctx.replay_plan().clone()));
            Ok(())
        }
    })
    .expect("restart");
    let mut plans: Vec<(u32, ReplayPlan)> = (0..SHARDS)
        .map(|_| rx.recv_timeout(Duration::from_secs(30)).expect("plan"))
        .collect();
    within(Duration::from_secs(30), "shutdown", move || rt.shutdown()).expect("shutdown");
    plans.sort_by_key(|p| p.0);
    for (s, plan) in &plans {
        assert_eq!(plan.sealed, Epoch(7));
        assert!(plan.from.0 > 0, "the replay starts at checkpoint 2");
        assert_eq!(
            plan.offsets,
            vec![SourceOffset {
                source: format!("source-{s}"),
                offset: offset(*s)
            }],
            "shard {s}: the offsets committed in epoch 1 are the latest as of epoch 7"
        );
        assert_eq!(plan.watermark, Some(offset(*s)), "shard {s}: watermark");
    }
}
