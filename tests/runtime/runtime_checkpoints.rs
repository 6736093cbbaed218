//! Checkpoints with snapshots: the manifest matches the shards' logs (marker,
//! barrier, snapshot bytes, commit record), a damaged newest manifest or a
//! crash between the temp write and the rename leaves the previous manifest
//! in use, and checkpoint ids and epochs continue after a restart.

use crate::runtime_common;

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use runtime_common::*;
use shardwal::checkpoint::payloads::{self, CheckpointMarker};
use shardwal::checkpoint::snapshot::snapshot_name;
use shardwal::rng::SplitMix;
use shardwal::{
    CheckpointId, CommitRecord, ControlEvent, CoordinatorConfig, DmaStorage, Epoch, RecordKind,
    Runtime, ShardContext, SourceOffset,
};

const WAIT: Duration = Duration::from_secs(30);

/// Snapshot bytes the engines supplied, by (shard, checkpoint).
type Snapshots = HashMap<(u32, u64), Vec<u8>>;
/// Commit records the engines logged, by (shard, epoch).
type Commits = HashMap<(u32, u64), CommitRecord>;

/// What the engine tells the test it did.
#[derive(Debug)]
enum Report {
    Commit {
        shard: u32,
        rec: CommitRecord,
    },
    Snapshot {
        shard: u32,
        checkpoint: u64,
        bytes: Vec<u8>,
    },
}

/// The engine's state snapshot: how many data records it had appended, then
/// identification, then filler so snapshots span several blocks.
fn snapshot_bytes(shard: u32, checkpoint: u64, epoch: u64, count: u64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&count.to_le_bytes());
    v.extend_from_slice(&u64::from(shard).to_le_bytes());
    v.extend_from_slice(&checkpoint.to_le_bytes());
    v.extend_from_slice(&epoch.to_le_bytes());
    let pad = ((checkpoint * 3001 + u64::from(shard) * 17) % 9000) as usize;
    let mut rng = SplitMix(checkpoint << 8 | u64::from(shard));
    v.extend((0..pad).map(|_| rng.next_u64() as u8));
    v
}

fn snapshot_count(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

/// An engine that appends data, commits every epoch (offset = records
/// appended, watermark derived from the epoch) and snapshots at checkpoints.
async fn engine(
    ctx: Rc<ShardContext<DmaStorage>>,
    tx: mpsc::Sender<Report>,
) -> shardwal::Result<()> {
    let shard = ctx.shard().0;
    let log = ctx.log().clone();
    let mut count = 0u64;
    loop {
        while let Some(ev) = ctx.poll_control() {
            match ev {
                ControlEvent::Barrier(req) => {
                    let rec = CommitRecord {
                        epoch: req.epoch.0,
                        offsets: vec![
                            SourceOffset {
                                source: format!("feed-{shard}"),
                                offset: count,
                            },
                            SourceOffset {
                                source: "shared".into(),
                                offset: req.epoch.0 * 7,
                            },
                        ],
                        watermark: req.epoch.0 * 1000 + u64::from(shard),
                    };
                    ctx.commit(rec.offsets.clone(), rec.watermark).await?;
                    let _ = tx.send(Report::Commit { shard, rec });
                    let snap = req
                        .checkpoint
                        .map(|c| snapshot_bytes(shard, c.0, req.epoch.0, count));
                    ctx.complete_barrier(req, snap.as_deref()).await?;
                    if let (Some(c), Some(bytes)) = (req.checkpoint, snap) {
                        let _ = tx.send(Report::Snapshot {
                            shard,
                            checkpoint: c.0,
                            bytes,
                        });
                    }
                }
                _ => return Ok(()),
            }
        }
        for _ in 0..3 {
            let d = Data {
                shard,
                epoch: log.epoch().0,
                index: count,
            };
            log.append(&data_payload(d, pad_len(count, 100))).await?;
            count += 1;
        }
        glommio::timer::sleep(Duration::from_micros(200)).await;
    }
}

fn start(dir: &Path, shards: usize, keep: usize) -> (Runtime, mpsc::Receiver<Report>) {
    let (tx, rx) = mpsc::channel();
    let cfg = shardwal::RuntimeConfig {
        coordinator: CoordinatorConfig {
            keep_checkpoints: keep,
            ..CoordinatorConfig::default()
        },
        ..runtime_config(shards, small_shard())
    };
    let rt = Runtime::start(dir, cfg, move |ctx| engine(ctx, tx.clone())).expect("start runtime");
    (rt, rx)
}

fn shutdown(rt: Runtime) {
    within(Duration::from_secs(60), "shutdown", move || rt.shutdown()).expect("clean shutdown");
}

/// Run `epochs` epochs; every `every`-th is a checkpoint. Returns the
/// checkpoints taken as (id, epoch).
fn run_epochs(rt: &Runtime, epochs: u64, every: u64) -> Vec<(u64, u64)> {
    let c = rt.coordinator();
    let mut taken = Vec::new();
    for i in 1..=epochs {
        if i.is_multiple_of(every) {
            let t = c.checkpoint().expect("request checkpoint");
            let info = t.wait_timeout(WAIT).expect("checkpoint completes");
            assert_eq!(info.id, t.id);
            assert_eq!(info.epoch, t.epoch);
            assert!(info.manifest.exists(), "{} exists", info.manifest.display());
            assert!(
                c.sealed_epoch() >= info.epoch,
                "a checkpoint's epoch is sealed"
            );
            taken.push((info.id.0, info.epoch.0));
        } else {
            let t = c.advance_epoch().expect("advance epoch");
            t.wait_timeout(WAIT).expect("epoch seals");
        }
    }
    taken
}

/// Check manifest `m` against the shards' logs and the engine's reports.
fn check_manifest_against_logs(
    dir: &Path,
    m: &shardwal::Manifest,
    snapshots: &Snapshots,
    commits: &Commits,
) {
    assert_eq!(m.log_id, log_id(dir), "manifest belongs to this log");
    for (i, sc) in m.shards.iter().enumerate() {
        let shard = sc.shard;
        assert_eq!(shard, i as u32, "manifest shards are ordered by id");
        let recs = read_log(dir, shard, 0);
        assert_dense(shard, &recs);
        let first = recs[0].seq;
        let at = |seq: u64| &recs[(seq - first) as usize];

        // The marker names the snapshot.
        let marker = at(sc.marker_seq);
        assert_eq!(
            marker.kind,
            RecordKind::Checkpoint,
            "shard {shard}: marker kind"
        );
        // The epoch sealed without waiting for the snapshot: the marker is
        // logged once the snapshot is durable, in a later epoch.
        assert!(
            marker.epoch > m.epoch,
            "shard {shard}: marker in epoch {}, after the checkpoint's epoch {}",
            marker.epoch,
            m.epoch
        );
        let mk: CheckpointMarker =
            payloads::decode(&marker.payload, "checkpoint marker").expect("marker decodes");
        assert_eq!(mk.checkpoint, m.checkpoint);
        assert_eq!(mk.epoch, m.epoch);
        assert_eq!(
            mk.snapshot, sc.snapshot,
            "shard {shard}: marker and manifest agree"
        );
        assert_eq!(sc.snapshot.file, snapshot_name(m.checkpoint));

        // Replay starts just after the barrier that ends the epoch.
        let barrier = at(sc.replay_from - 1);
        assert_eq!(
            barrier.kind,
            RecordKind::Barrier,
            "shard {shard}: record before replay_from"
        );
        assert_eq!(barrier.epoch, m.epoch);
        assert!(
            sc.marker_seq >= sc.replay_from,
            "shard {shard}: the marker follows the barrier"
        );

        // The snapshot holds the bytes the engine supplied, and they
        // describe exactly the data logged before the checkpoint.
        let snap = read_snapshot(dir, m, shard).expect("snapshot verifies");
        assert_eq!(
            Some(&snap),
            snapshots.get(&(shard, m.checkpoint)),
            "shard {shard}: snapshot bytes of checkpoint {}",
            m.checkpoint
        );
        let data_before = recs
            .iter()
            .filter(|r| r.seq < sc.replay_from && r.kind == RecordKind::Data)
            .count() as u64;
        assert_eq!(
            snapshot_count(&snap),
            data_before,
            "shard {shard}: the snapshot matches the log position"
        );

        // The commit record of the epoch is in the log and in the manifest.
        let expected = commits
            .get(&(shard, m.epoch))
            .expect("engine committed the epoch");
        assert_eq!(
            sc.commit.as_ref(),
            Some(expected),
            "shard {shard}: manifest offsets"
        );
        let logged: Vec<CommitRecord> = recs
            .iter()
            .filter(|r| r.kind == RecordKind::Commit && r.epoch == m.epoch)
            .map(|r| payloads::decode(&r.payload, "commit").expect("commit decodes"))
            .collect();
        assert_eq!(
            logged,
            vec![expected.clone()],
            "shard {shard}: logged commit"
        );
        let commit_seq = recs
            .iter()
            .find(|r| r.kind == RecordKind::Commit && r.epoch == m.epoch)
            .map(|r| r.seq)
            .unwrap();
        assert!(
            commit_seq < sc.replay_from - 1,
            "the commit precedes the barrier"
        );
    }
}

fn collect(rx: &mpsc::Receiver<Report>) -> (Snapshots, Commits) {
    let (mut snaps, mut commits) = (HashMap::new(), HashMap::new());
    for r in rx.try_iter() {
        match r {
            Report::Snapshot {
                shard,
                checkpoint,
                bytes,
            } => {
                snaps.insert((shard, checkpoint), bytes);
            }
            Report::Commit { shard, rec } => {
                commits.insert((shard, rec.epoch), rec);
            }
        }
    }
    (snaps, commits)
}

#[test]
fn manifests_match_the_shards_logs_snapshots_and_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, rx) = start(dir.path(), 3, 3);
    assert!(rt.manifest().is_none(), "a new log has no manifest");
    let taken = run_epochs(&rt, 12, 4);
    assert_eq!(taken, vec![(1, 4), (2, 8), (3, 12)]);
    shutdown(rt);
    let (snaps, commits) = collect(&rx);
    assert_eq!(snaps.len(), 9, "every shard snapshotted every checkpoint");
    assert_eq!(manifest_ids(dir.path()), vec![1, 2, 3]);
    for (id, epoch) in taken {
        let m = read_manifest(dir.path(), id).expect("manifest validates");
        assert_eq!((m.checkpoint, m.epoch), (id, epoch));
        assert_eq!(m.shards.len(), 3);
        check_manifest_against_logs(dir.path(), &m, &snaps, &commits);
    }
    let (newest, skipped) = load_newest(dir.path());
    assert_eq!(newest.map(|m| m.checkpoint), Some(3));
    assert!(skipped.is_empty());
}

/// Restart on `dir` and return the manifest the runtime chose, checking
/// that it is still usable: its snapshots verify and the log from each
/// shard's `replay_from` is there.
fn restart_and_check_fallback(dir: &Path, want: &shardwal::Manifest) {
    let (rt, _rx) = start(dir, 2, 2);
    let got = rt.manifest().cloned();
    shutdown(rt);
    assert_eq!(
        got.as_ref(),
        Some(want),
        "the runtime fell back to checkpoint {}",
        want.checkpoint
    );
    for sc in &want.shards {
        read_snapshot(dir, want, sc.shard).expect("the fallback's snapshot verifies");
        let recs = read_log(dir, sc.shard, sc.replay_from);
        assert_eq!(
            recs.first().map(|r| r.seq),
            Some(sc.replay_from),
            "the fallback's log is still there"
        );
    }
}

#[test]
fn a_damaged_newest_manifest_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _rx) = start(dir.path(), 2, 2);
    assert_eq!(run_epochs(&rt, 6, 3), vec![(1, 3), (2, 6)]);
    shutdown(rt);
    let m1 = read_manifest(dir.path(), 1).expect("manifest 1");
    let path = manifest_path(dir.path(), 2);
    let good = std::fs::read(&path).unwrap();

    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("flipped payload byte", {
            let mut b = good.clone();
            let i = b.len() / 2 + 7;
            b[i] ^= 0x01;
            b
        }),
        ("flipped header byte", {
            let mut b = good.clone();
            b[13] ^= 0x80;
            b
        }),
        ("flipped last byte", {
            let mut b = good.clone();
            *b.last_mut().unwrap() ^= 0x40;
            b
        }),
        ("cut in half", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in damages {
        std::fs::write(&path, &bytes).unwrap();
        let (newest, skipped) = load_newest(dir.path());
        assert_eq!(newest.as_ref(), Some(&m1), "{what}: load_newest falls back");
        assert_eq!(skipped.len(), 1, "{what}: {skipped:?}");
        assert_eq!(skipped[0].0, 2, "{what}: the damaged manifest is reported");
        restart_and_check_fallback(dir.path(), &m1);
    }
    // Repaired, it is the newest again.
    std::fs::write(&path, &good).unwrap();
    let (rt, _rx) = start(dir.path(), 2, 2);
    assert_eq!(rt.manifest().map(|m| m.checkpoint), Some(2));
    shutdown(rt);
}

#[test]
fn a_crash_between_temp_write_and_rename_leaves_the_previous_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _rx) = start(dir.path(), 2, 2);
    assert_eq!(run_epochs(&rt, 9, 3), vec![(1, 3), (2, 6), (3, 9)]);
    shutdown(rt);
    assert_eq!(
        manifest_ids(dir.path()),
        vec![2, 3],
        "two manifests are kept"
    );
    let m2 = read_manifest(dir.path(), 2).expect("manifest 2");
    // Checkpoint 3 as if the process died after writing and syncing the
    // temp file but before the rename: its markers and snapshots are in the
    // shards, its manifest is only a temp file.
    let tmp = dir.path().join("checkpoints").join(format!(
        "{}.tmp",
        shardwal::checkpoint::manifest::manifest_name(3)
    ));
    std::fs::rename(manifest_path(dir.path(), 3), &tmp).unwrap();
    let (newest, skipped) = load_newest(dir.path());
    assert_eq!(newest.as_ref(), Some(&m2));
    assert!(
        skipped.is_empty(),
        "a temp file is not a manifest: {skipped:?}"
    );
    restart_and_check_fallback(dir.path(), &m2);

    // A torn temp file (died during the temp write) is ignored as well.
    std::fs::write(&tmp, b"SHRDMANI\x01\x00\x00\x00garbage").unwrap();
    restart_and_check_fallback(dir.path(), &m2);

    // The next checkpoint replaces the leftover and is the newest.
    let (rt, _rx) = start(dir.path(), 2, 2);
    let t = rt.coordinator().checkpoint().expect("checkpoint");
    let info = t.wait_timeout(WAIT).expect("checkpoint after restart");
    shutdown(rt);
    assert!(info.epoch.0 > 9, "the new checkpoint is at a later epoch");
    assert!(!tmp.exists(), "the stale temp file is gone");
    let (newest, _) = load_newest(dir.path());
    let newest = newest.expect("a manifest");
    assert_eq!(newest.checkpoint, info.id.0);
    assert_eq!(newest.epoch, info.epoch.0);
}

#[test]
fn checkpoint_ids_and_epochs_continue_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _rx) = start(dir.path(), 2, 2);
    assert_eq!(run_epochs(&rt, 4, 4), vec![(1, 4)]);
    let c = rt.coordinator();
    shutdown(rt);
    // Shutdown may seal a final epoch of its own.
    let mut sealed = c.sealed_epoch().0;
    assert!(sealed == 4 || sealed == 5, "sealed {sealed} after shutdown");

    // Per shard: (seq of the last barrier, seq of the last record).
    let ends = |dir: &Path| -> Vec<(u64, u64)> {
        (0..2)
            .map(|s| {
                let recs = read_log(dir, s, 0);
                assert_dense(s, &recs);
                let b = recs.iter().rev().find(|r| r.kind == RecordKind::Barrier);
                (b.unwrap().seq, recs.last().unwrap().seq)
            })
            .collect()
    };
    let mut last = ends(dir.path());
    for round in 0..2u64 {
        let (rt, _rx) = start(dir.path(), 2, 2);
        let c = rt.coordinator();
        assert_eq!(
            c.sealed_epoch(),
            Epoch(sealed),
            "round {round}: sealed epoch survives"
        );
        assert_eq!(rt.manifest().map(|m| m.checkpoint), Some(1 + round));
        for r in rt.recovered() {
            assert_eq!(r.epoch, Epoch(sealed + 1), "round {round}: recovered epoch");
            // Sequence numbers continue after the last record (or, if the
            // records of the unsealed last epoch are cut, after the barrier
            // of the sealed one): never behind what was sealed.
            let (barrier, end) = last[r.shard.0 as usize];
            assert!(
                r.next_seq.0 == end + 1 || r.next_seq.0 == barrier + 1,
                "round {round}: shard {} resumes at {} (last barrier {barrier}, last record {end})",
                r.shard.0,
                r.next_seq
            );
        }
        let t = c.checkpoint().expect("checkpoint");
        assert_eq!(
            t.id,
            CheckpointId(2 + round),
            "round {round}: checkpoint id continues"
        );
        assert_eq!(t.epoch, Epoch(sealed + 1), "round {round}: epochs continue");
        t.wait_timeout(WAIT).expect("checkpoint completes");
        let t = c.advance_epoch().expect("advance");
        assert_eq!(t.epoch, Epoch(sealed + 2));
        t.wait_timeout(WAIT).expect("seal");
        shutdown(rt);
        assert!(c.sealed_epoch().0 >= sealed + 2);
        sealed = c.sealed_epoch().0;
        last = ends(dir.path());
    }
    assert_eq!(manifest_ids(dir.path()), vec![2, 3]);
}
