//! Kill test: the test binary re-executes itself as a child process that
//! runs a 2-shard runtime doing epochs and checkpoints, printing each epoch
//! the moment the coordinator reports it sealed (and each checkpoint once
//! its manifest is durable). The parent kills it with SIGKILL at a random
//! time, reopens the directory and checks that nothing reported was lost:
//! the recovered sealed epoch is at least the last one printed, the newest
//! manifest at least the last checkpoint printed, and every shard's log
//! holds barrier(e) for every e up to it with all its data records (data
//! payloads encode (shard, epoch, index), the index dense per epoch), and no
//! record that was never appended. Several kills in a row on one directory.
//!
//! Replay a failing run with `RUNTIME_KILL_SEED=<seed>` (printed on stderr).

use crate::child_process;
use crate::runtime_common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use runtime_common::*;
use shardwal::checkpoint::payloads::{self, CheckpointMarker};
use shardwal::rng::SplitMix;
use shardwal::{ControlEvent, CoordinatorConfig, RecordKind, Runtime, RuntimeConfig, ShardConfig};

const SHARDS: usize = 2;
const DIR_ENV: &str = "SHARDWAL_KILL_CHILD_DIR";
const START_ENV: &str = "SHARDWAL_KILL_CHILD_START";
const CHILD_TEST: &str = "child_runs_epochs_until_killed";
const ITERATIONS: usize = 8;

fn config() -> RuntimeConfig {
    RuntimeConfig {
        coordinator: CoordinatorConfig {
            keep_checkpoints: 2,
            ..CoordinatorConfig::default()
        },
        ..runtime_config(
            SHARDS,
            ShardConfig {
                segment_size: 256 << 10,
                buffer_size: 32 << 10,
                write_behind: 2,
                max_record_size: 1024,
                ..small_shard()
            },
        )
    }
}

/// Size of each shard's snapshot: streamed in 64 KiB chunks, it takes long
/// enough that some kills land while one is being written.
const SNAPSHOT_LEN: usize = 6 << 20;

/// The state shard `shard` snapshots at checkpoint `id`.
fn snapshot_state(shard: u32, id: u64) -> Vec<u8> {
    let head = format!("shard {shard} checkpoint {id} ");
    let mut v = head.into_bytes();
    let mut x = u64::from(shard) * 0x9e37_79b9 + id;
    while v.len() < SNAPSHOT_LEN {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.push((x >> 56) as u8);
    }
    v
}

/// The child: runs until killed (or for at most 5 s). Does nothing unless
/// started by the parent test.
#[test]
#[ignore = "child process of kill_at_random_times_loses_nothing_sealed"]
fn child_runs_epochs_until_killed() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    // Data records already in each shard's open epoch (the index to go on from).
    let starts: Vec<u64> = std::env::var(START_ENV)
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let rt = Runtime::start(Path::new(&dir), config(), move |ctx| {
        let start = starts.get(ctx.shard().0 as usize).copied().unwrap_or(0);
        async move {
            let shard = ctx.shard().0;
            let log = ctx.log().clone();
            let mut epoch = log.epoch().0;
            let mut index = start;
            loop {
                while let Some(ev) = ctx.poll_control() {
                    match ev {
                        ControlEvent::Barrier(req) => {
                            // The epoch seals at once; the snapshot streams
                            // out while appends go on, so kills land in
                            // the middle of it too.
                            let (_, w) = ctx.complete_barrier_streamed(req).await?;
                            if let Some(mut w) = w {
                                glommio::spawn_local(async move {
                                    let state = snapshot_state(shard, w.checkpoint().0);
                                    for c in state.chunks(64 << 10) {
                                        if w.write(c).await.is_err() {
                                            return;
                                        }
                                    }
                                    let _ = w.finish().await;
                                })
                                .detach();
                            }
                        }
                        _ => return Ok(()),
                    }
                }
                for _ in 0..5 {
                    let e = log.epoch().0;
                    if e != epoch {
                        epoch = e;
                        index = 0;
                    }
                    let d = Data {
                        shard,
                        epoch,
                        index,
                    };
                    log.append(&data_payload(d, pad_len(index, 200))).await?;
                    index += 1;
                }
                glommio::timer::sleep(Duration::from_micros(100)).await;
            }
        }
    })
    .expect("child: start runtime");
    let c = rt.coordinator();
    let say = |line: String| {
        let mut o = std::io::stdout().lock();
        writeln!(o, "{line}").expect("child: write stdout");
        o.flush().expect("child: flush stdout");
    };
    // The watermark, printed as soon as it moves.
    let watcher = {
        let c = c.clone();
        std::thread::spawn(move || {
            let mut last = c.sealed_epoch().0;
            while !c.is_stopped() {
                let now = c.sealed_epoch().0;
                if now > last {
                    let mut o = std::io::stdout().lock();
                    writeln!(o, "SEALED {now}").expect("child: write stdout");
                    o.flush().expect("child: flush stdout");
                    last = now;
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    };
    let t0 = Instant::now();
    let mut i = 0u64;
    while t0.elapsed() < Duration::from_secs(5) {
        i += 1;
        if i.is_multiple_of(7) {
            let info = c
                .checkpoint()
                .and_then(|t| t.wait())
                .expect("child: checkpoint");
            say(format!("CKPT {} {}", info.id.0, info.epoch.0));
        } else {
            let e = c
                .advance_epoch()
                .and_then(|t| t.wait())
                .expect("child: epoch");
            say(format!("SEALED {}", e.0));
        }
    }
    rt.shutdown().expect("child: shutdown");
    watcher.join().expect("child: watcher");
}

/// What the child reported before it died.
#[derive(Debug, Default, Clone, Copy)]
struct Reported {
    sealed: u64,
    checkpoint: Option<(u64, u64)>,
    lines: usize,
}

fn parse_reports(out: &str) -> Reported {
    let mut r = Reported::default();
    for line in out.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["SEALED", e] => {
                r.sealed = r.sealed.max(e.parse().expect("sealed epoch"));
                r.lines += 1;
            }
            ["CKPT", id, e] => {
                let (id, e): (u64, u64) = (id.parse().unwrap(), e.parse().unwrap());
                r.sealed = r.sealed.max(e);
                r.checkpoint = Some(r.checkpoint.map_or((id, e), |c| c.max((id, e))));
                r.lines += 1;
            }
            _ => {}
        }
    }
    r
}

/// Run the child on `dir` and SIGKILL it after `delay`. Returns what it printed.
fn run_and_kill(dir: &Path, starts: &[u64], delay: Duration) -> Reported {
    let starts: Vec<String> = starts.iter().map(u64::to_string).collect();
    let mut child = child_process::child_test(module_path!(), CHILD_TEST)
        .env(DIR_ENV, dir)
        .env(START_ENV, starts.join(","))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // Read line by line as the child prints: what was read before the kill
    // is exactly what the child reported.
    let out = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    std::thread::sleep(delay);
    let still_running = child.try_wait().expect("poll child").is_none();
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap child");
    let out = out.join().unwrap();
    let err = err.join().unwrap();
    assert!(
        still_running && status.signal() == Some(libc::SIGKILL),
        "the child ended on its own ({status}) instead of being killed:\n{out}\n{err}"
    );
    parse_reports(&out)
}

/// Reopen after a kill and check everything; return, per shard, the number
/// of data records in its open epoch (the index the next child goes on from).
fn verify(dir: &Path, rep: &Reported) -> Vec<u64> {
    // A snapshot newer than the newest manifest: the kill landed while a
    // checkpoint's snapshots were being written.
    let newest = manifest_ids(dir).last().copied().unwrap_or(0);
    let in_flight: Vec<u64> = (0..SHARDS as u32)
        .flat_map(|s| snapshot_ids(dir, s))
        .filter(|&id| id > newest)
        .collect();
    if !in_flight.is_empty() {
        eprintln!("  killed while the snapshots of checkpoint(s) {in_flight:?} were in flight");
    }
    let rt = Runtime::start(
        dir,
        RuntimeConfig {
            auto_barriers: true,
            ..config()
        },
        |ctx| async move {
            while !ctx.is_shutting_down() {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            Ok(())
        },
    )
    .expect("restart after the kill");
    let recovered_sealed = rt.recovered().iter().map(|r| r.epoch.0).min().unwrap() - 1;
    assert!(
        recovered_sealed >= rep.sealed,
        "the child reported epoch {} sealed, recovery found {recovered_sealed}: {:?}",
        rep.sealed,
        rt.recovered()
    );
    assert!(rt.coordinator().sealed_epoch().0 >= rep.sealed);
    if let Some(m) = rt.manifest() {
        // A manifest names only snapshots that were wholly durable.
        for s in 0..SHARDS as u32 {
            let snap = read_snapshot(dir, m, s).expect("the manifest's snapshot verifies");
            assert!(
                snap == snapshot_state(s, m.checkpoint),
                "shard {s}: the snapshot of checkpoint {} holds other bytes",
                m.checkpoint
            );
        }
    }
    if let Some((id, epoch)) = rep.checkpoint {
        let m = rt.manifest().expect("a reported checkpoint has a manifest");
        assert!(
            m.checkpoint >= id && m.epoch >= epoch,
            "the child reported checkpoint {id} at epoch {epoch} durable; recovery uses {} at {}",
            m.checkpoint,
            m.epoch
        );
    }
    within(Duration::from_secs(60), "shutdown", move || rt.shutdown()).expect("clean shutdown");

    let oldest = manifest_ids(dir)
        .first()
        .map(|&id| read_manifest(dir, id).expect("manifest validates"));
    let mut starts = Vec::new();
    for s in 0..SHARDS as u32 {
        let recs = read_log(dir, s, 0);
        assert_dense(s, &recs);
        let first = recs[0].seq;
        // Until the first barrier, a log cut by truncation may start inside
        // an epoch; after a barrier, each epoch's data starts at index 0.
        let mut known_start = first == 0;
        if first != 0 {
            let m = oldest.as_ref().expect("a truncated log has a checkpoint");
            assert!(
                first <= m.shards[s as usize].replay_from,
                "shard {s}: log starts at {first}, after checkpoint {}'s replay_from",
                m.checkpoint
            );
        }
        let mut barriers = Vec::new();
        let mut next_index: HashMap<u64, u64> = HashMap::new();
        let mut open_epoch_data = 0u64;
        for r in &recs {
            match r.kind {
                RecordKind::Data => {
                    let d = parse_data(&r.payload);
                    assert_eq!(d.shard, s, "seq {}", r.seq);
                    assert_eq!(d.epoch, r.epoch, "shard {s} seq {}: epoch", r.seq);
                    if let Some(&b) = barriers.last() {
                        assert_eq!(
                            r.epoch,
                            b + 1,
                            "shard {s} seq {}: after barrier({b})",
                            r.seq
                        );
                    }
                    let next =
                        next_index
                            .entry(d.epoch)
                            .or_insert(if known_start { 0 } else { d.index });
                    assert_eq!(
                        d.index, *next,
                        "shard {s} seq {}: data records of epoch {} are dense",
                        r.seq, d.epoch
                    );
                    *next += 1;
                    open_epoch_data += 1;
                }
                RecordKind::Barrier => {
                    if let Some(&b) = barriers.last() {
                        assert_eq!(r.epoch, b + 1, "shard {s}: barriers in order");
                    } else if first == 0 {
                        assert_eq!(r.epoch, 1, "shard {s}: the first barrier");
                    }
                    barriers.push(r.epoch);
                    open_epoch_data = 0;
                    known_start = true;
                }
                RecordKind::Checkpoint => {
                    let mk: CheckpointMarker =
                        payloads::decode(&r.payload, "marker").expect("marker decodes");
                    // Logged once the snapshot is durable, after the
                    // checkpoint's barrier.
                    assert!(mk.epoch < r.epoch, "shard {s} seq {}: marker epoch", r.seq);
                }
                RecordKind::Close => {}
                other => panic!("shard {s}: unexpected {other:?}"),
            }
        }
        let last_barrier = barriers.last().copied().unwrap_or(0);
        assert!(
            last_barrier >= rep.sealed,
            "shard {s}: barrier({}) of a reported sealed epoch is missing (last barrier {last_barrier})",
            rep.sealed
        );
        if let Some(m) = &oldest {
            assert!(
                barriers.first().is_some_and(|&b| b <= m.epoch + 1),
                "shard {s}: barriers after checkpoint {} at epoch {} are missing",
                m.checkpoint,
                m.epoch
            );
        }
        eprintln!(
            "  shard {s}: seqs {first}..={}, barriers {:?}..={last_barrier}, {} data records in the open epoch",
            recs.last().unwrap().seq,
            barriers.first(),
            open_epoch_data
        );
        starts.push(open_epoch_data);
    }
    starts
}

#[test]
fn kill_at_random_times_loses_nothing_sealed() {
    let seed = std::env::var("RUNTIME_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("RUNTIME_KILL_SEED={seed}");
    let mut rng = SplitMix(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut starts = vec![0u64; SHARDS];
    let mut reported = 0;
    for i in 0..ITERATIONS {
        let delay = Duration::from_millis(100 + rng.below(700));
        let rep = run_and_kill(dir.path(), &starts, delay);
        eprintln!("kill {i} after {delay:?}: {rep:?}");
        reported += rep.lines;
        starts = verify(dir.path(), &rep);
    }
    assert!(
        reported > 0,
        "the children reported sealed epochs before being killed"
    );
}
