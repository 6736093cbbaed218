//! Asynchronous, streamed checkpoints (`ShardContext::complete_barrier_streamed`).
//!
//! - The seal does not wait for the snapshot: with every shard's snapshot
//!   writer held open, the checkpoint's epoch and later ones seal.
//! - The manifest waits for every marker: with one shard finished and the
//!   other still writing, there is no manifest; once both have finished,
//!   there is, with `replay_from` just after `barrier(e)` and each marker
//!   logged after it.
//! - A writer dropped unfinished fails only its checkpoint.
//! - A crash at every step of a streamed checkpoint (the shards run on
//!   `SimStorage`; shard 1 "dies" after its n-th change, for every n
//!   through the snapshot's writes, its header, fdatasync, directory fsync
//!   and the marker's write and sync) recovers to the newest complete
//!   manifest, with the log bridging the gap: the snapshot of that
//!   checkpoint, then exactly the data of the sealed epochs after it.

use crate::runtime_common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime_common::*;
use shardwal::config::SegmentPrepare;
use shardwal::io::sim::{CrashMode, SimImage};
use shardwal::{
    ControlEvent, CoordinatorConfig, Error, RecordKind, Runtime, RuntimeConfig, ShardConfig,
    ShardContext, ShardId, SimStorage, Storage,
};

const WAIT: Duration = Duration::from_secs(30);
/// Data records each shard logs in each epoch, just before its barrier.
const PER_EPOCH: u64 = 10;
/// Snapshot size: several 1 MiB writes, and a partial last block.
const SNAPSHOT_LEN: usize = (3 << 20) + 1000;
/// Chunks the engine streams its state in.
const CHUNK: usize = 100_000;
/// Crash states built at each crash point.
const SEEDS_PER_POINT: u64 = 4;

thread_local! {
    /// The storage of the shard running on this thread.
    static STORAGE: RefCell<Option<SimStorage>> = const { RefCell::new(None) };
}

/// The state a shard snapshots at checkpoint `id`: deterministic, so the
/// test knows what recovery must hand back.
fn state(shard: u32, id: u64) -> Vec<u8> {
    let mut x = (u64::from(shard) << 32) ^ id ^ 0x9e37_79b9_7f4a_7c15;
    (0..SNAPSHOT_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A shard's streamed snapshot: the seq of its checkpoint's barrier, and
/// the result of `finish`.
type Finished = (u64, Result<(), String>);

/// How the test steers the engines.
#[derive(Default)]
struct Steer {
    /// Shard `s`'s snapshot writer waits while `hold[s]` is set.
    hold: [AtomicBool; 2],
    /// Drop the writer of this (shard, checkpoint) unfinished.
    drop_writer: Mutex<Option<(u32, u64)>>,
    /// Shard 1 halts (as if the process died) this many changes after the
    /// barrier of this checkpoint is durable: (checkpoint, n).
    halt: Mutex<Option<(u64, u64)>>,
    /// Set by the test: every shard takes its crash image and stops.
    crash: AtomicBool,
    crash_seed: AtomicU64,
    images: Mutex<HashMap<u32, SimImage>>,
    /// (shard, checkpoint) → (seq of the checkpoint's barrier, the result
    /// of `finish`).
    finished: Mutex<HashMap<(u32, u64), Finished>>,
}

fn config() -> RuntimeConfig {
    RuntimeConfig {
        coordinator: CoordinatorConfig {
            keep_checkpoints: 2,
            ..CoordinatorConfig::default()
        },
        ..runtime_config(
            2,
            ShardConfig {
                prepare: SegmentPrepare::Create,
                ..small_shard()
            },
        )
    }
}

/// Where the shards' logs live.
enum Disk {
    /// The real directory, through glommio Direct I/O.
    Real,
    /// Simulated disks (rebuilt from the images where given), so that the
    /// test can halt a shard and take crash images.
    Sim(HashMap<u32, SimImage>),
}

/// Start a runtime whose shards answer barriers with streamed snapshots.
fn start(dir: &Path, steer: Arc<Steer>, disk: Disk) -> Runtime {
    match disk {
        Disk::Real => Runtime::start(dir, config(), move |ctx| engine(ctx, steer.clone())),
        Disk::Sim(images) => Runtime::start_with(
            dir,
            config(),
            move |shard: ShardId| {
                let s = images
                    .get(&shard.0)
                    .map_or_else(SimStorage::new, SimStorage::from_image);
                STORAGE.with(|c| *c.borrow_mut() = Some(s.clone()));
                s
            },
            move |ctx| engine(ctx, steer.clone()),
        ),
    }
    .expect("start runtime")
}

/// The engine: logs `PER_EPOCH` data records per epoch before each
/// barrier, answers it at once, and streams the snapshot from a task of its
/// own while it goes on.
async fn engine<S: Storage>(ctx: Rc<ShardContext<S>>, steer: Arc<Steer>) -> shardwal::Result<()> {
    let shard = ctx.shard().0;
    // Only on simulated disks.
    let sim = STORAGE.with(|c| c.borrow().clone());
    let log = ctx.log().clone();
    loop {
        if steer.crash.load(Ordering::Acquire) {
            let seed = steer.crash_seed.load(Ordering::Acquire);
            if let Some(sim) = &sim {
                let img = sim.crash_image(CrashMode::Random, seed ^ u64::from(shard));
                steer.images.lock().unwrap().insert(shard, img);
            }
            // The disk as the crash left it is taken: what happens on this
            // runtime from here on does not count.
            return Ok(());
        }
        let Some(ev) = ctx.poll_control() else {
            glommio::timer::sleep(Duration::from_micros(200)).await;
            continue;
        };
        let ControlEvent::Barrier(req) = ev else {
            return Ok(());
        };
        if log.poisoned().is_some() {
            // Halted: the "dead" process answers nothing.
            continue;
        }
        let epoch = log.epoch().0;
        for index in 0..PER_EPOCH {
            let d = Data {
                shard,
                epoch,
                index,
            };
            if log.append(&data_payload(d, 20)).await.is_err() {
                break;
            }
        }
        let Ok((lsn, writer)) = ctx.complete_barrier_streamed(req).await else {
            continue;
        };
        let Some(mut w) = writer else { continue };
        let id = w.checkpoint().0;
        if *steer.drop_writer.lock().unwrap() == Some((shard, id)) {
            drop(w);
            continue;
        }
        if shard == 1
            && let (Some(sim), Some((c, n))) = (&sim, *steer.halt.lock().unwrap())
            && c == id
        {
            sim.halt_after(n);
        }
        let (steer, log) = (steer.clone(), log.clone());
        glommio::spawn_local(async move {
            while steer.hold[shard as usize].load(Ordering::Acquire) {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            let bytes = state(shard, id);
            let mut r = Ok(());
            for (i, c) in bytes.chunks(CHUNK).enumerate() {
                if let Err(e) = w.write(c).await {
                    r = Err(e.to_string());
                    break;
                }
                // Appends of the next epoch go on meanwhile.
                if i % 8 == 0 {
                    let d = Data {
                        shard,
                        epoch: log.epoch().0,
                        index: 1000 + i as u64,
                    };
                    let _ = log.append(&data_payload(d, 20)).await;
                }
            }
            let r = match r {
                Ok(()) => w.finish().await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            steer
                .finished
                .lock()
                .unwrap()
                .insert((shard, id), (lsn.seq.0, r));
        })
        .detach();
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn finished(steer: &Steer, shard: u32, id: u64) -> Option<Finished> {
    steer.finished.lock().unwrap().get(&(shard, id)).cloned()
}

#[test]
fn the_seal_does_not_wait_for_the_snapshot_and_the_manifest_waits_for_every_marker() {
    let dir = tempfile::tempdir().unwrap();
    let steer = Arc::new(Steer::default());
    steer.hold[0].store(true, Ordering::Release);
    steer.hold[1].store(true, Ordering::Release);
    let rt = start(dir.path(), steer.clone(), Disk::Real);
    let c = rt.coordinator();
    c.advance_epoch()
        .unwrap()
        .wait_timeout(WAIT)
        .expect("epoch 1");
    let ticket = c.checkpoint().expect("request checkpoint 1");
    let (id, epoch) = (ticket.id, ticket.epoch);

    // Both snapshot writers are held open: the epoch seals anyway, and so
    // do later ones.
    wait_for("the checkpoint's epoch to seal", || {
        c.sealed_epoch() >= epoch
    });
    let later = c
        .advance_epoch()
        .unwrap()
        .wait_timeout(WAIT)
        .expect("a later epoch seals while the snapshots are held");
    assert!(later > epoch);
    assert!(manifest_ids(dir.path()).is_empty(), "no manifest yet");

    // One shard finishes: still no manifest.
    steer.hold[0].store(false, Ordering::Release);
    wait_for("shard 0's snapshot", || finished(&steer, 0, id.0).is_some());
    let (_, r0) = finished(&steer, 0, id.0).unwrap();
    r0.expect("shard 0 finishes its snapshot");
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        manifest_ids(dir.path()).is_empty(),
        "the manifest waits for every shard's marker"
    );

    // The other finishes: the checkpoint completes.
    steer.hold[1].store(false, Ordering::Release);
    let info = ticket.wait_timeout(WAIT).expect("checkpoint 1 completes");
    assert_eq!((info.id, info.epoch), (id, epoch));
    assert_eq!(manifest_ids(dir.path()), vec![id.0]);
    let m = read_manifest(dir.path(), id.0).expect("manifest validates");
    for sc in &m.shards {
        let (barrier_seq, r) = finished(&steer, sc.shard, id.0).expect("finished");
        r.expect("the snapshot finished");
        assert_eq!(
            sc.replay_from,
            barrier_seq + 1,
            "shard {}: replay starts just after barrier({})",
            sc.shard,
            epoch.0
        );
        assert!(
            sc.marker_seq > barrier_seq,
            "the marker follows the barrier"
        );
        assert_eq!(
            read_snapshot(dir.path(), &m, sc.shard).expect("snapshot verifies"),
            state(sc.shard, id.0),
            "shard {}: the streamed bytes",
            sc.shard
        );
    }
    c.advance_epoch()
        .unwrap()
        .wait_timeout(WAIT)
        .expect("epoch");
    rt.shutdown().expect("shutdown");
    for s in 0..2 {
        let recs = read_log(dir.path(), s, 0);
        let sc = &m.shards[s as usize];
        let marker = recs.iter().find(|r| r.seq == sc.marker_seq).unwrap();
        assert_eq!(marker.kind, RecordKind::Checkpoint);
        assert!(marker.epoch > epoch.0, "the marker is in a later epoch");
    }
}

#[test]
fn a_writer_dropped_unfinished_fails_only_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let steer = Arc::new(Steer::default());
    *steer.drop_writer.lock().unwrap() = Some((1, 1));
    let rt = start(dir.path(), steer.clone(), Disk::Real);
    let c = rt.coordinator();
    let e = c
        .checkpoint()
        .unwrap()
        .wait_timeout(WAIT)
        .expect_err("checkpoint 1 fails");
    assert!(
        matches!(&e, Error::ShardFailed { shard, .. } if *shard == ShardId(1)),
        "the error names shard 1: {e}"
    );
    assert!(e.to_string().contains("checkpoint 1"), "{e}");
    c.advance_epoch()
        .unwrap()
        .wait_timeout(WAIT)
        .expect("later epochs seal");
    let info = c
        .checkpoint()
        .unwrap()
        .wait_timeout(WAIT)
        .expect("the next checkpoint completes");
    assert_eq!(info.id.0, 2);
    rt.shutdown().expect("shutdown");
    assert_eq!(manifest_ids(dir.path()), vec![2]);
}

/// What one restarted shard found.
#[derive(Debug, Default)]
struct ShardFound {
    checkpoint: Option<u64>,
    /// The snapshot equals `state(shard, checkpoint)`.
    snapshot_ok: bool,
    /// Data replayed, as (epoch, index).
    data: Vec<(u64, u64)>,
}

/// What the restarted runtime's shards found.
#[derive(Debug, Default)]
struct Recovered {
    shards: HashMap<u32, ShardFound>,
}

fn recover(dir: &Path, images: HashMap<u32, SimImage>) -> (Recovered, u64) {
    let log_id_path = dir.join("LOG_ID");
    let log_id_bytes = std::fs::read(&log_id_path).expect("LOG_ID");
    let out = Arc::new(Mutex::new(Recovered::default()));
    let o = out.clone();
    let rt = Runtime::start_with(
        dir,
        RuntimeConfig {
            auto_barriers: true,
            ..config()
        },
        move |shard: ShardId| {
            // Readers check the log's identity through the shard's storage.
            let img = images[&shard.0]
                .clone()
                .with_file(&log_id_path, &log_id_bytes);
            SimStorage::from_image(&img)
        },
        move |ctx| {
            let o = o.clone();
            async move {
                let shard = ctx.shard().0;
                let plan = ctx.replay_plan().clone();
                let snap_ok = match (plan.checkpoint, ctx.snapshot().await?) {
                    (Some(c), Some(b)) => b == state(shard, c.0),
                    (None, None) => true,
                    _ => false,
                };
                let mut data = Vec::new();
                let mut r = ctx.replay().await?;
                while let Some(rec) = r.next().await? {
                    if rec.kind == RecordKind::Data {
                        let d = parse_data(rec.payload);
                        data.push((d.epoch, d.index));
                    }
                }
                let found = ShardFound {
                    checkpoint: plan.checkpoint.map(|c| c.0),
                    snapshot_ok: snap_ok,
                    data,
                };
                o.lock().unwrap().shards.insert(shard, found);
                Ok(())
            }
        },
    )
    .expect("restart after the crash");
    let sealed = rt.recovery_report().sealed.0;
    within(Duration::from_secs(30), "shutdown", move || rt.shutdown()).expect("shutdown");
    let r = std::mem::take(&mut *out.lock().unwrap());
    (r, sealed)
}

/// One crash: shard 1 halts `n` changes into checkpoint 2's streamed
/// snapshot. Returns false once `n` lies beyond the checkpoint's last step.
fn crash_at(n: u64, seed: u64) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let steer = Arc::new(Steer::default());
    *steer.halt.lock().unwrap() = Some((2, n));
    steer.crash_seed.store(seed, Ordering::Release);
    let rt = start(dir.path(), steer.clone(), Disk::Sim(HashMap::new()));
    let c = rt.coordinator();
    c.advance_epoch()
        .unwrap()
        .wait_timeout(WAIT)
        .expect("epoch 1");
    let one = c
        .checkpoint()
        .unwrap()
        .wait_timeout(WAIT)
        .expect("checkpoint 1");
    assert_eq!((one.id.0, one.epoch.0), (1, 2));
    c.advance_epoch()
        .unwrap()
        .wait_timeout(WAIT)
        .expect("epoch 3");
    let two = c.checkpoint().expect("request checkpoint 2");
    assert_eq!(two.epoch.0, 4);
    // Its barrier was durable before the halt: the epoch seals.
    wait_for("epoch 4 to seal", || c.sealed_epoch().0 >= 4);
    let two = two.wait_timeout(WAIT);
    let completed = two.is_ok();
    steer.crash.store(true, Ordering::Release);
    wait_for("the crash images", || {
        steer.images.lock().unwrap().len() == 2
    });
    eprintln!("crash {n}: crashed; checkpoint 2: {two:?}");
    let _ = within(Duration::from_secs(30), "shutdown", move || rt.shutdown());
    let images = std::mem::take(&mut *steer.images.lock().unwrap());

    let (rec, sealed) = recover(dir.path(), images);
    let ctx = format!("crash {n} changes into checkpoint 2 (seed {seed}, completed {completed})");
    eprintln!("{ctx}: recovered");
    assert!(
        sealed >= 4,
        "{ctx}: sealed epoch 4 lost (recovered {sealed})"
    );
    let used = if completed { 2 } else { 1 };
    let checkpoint_epoch = if completed { 4 } else { 2 };
    for s in 0..2u32 {
        let ShardFound {
            checkpoint: ck,
            snapshot_ok: snap_ok,
            data,
        } = &rec.shards[&s];
        assert_eq!(
            *ck,
            Some(used),
            "{ctx}: shard {s} recovers from checkpoint {used}"
        );
        assert!(
            snap_ok,
            "{ctx}: shard {s}: the snapshot of checkpoint {used}"
        );
        // Exactly the data of the epochs after the checkpoint up to the
        // reported seal (epoch 4), nothing of the open epoch 5.
        let want: Vec<(u64, u64)> = (checkpoint_epoch + 1..=4)
            .flat_map(|e| (0..PER_EPOCH).map(move |i| (e, i)))
            .collect();
        let got: Vec<(u64, u64)> = data
            .iter()
            .copied()
            .filter(|&(e, i)| e <= 4 && i < 1000)
            .collect();
        assert_eq!(got, want, "{ctx}: shard {s}: the log bridges the gap");
        // Records appended while a snapshot streamed: only after the
        // checkpoint used.
        assert!(
            data.iter().all(|&(e, _)| e > checkpoint_epoch),
            "{ctx}: shard {s}: a record before the checkpoint was replayed"
        );
        assert!(
            data.iter().all(|&(e, _)| e <= sealed),
            "{ctx}: shard {s}: a record of an unsealed epoch was replayed"
        );
    }
    // Completed although halted: n is past its last change.
    !completed
}

#[test]
fn a_crash_at_every_step_of_a_streamed_checkpoint_recovers_to_the_last_complete_manifest() {
    let seed = std::env::var("SHARDWAL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    eprintln!("SHARDWAL_CRASH_SEED={seed}");
    // SHARDWAL_CRASH_FROM=n replays a failure from crash point n on.
    let mut n = std::env::var("SHARDWAL_CRASH_FROM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // Each crash point with several seeds: unsynced writes kept, dropped
    // or torn at random.
    let mut states = 0;
    while (0..SEEDS_PER_POINT)
        .map(|k| {
            states += 1;
            crash_at(n, seed.wrapping_add(n * SEEDS_PER_POINT + k))
        })
        .fold(false, |a, b| a | b)
    {
        n += 1;
        assert!(n < 200, "the streamed checkpoint never ran to its end");
    }
    eprintln!("explored {} crash points, {states} crash states", n + 1);
    assert!(
        std::env::var("SHARDWAL_CRASH_FROM").is_ok() || n >= 8,
        "a streamed checkpoint takes more than {n} changes"
    );
}
