//! Re-sharding: a log written by N shards is recovered and replayed by a
//! runtime of M shards (4→2, 2→4, 3→1), and goes on from there.
//!
//! The engine keeps a per-key state, an order-sensitive hash chain of the
//! values logged for the key. While the log is written by N shards, shard
//! `s` owns the keys `k` with `k % N == s`. Checkpoints snapshot each
//! shard's keys. The test checks:
//! * the state the M cores restore (their snapshots, including those of the
//!   retired shards they adopted, plus their merged replay) has the same
//!   hash as a single-threaded reference replay of the same log (newest
//!   manifest, every shard's snapshot, then every record in (epoch, shard,
//!   seq) order), and equals the state the writers ended with;
//! * every core restores only the keys of the old shards assigned to it
//!   (`s % M`);
//! * new records go to the M shards; retired shards' directories stay until
//!   the next checkpoint and are removed by it;
//! * a second restart with M shards restores exactly what was written since;
//! * crashes (SIGKILL of a child process) right after the re-sharding start
//!   (2→4: new shards with no barrier yet must not pull the sealed epoch
//!   down) and after new epochs sealed (4→2: retired shards must not hold
//!   the seal back) lose nothing sealed.

use crate::child_process;
use crate::runtime_common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use runtime_common::*;
use shardwal::layout::RetiredShard;
use shardwal::rng::SplitMix;
use shardwal::segment::shard_dir;
use shardwal::{
    ControlEvent, CoordinatorConfig, MergedReader, RecordKind, RecoveryReport, Runtime,
    RuntimeConfig, Seq, ShardId, StdStorage,
};

/// Keys written by the first incarnation.
const KEYS: u64 = 48;
/// Fresh key of core `c` after re-sharding (so every core writes).
const FRESH: u64 = 1000;

const DIR_ENV: &str = "SHARDWAL_RESHARD_CHILD_DIR";
const SHARDS_ENV: &str = "SHARDWAL_RESHARD_CHILD_SHARDS";
const OLD_ENV: &str = "SHARDWAL_RESHARD_CHILD_OLD";
const EPOCHS_ENV: &str = "SHARDWAL_RESHARD_CHILD_EPOCHS";
const CHILD_TEST: &str = "child_starts_resharded_until_killed";

type State = BTreeMap<u64, u64>;

fn step(state: u64, value: u64) -> u64 {
    (state ^ value)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
        .wrapping_add(1)
}

fn state_hash(s: &State) -> u64 {
    s.iter().fold(0, |h, (k, v)| step(step(h, *k), *v))
}

fn encode_state(s: &State) -> Vec<u8> {
    s.iter()
        .flat_map(|(k, v)| k.to_le_bytes().into_iter().chain(v.to_le_bytes()))
        .collect()
}

fn decode_state(b: &[u8]) -> State {
    assert_eq!(b.len() % 16, 0, "snapshot length");
    b.chunks_exact(16)
        .map(|c| {
            (
                u64::from_le_bytes(c[..8].try_into().unwrap()),
                u64::from_le_bytes(c[8..].try_into().unwrap()),
            )
        })
        .collect()
}

fn apply(s: &mut State, payload: &[u8]) {
    assert_eq!(payload.len(), 16, "data payload length");
    let k = u64::from_le_bytes(payload[..8].try_into().unwrap());
    let v = u64::from_le_bytes(payload[8..].try_into().unwrap());
    let e = s.entry(k).or_insert(0);
    *e = step(*e, v);
}

fn config(shards: usize) -> RuntimeConfig {
    RuntimeConfig {
        coordinator: CoordinatorConfig {
            keep_checkpoints: 1,
            ..CoordinatorConfig::default()
        },
        ..runtime_config(
            shards,
            shardwal::ShardConfig {
                segment_size: 256 << 10,
                buffer_size: 32 << 10,
                max_record_size: 256,
                ..small_shard()
            },
        )
    }
}

/// What each core sends the test.
enum Msg {
    /// The state it restored, and the old shards it restored from.
    Restored(u32, State, Vec<u32>),
    /// The state it ended with.
    Final(State),
}

/// Start `shards` shards on `dir`. Each core restores its state, reports
/// it, then (with `write`) appends values for its keys until told to stop.
/// `resharded: Some((n, m))` says the log was first written by `n` shards
/// and re-sharded to `m`: key `k` then lives on core `(k % n) % m`, which
/// is checked; `None` for a new log, whose cores take the keys `k % shards`.
fn start(
    dir: &Path,
    shards: usize,
    write: bool,
    resharded: Option<(u32, u32)>,
) -> (Runtime, mpsc::Receiver<Msg>) {
    let (tx, rx) = mpsc::channel();
    let rt = Runtime::start(dir, config(shards), move |ctx| {
        let tx = tx.clone();
        async move {
            let core = ctx.shard().0;
            let m = ctx.shard_count() as u32;
            let mut st = State::new();
            for (shard, bytes) in ctx.snapshots().await? {
                for (k, v) in decode_state(&bytes) {
                    if st.insert(k, v).is_some() {
                        return Err(engine_err(format!(
                            "key {k} in two snapshots (shard {})",
                            shard.0
                        )));
                    }
                }
            }
            let mut replay = ctx.replay().await?;
            let mut seen = Vec::new();
            while let Some(r) = replay.next().await? {
                if !seen.contains(&r.lsn.shard.0) {
                    seen.push(r.lsn.shard.0);
                }
                if r.kind == RecordKind::Data {
                    apply(&mut st, r.payload);
                }
            }
            let plan = ctx.replay_plan();
            let mut from: Vec<u32> = plan
                .sources(ctx.shard())
                .iter()
                .map(|s| s.shard.0)
                .collect();
            from.sort_unstable();
            if let Some((n, m)) = resharded {
                for k in st.keys().filter(|k| **k < KEYS) {
                    let old = (k % n as u64) as u32;
                    if old % m != core {
                        return Err(engine_err(format!(
                            "core {core} restored key {k} of old shard {old}"
                        )));
                    }
                }
            }
            let _ = tx.send(Msg::Restored(core, st.clone(), from));
            let mut keys: Vec<u64> = match resharded {
                None => (0..KEYS).filter(|k| k % m as u64 == core as u64).collect(),
                Some(_) => st.keys().copied().filter(|k| *k < KEYS).collect(),
            };
            keys.push(FRESH + core as u64);
            let mut rng = SplitMix(0x5EED ^ ((core as u64) << 32) ^ ctx.log().epoch().0);
            loop {
                while let Some(ev) = ctx.poll_control() {
                    match ev {
                        ControlEvent::Barrier(req) => {
                            let snap = req.checkpoint.map(|_| encode_state(&st));
                            ctx.complete_barrier(req, snap.as_deref()).await?;
                        }
                        _ => {
                            let _ = tx.send(Msg::Final(st));
                            return Ok(());
                        }
                    }
                }
                if write {
                    for _ in 0..4 {
                        let k = keys[(rng.next_u64() % keys.len() as u64) as usize];
                        let mut p = [0u8; 16];
                        p[..8].copy_from_slice(&k.to_le_bytes());
                        p[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
                        ctx.log().append(&p).await?;
                        apply(&mut st, &p);
                    }
                }
                glommio::timer::sleep(Duration::from_micros(300)).await;
            }
        }
    })
    .unwrap_or_else(|e| panic!("start {shards} shards on {}: {e}", dir.display()));
    (rt, rx)
}

/// The union of the states the cores restored, checking that no key is
/// restored twice; and which old shards each core replayed.
fn restored(rx: &mpsc::Receiver<Msg>, cores: usize) -> (State, BTreeMap<u32, Vec<u32>>) {
    let mut all = State::new();
    let mut from = BTreeMap::new();
    for _ in 0..cores {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Msg::Restored(core, st, f)) => {
                for (k, v) in st {
                    assert!(all.insert(k, v).is_none(), "key {k} restored on two cores");
                }
                from.insert(core, f);
            }
            Ok(Msg::Final(..)) => panic!("a core ended before all restored"),
            Err(e) => panic!("waiting for the cores to restore: {e}"),
        }
    }
    (all, from)
}

fn finals(rx: &mpsc::Receiver<Msg>, cores: usize) -> State {
    let mut all = State::new();
    for _ in 0..cores {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Msg::Final(st)) => {
                for (k, v) in st {
                    assert!(all.insert(k, v).is_none(), "key {k} held by two cores");
                }
            }
            Ok(Msg::Restored(..)) => panic!("unexpected restore"),
            Err(e) => panic!("waiting for the cores' final states: {e}"),
        }
    }
    all
}

/// Run `epochs` epochs, with a checkpoint instead of an epoch at the
/// indices in `checkpoints`.
fn drive(rt: &Runtime, epochs: usize, checkpoints: &[usize]) {
    let c = rt.coordinator();
    for i in 0..epochs {
        std::thread::sleep(Duration::from_millis(3));
        if checkpoints.contains(&i) {
            c.checkpoint()
                .and_then(|t| t.wait_timeout(Duration::from_secs(30)))
                .expect("checkpoint");
        } else {
            c.advance_epoch()
                .and_then(|t| t.wait_timeout(Duration::from_secs(30)))
                .expect("epoch");
        }
    }
}

/// Single-threaded reference replay of the log as it is on disk (cleanly
/// shut down: nothing to cut): the newest manifest's snapshots of every
/// shard, then every record of every shard directory present from the
/// manifest's position, in (epoch, shard, seq) order.
fn reference(dir: &Path) -> State {
    let (m, _) = load_newest(dir);
    let mut st = State::new();
    let mut shards: Vec<u32> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            n.strip_prefix("shard-")?.parse().ok()
        })
        .collect();
    shards.sort_unstable();
    let mut ranges = Vec::new();
    for s in shards {
        let entry = m
            .as_ref()
            .and_then(|m| m.shards.iter().find(|e| e.shard == s));
        if let (Some(m), Some(e)) = (&m, entry) {
            let b = futures_lite::future::block_on(shardwal::checkpoint::snapshot::read(
                &StdStorage,
                &shard_dir(dir, ShardId(s)),
                s,
                m.checkpoint,
                &e.snapshot,
            ))
            .expect("reference: snapshot");
            for (k, v) in decode_state(&b) {
                assert!(st.insert(k, v).is_none(), "reference: key {k} twice");
            }
        }
        ranges.push((
            ShardId(s),
            Seq(entry.map_or(0, |e| e.replay_from)),
            Seq(u64::MAX),
        ));
    }
    futures_lite::future::block_on(async {
        let mut r = MergedReader::open_shards(StdStorage, dir, &ranges)
            .await
            .expect("reference: open");
        while let Some(rec) = r.next().await.expect("reference: read") {
            if rec.kind == RecordKind::Data {
                apply(&mut st, rec.payload);
            }
        }
    });
    st
}

fn dirs_of(dir: &Path, shards: impl Iterator<Item = u32>) -> Vec<bool> {
    shards
        .map(|s| shard_dir(dir, ShardId(s)).is_dir())
        .collect()
}

/// The first incarnation: `n` shards, a checkpoint in the middle, clean
/// shutdown. Returns the state the writers ended with, checked against the
/// reference replay, and the sealed epoch.
fn write_first(dir: &Path, n: usize) -> (State, u64) {
    let (rt, rx) = start(dir, n, true, None);
    let (st, _) = restored(&rx, n);
    assert!(st.is_empty(), "a new log restores nothing");
    drive(&rt, 10, &[4]);
    let c = rt.coordinator();
    rt.shutdown().expect("shutdown");
    let fin = finals(&rx, n);
    assert!(fin.len() as u64 >= KEYS / 2, "the writers wrote most keys");
    let r = reference(dir);
    assert_eq!(r, fin, "reference replay of the {n}-shard log");
    (fin, c.sealed_epoch().0)
}

fn reshard(n: usize, m: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (first, sealed) = write_first(dir, n);
    let reference_hash = state_hash(&reference(dir));

    // Re-sharded start: restore, check, then write on the M shards.
    let (rt, rx) = start(dir, m, true, Some((n as u32, m as u32)));
    let (got, from) = restored(&rx, m);
    assert_eq!(
        state_hash(&got),
        reference_hash,
        "{n}->{m}: restored state hash vs the single-threaded reference replay"
    );
    assert_eq!(got, first, "{n}->{m}: restored state vs what was written");
    for (core, f) in &from {
        let expect: Vec<u32> = (0..n.max(m) as u32)
            .filter(|s| s % m as u32 == *core && (*s == *core || *s >= m as u32))
            .collect();
        assert_eq!(f, &expect, "{n}->{m}: old shards replayed by core {core}");
    }
    let rep: RecoveryReport = rt.recovery_report().clone();
    assert_eq!(rep.sealed.0, sealed, "{n}->{m}: sealed epoch kept");
    let retired: Vec<RetiredShard> = (m as u32..n as u32)
        .map(|shard| RetiredShard {
            shard,
            epoch: sealed,
        })
        .collect();
    assert_eq!(rep.layout.retired, retired, "{n}->{m}: retired shards");
    assert_eq!(
        rep.layout.joined,
        (0..m as u64)
            .map(|s| if s < n as u64 { 0 } else { sealed })
            .collect::<Vec<_>>(),
        "{n}->{m}: join epochs"
    );
    // Retired logs stay until the next checkpoint, which removes them.
    drive(&rt, 3, &[]);
    assert!(
        dirs_of(dir, m as u32..n as u32).iter().all(|d| *d),
        "{n}->{m}: retired shards are kept until a checkpoint"
    );
    drive(&rt, 3, &[1]);
    assert!(
        dirs_of(dir, m as u32..n as u32).iter().all(|d| !*d),
        "{n}->{m}: the checkpoint removes the retired shards' directories"
    );
    let layout =
        futures_lite::future::block_on(shardwal::layout::read(&StdStorage, dir, log_id(dir)))
            .unwrap()
            .expect("a layout file");
    assert!(layout.retired.is_empty(), "{n}->{m}: layout after removal");
    rt.shutdown().expect("shutdown");
    let second = finals(&rx, m);
    assert_eq!(
        reference(dir),
        second,
        "{n}->{m}: reference replay after writing on {m} shards"
    );
    for s in 0..m as u32 {
        assert!(
            segments(dir, s).iter().any(|f| f.header.is_some()),
            "shard {s} was written"
        );
    }

    // A second restart on M shards restores what was written since.
    let (rt, rx) = start(dir, m, false, Some((n as u32, m as u32)));
    let (again, _) = restored(&rx, m);
    assert_eq!(again, second, "{n}->{m}: restart after re-sharding");
    rt.shutdown().expect("shutdown");
    finals(&rx, m);
}

#[test]
fn four_to_two() {
    reshard(4, 2);
}

#[test]
fn two_to_four() {
    reshard(2, 4);
}

#[test]
fn three_to_one() {
    reshard(3, 1);
}

/// The child: starts the runtime with the given number of shards on an
/// existing log, prints `READY`, then runs the given number of epochs,
/// printing each sealed one, and waits to be killed.
#[test]
#[ignore = "child process of the re-sharding crash tests"]
fn child_starts_resharded_until_killed() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let shards: usize = std::env::var(SHARDS_ENV).unwrap().parse().unwrap();
    let old: u32 = std::env::var(OLD_ENV).unwrap().parse().unwrap();
    let epochs: usize = std::env::var(EPOCHS_ENV).unwrap().parse().unwrap();
    let (rt, rx) = start(Path::new(&dir), shards, true, Some((old, shards as u32)));
    restored(&rx, shards);
    println!("READY");
    let c = rt.coordinator();
    for _ in 0..epochs {
        let e = c
            .advance_epoch()
            .and_then(|t| t.wait_timeout(Duration::from_secs(30)))
            .expect("child: epoch");
        println!("SEALED {}", e.0);
    }
    println!("DONE");
    std::thread::sleep(Duration::from_secs(60));
}

/// Run the child with `shards` shards on `dir` (first written by `old`), kill it once it printed
/// `DONE`, and return the last sealed epoch it printed.
fn run_child_and_kill(dir: &Path, old: usize, shards: usize, epochs: usize) -> Option<u64> {
    let mut child = child_process::child_test(module_path!(), CHILD_TEST)
        .env(DIR_ENV, dir)
        .env(SHARDS_ENV, shards.to_string())
        .env(OLD_ENV, old.to_string())
        .env(EPOCHS_ENV, epochs.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let mut sealed = None;
    let mut done = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.expect("child stdout");
        if let Some(e) = line.strip_prefix("SEALED ") {
            sealed = Some(e.parse().unwrap());
        }
        if line == "DONE" {
            done = true;
            break;
        }
    }
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap child");
    assert!(
        done && status.signal() == Some(libc::SIGKILL),
        "the child failed before it was killed: {status}"
    );
    sealed
}

/// 2→4, killed right after the start, before the new shards wrote any
/// barrier: the sealed epoch and the state survive.
#[test]
fn crash_right_after_growing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (first, sealed) = write_first(dir, 2);
    assert_eq!(run_child_and_kill(dir, 2, 4, 0), None);
    let (rt, rx) = start(dir, 4, false, Some((2, 4)));
    let (got, _) = restored(&rx, 4);
    assert_eq!(
        rt.recovery_report().sealed.0,
        sealed,
        "sealed epoch after the crash"
    );
    assert_eq!(got, first, "state after a crash right after re-sharding");
    rt.shutdown().expect("shutdown");
    finals(&rx, 4);
}

/// 4→2, killed after new epochs sealed on the two shards: the retired
/// shards (whose logs end at the old sealed epoch) do not hold the sealed
/// epoch back, and the replay matches the reference.
#[test]
fn crash_after_shrinking() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, sealed) = write_first(dir, 4);
    let printed = run_child_and_kill(dir, 4, 2, 4).expect("the child sealed epochs");
    assert!(
        printed >= sealed + 4,
        "the child sealed {printed}, from {sealed}"
    );
    let (rt, rx) = start(dir, 2, false, Some((4, 2)));
    let (got, _) = restored(&rx, 2);
    let rep = rt.recovery_report().clone();
    assert!(
        rep.sealed.0 >= printed,
        "recovered sealed epoch {} but the child saw {printed} sealed",
        rep.sealed.0
    );
    assert_eq!(
        rep.layout
            .retired
            .iter()
            .map(|r| r.shard)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    rt.shutdown().expect("shutdown");
    finals(&rx, 2);
    // Nothing was written since the restore, and the retired shards are
    // still there (no checkpoint since): the reference replay reads them.
    assert_eq!(reference(dir), got, "state after a crash after shrinking");
}
