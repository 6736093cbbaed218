//! The archive (issue 15): a runtime that archives to an object store can be
//! restored on a fresh directory, with another shard count, to the epoch the
//! archive reached, with the same state; the restored node goes on and
//! archives to the same prefix under a newer lease, which stops the old
//! writer; a damaged object is an error naming it, and `repair` falls back
//! to an older index; truncation waits for the archive, and uploads that
//! fail are retried without the watermark moving. One test runs the whole
//! round trip against a real S3 server (moto) on loopback (with the `s3`
//! cargo feature; `.ci/run` runs it).
//!
//! The engine keeps per-key state (an order-sensitive hash chain of the
//! values logged for the key), checkpoints it at some barriers, and
//! restores it from its snapshots plus its replay: a restore that lost or
//! reordered a record, or replayed one past the cut, changes the state.

use crate::common;
use crate::runtime_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use runtime_common::*;
use shardwal::rng::SplitMix;
use shardwal::{
    ArchiveConfig, ControlEvent, CoordinatorConfig, Epoch, RecordKind, RestoreOptions, Runtime,
    RuntimeConfig,
};

type State = BTreeMap<u64, u64>;

fn step(state: u64, value: u64) -> u64 {
    (state ^ value)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
        .wrapping_add(1)
}

fn encode_state(s: &State) -> Vec<u8> {
    s.iter()
        .flat_map(|(k, v)| k.to_le_bytes().into_iter().chain(v.to_le_bytes()))
        .collect()
}

fn decode_state(b: &[u8]) -> State {
    b.chunks_exact(16)
        .map(|c| {
            (
                u64::from_le_bytes(c[..8].try_into().unwrap()),
                u64::from_le_bytes(c[8..].try_into().unwrap()),
            )
        })
        .collect()
}

fn apply(s: &mut State, p: &[u8]) {
    let k = u64::from_le_bytes(p[..8].try_into().unwrap());
    let v = u64::from_le_bytes(p[8..16].try_into().unwrap());
    let e = s.entry(k).or_insert(0);
    *e = step(*e, v);
}

const KEYS: u64 = 40;
/// A core's own key after a restore.
const FRESH: u64 = 1000;

enum Msg {
    Restored(State),
    Final(State),
}

fn config(shards: usize, archive: Option<ArchiveConfig>) -> RuntimeConfig {
    RuntimeConfig {
        coordinator: CoordinatorConfig {
            keep_checkpoints: 1,
            ..CoordinatorConfig::default()
        },
        pin: false,
        archive,
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

fn archive(store: Arc<dyn ObjectStore>) -> ArchiveConfig {
    ArchiveConfig {
        interval: Duration::from_millis(20),
        retry_max: Duration::from_millis(50),
        ..ArchiveConfig::new(store, "logs/test")
    }
}

/// Start `shards` shards; each restores its keys, reports them, then (with
/// `write`) logs values for keys it owns (`k % shards`, plus the keys it
/// restored) until the runtime stops, and reports its final state.
fn start(
    dir: &Path,
    shards: usize,
    write: bool,
    archive: Option<ArchiveConfig>,
) -> (Runtime, mpsc::Receiver<Msg>) {
    let (tx, rx) = mpsc::channel();
    let rt = Runtime::start(dir, config(shards, archive), move |ctx| {
        let tx = tx.clone();
        async move {
            let core = ctx.shard().0 as u64;
            let m = ctx.shard_count() as u64;
            let mut st = State::new();
            for (_, bytes) in ctx.snapshots().await? {
                st.extend(decode_state(&bytes));
            }
            let mut replay = ctx.replay().await?;
            while let Some(r) = replay.next().await? {
                if r.kind == RecordKind::Data {
                    apply(&mut st, r.payload);
                }
            }
            drop(replay);
            let _ = tx.send(Msg::Restored(st.clone()));
            // A new log's keys are dealt out by `k % m`; a restored core
            // keeps the keys it restored (re-sharding gives it whole old
            // shards), plus one fresh key of its own.
            let new_log = ctx.log().epoch() == Epoch::FIRST;
            let mut keys: Vec<u64> = if new_log {
                (0..KEYS).filter(|k| k % m == core).collect()
            } else {
                st.keys().copied().collect()
            };
            if !new_log {
                keys.push(FRESH + core);
            }
            let mut rng = SplitMix(0xA5C ^ (core << 32) ^ ctx.log().epoch().0);
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
                    for _ in 0..24 {
                        let k = keys[(rng.next_u64() % keys.len() as u64) as usize];
                        let mut p = [0u8; 16];
                        p[..8].copy_from_slice(&k.to_le_bytes());
                        p[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
                        ctx.log().append(&p).await?;
                        apply(&mut st, &p);
                    }
                }
                glommio::timer::sleep(Duration::from_micros(200)).await;
            }
        }
    })
    .unwrap_or_else(|e| panic!("start {shards} shards on {}: {e}", dir.display()));
    (rt, rx)
}

fn collect(rx: &mpsc::Receiver<Msg>, cores: usize, restored: bool) -> State {
    let mut all = State::new();
    for _ in 0..cores {
        let st = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Msg::Restored(st)) if restored => st,
            Ok(Msg::Final(st)) if !restored => st,
            Ok(_) => panic!("unexpected message"),
            Err(e) => panic!("waiting for the cores: {e}"),
        };
        for (k, v) in st {
            assert!(all.insert(k, v).is_none(), "key {k} on two cores");
        }
    }
    all
}

/// `epochs` epochs, a checkpoint every third.
fn drive(rt: &Runtime, epochs: usize) {
    drive_every(rt, epochs, Duration::from_millis(4));
}

fn drive_every(rt: &Runtime, epochs: usize, gap: Duration) {
    let c = rt.coordinator();
    for i in 0..epochs {
        std::thread::sleep(gap);
        if i % 3 == 2 {
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

fn restore_to(store: &Arc<dyn ObjectStore>, dir: &Path, repair: bool) -> shardwal::Result<Epoch> {
    shardwal::restore(
        store.clone(),
        &ObjPath::from("logs/test"),
        dir,
        &RestoreOptions {
            repair,
            ..RestoreOptions::default()
        },
    )
    .map(|r| r.epoch)
}

fn block<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn objects(store: &Arc<dyn ObjectStore>, under: &str) -> Vec<String> {
    use futures_lite::StreamExt;
    block(async {
        let mut out = Vec::new();
        let p = ObjPath::from(under);
        let mut s = store.list(Some(&p));
        while let Some(m) = s.next().await {
            out.push(m.unwrap().location.to_string());
        }
        out.sort();
        out
    })
}

#[test]
fn an_archived_log_restores_elsewhere_with_another_shard_count_and_goes_on() {
    round_trip(Arc::new(InMemory::new()));
}

#[cfg(feature = "s3")]
#[test]
fn the_round_trip_through_a_real_s3_server() {
    let Some(server) = common::s3_server::S3Server::start() else {
        return;
    };
    round_trip(server.store());
}

fn round_trip(store: Arc<dyn ObjectStore>) {
    let a = tempfile::tempdir().unwrap();
    let (rt, rx) = start(a.path(), 2, true, Some(archive(store.clone())));
    assert!(collect(&rx, 2, true).is_empty());
    drive(&rt, 24);
    let c = rt.coordinator();
    let sealed = c.sealed_epoch();
    let got = c
        .wait_archived(sealed)
        .unwrap()
        .wait_timeout(Duration::from_secs(30))
        .expect("the archive reaches the sealed epoch");
    assert!(got >= sealed);
    assert_eq!(c.archive_error(), None);
    rt.shutdown().expect("shutdown");
    let written = collect(&rx, 2, false);
    assert_eq!(written.len() as u64, KEYS);

    // The disk is lost: restore on another machine, with 3 shards.
    drop(a);
    let b = tempfile::tempdir().unwrap();
    let bdir = b.path().join("log");
    let epoch = restore_to(&store, &bdir, false).expect("restore");
    assert!(
        epoch >= sealed,
        "restored to {epoch:?}, sealed was {sealed:?}"
    );
    let (rt, rx) = start(&bdir, 3, true, Some(archive(store.clone())));
    assert_eq!(
        rt.recovery_report().sealed,
        epoch,
        "recovers to the archived epoch"
    );
    assert_eq!(
        collect(&rx, 3, true),
        written,
        "the restored state is the written one"
    );
    // It goes on, and archives to the same prefix under a newer lease.
    drive(&rt, 9);
    let c = rt.coordinator();
    let s2 = c.sealed_epoch();
    assert!(s2 > epoch);
    c.wait_archived(s2)
        .unwrap()
        .wait_timeout(Duration::from_secs(30))
        .expect("the restored node archives");
    rt.shutdown().expect("shutdown");
    let written2 = collect(&rx, 3, false);
    let leases = objects(&store, "logs/test");
    assert!(
        leases.iter().any(|o| o.contains("/lease/0000000002")),
        "the restored node took lease 2: {leases:?}"
    );

    // And once more, back to 2 shards, from what the second node archived.
    let c2 = tempfile::tempdir().unwrap();
    let cdir = c2.path().join("log");
    restore_to(&store, &cdir, false).expect("second restore");
    let (rt, rx) = start(&cdir, 2, false, None);
    assert_eq!(collect(&rx, 2, true), written2);
    rt.shutdown().unwrap();
    collect(&rx, 2, false);
}

#[test]
fn a_newer_writer_stops_the_old_one() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let a = tempfile::tempdir().unwrap();
    let (old, rx) = start(a.path(), 2, true, Some(archive(store.clone())));
    collect(&rx, 2, true);
    drive(&old, 4);
    let c = old.coordinator();
    c.wait_archived(c.sealed_epoch())
        .unwrap()
        .wait_timeout(Duration::from_secs(30))
        .unwrap();
    // A replacement node restores while the old one still runs.
    let b = tempfile::tempdir().unwrap();
    let bdir = b.path().join("log");
    restore_to(&store, &bdir, false).unwrap();
    let (new, nrx) = start(&bdir, 2, false, Some(archive(store.clone())));
    collect(&nrx, 2, true);
    drive(&new, 2);
    let nc = new.coordinator();
    nc.wait_archived(nc.sealed_epoch())
        .unwrap()
        .wait_timeout(Duration::from_secs(30))
        .unwrap();
    // The old writer's next pass finds the newer lease and stops.
    drive(&old, 3);
    let t = c.wait_archived(c.sealed_epoch()).unwrap();
    let r = t.wait_timeout(Duration::from_secs(30));
    assert!(
        r.is_err(),
        "the old writer archived past the newer lease: {r:?}"
    );
    let why = c
        .archive_error()
        .expect("the old writer says why it stopped");
    assert!(why.contains("newer writer"), "{why}");
    new.shutdown().unwrap();
    collect(&nrx, 2, false);
    drop(old);
}

#[test]
fn a_damaged_object_is_named_and_repair_falls_back() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let a = tempfile::tempdir().unwrap();
    let (rt, rx) = start(a.path(), 2, true, Some(archive(store.clone())));
    collect(&rx, 2, true);
    // Several passes, so that several indexes are kept.
    for _ in 0..4 {
        drive(&rt, 3);
        let c = rt.coordinator();
        c.wait_archived(c.sealed_epoch())
            .unwrap()
            .wait_timeout(Duration::from_secs(30))
            .unwrap();
    }
    rt.shutdown().unwrap();
    collect(&rx, 2, false);
    let all = objects(&store, "logs/test");
    let indexes: Vec<&String> = all.iter().filter(|o| o.contains("/index/")).collect();
    assert!(indexes.len() >= 2, "{indexes:?}");
    let newest = indexes.last().unwrap();
    let older = indexes[indexes.len() - 2];
    let parts = |ix: &str| -> Vec<String> {
        let b = block(async {
            store
                .get(&ObjPath::from(ix))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        });
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|f| f["parts"].as_array().unwrap().clone())
            .map(|p| p["object"].as_str().unwrap().to_string())
            .collect()
    };
    let old_parts = parts(older);
    let only_newest = parts(newest)
        .into_iter()
        .find(|p| !old_parts.contains(p) && p.contains(".seg."))
        .expect("the newest index has a segment delta of its own");
    let root = newest.split("/index/").next().unwrap();
    let victim = ObjPath::from(format!("{root}/{only_newest}"));
    let mut bytes =
        block(async { store.get(&victim).await.unwrap().bytes().await.unwrap() }).to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    block(store.put(&victim, bytes.into())).unwrap();

    let b = tempfile::tempdir().unwrap();
    let err = restore_to(&store, &b.path().join("log"), false).expect_err("damage is an error");
    let msg = err.to_string();
    assert!(msg.contains(victim.as_ref()), "names the object: {msg}");
    assert!(msg.contains("damaged"), "{msg}");
    assert!(
        !b.path().join("log").exists(),
        "a failed restore leaves no log"
    );
    let epoch = restore_to(&store, &b.path().join("log"), true).expect("repair restores");
    let (rt, rx) = start(&b.path().join("log"), 2, false, None);
    assert_eq!(rt.recovery_report().sealed, epoch);
    collect(&rx, 2, true);
    rt.shutdown().unwrap();
    collect(&rx, 2, false);
}

#[test]
fn truncation_waits_for_the_archive_and_failed_uploads_are_retried() {
    use common::flaky_store::FlakyStore;
    let flaky = Arc::new(FlakyStore::new(Arc::new(InMemory::new()), 0x7A11));
    // Every upload fails: the store is down.
    flaky.set_put_fail_ppm(1_000_000);
    let store: Arc<dyn ObjectStore> = flaky.clone();
    let a = tempfile::tempdir().unwrap();
    let (rt, rx) = start(a.path(), 2, true, Some(archive(store.clone())));
    collect(&rx, 2, true);
    drive_every(&rt, 30, Duration::from_millis(15));
    let c = rt.coordinator();
    assert_eq!(
        c.archived_epoch(),
        Some(Epoch(0)),
        "nothing is archived while uploads fail"
    );
    assert!(flaky.counts().put_failed > 0, "uploads were tried");
    let held = segments(a.path(), 0);
    assert!(held.len() >= 4, "the log rolled: {} segments", held.len());
    assert_eq!(
        held[0].index, 0,
        "no segment was truncated before it was archived"
    );
    let waiting = c.wait_archived(c.sealed_epoch()).unwrap();
    assert!(waiting.wait_timeout(Duration::from_millis(200)).is_err());
    // The store comes back, flaky: one upload in four fails, and is retried.
    flaky.set_put_fail_ppm(250_000);
    waiting
        .wait_timeout(Duration::from_secs(60))
        .expect("the archive catches up once uploads succeed");
    drive_every(&rt, 6, Duration::from_millis(15));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while segments(a.path(), 0)[0].index == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "truncation never happened after the archive caught up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.shutdown().unwrap();
    let written = collect(&rx, 2, false);
    assert!(flaky.counts().put_failed > 0);
    flaky.set_enabled(false);
    let b = tempfile::tempdir().unwrap();
    let bdir = b.path().join("log");
    restore_to(&store, &bdir, false).expect("restore");
    let (rt, rx) = start(&bdir, 2, false, None);
    assert_eq!(collect(&rx, 2, true), written);
    rt.shutdown().unwrap();
    collect(&rx, 2, false);
}
