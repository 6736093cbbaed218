//! The main demo: a small stateful stream processor embedded on shardwal,
//! one pinned shard per core, that survives `kill -9` with exactly-once
//! results.
//!
//! ```sh
//! cargo run --release --example streaming                      # crash once, recover, compare
//! cargo run --release --example streaming -- --dir D [--seed S] [--records-per-core N] [--crash-after-ms T]
//!     [--shards M] [--archive URL]
//! cargo run --release --example streaming -- --archive URL     # lose the disk, restore from the archive
//! ```
//!
//! - **Sources.** The input is 8 source partitions, spread over the cores
//!   (partition p lives on core p mod cores), so the result does not depend
//!   on the number of cores. Each partition yields `N` events generated from
//!   the seed, and cannot go back: it only resumes at an offset at or after
//!   the last committed one. Events consumed after that exist only in the log.
//! - **State.** Per core: count and sum per (key, tumbling window).
//! - **Each epoch** (every 5 ms): each core logs every input batch it
//!   accepts before applying it; at the barrier it logs a commit record with
//!   its partitions' offsets. Every 40 epochs a checkpoint snapshots each
//!   core's state; the log is truncated behind it.
//! - **Restart.** Recovery cuts every shard at the sealed epoch; each core
//!   loads its snapshot, replays its log to the sealed epoch (while the
//!   recovery scan reads it: `Runtime::start_replaying`), and resumes its
//!   partitions at the sealed epoch's committed offsets.
//!
//! - **Archive** (`--archive URL`: `file:///path`, or `s3://bucket/prefix`
//!   with the usual `AWS_*` variables). Every sealed epoch and checkpoint
//!   goes to object storage; the run prints `archived_epoch=<e>` each time
//!   the archive watermark moves. Without `--dir`, the demo then shows the
//!   machine being lost: a clean reference run; a run that archives and is
//!   killed with SIGKILL; its whole directory deleted; a restore from the
//!   archive (`shardwal::restore`, what `shardwal restore --from URL DIR`
//!   does) into a fresh directory, run to the end with 3 shards instead of
//!   one per core. The restored log must reach at least the last archive
//!   watermark the dead node printed, and the final state must equal the
//!   clean run's.
//!
//! The last line printed is `state_hash=<16 hex digits>`, a hash of the merged
//! final state of all cores.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rkyv::{Archive, Deserialize, Serialize};
use shardwal::checkpoint::payloads;
use shardwal::{
    ControlEvent, CoordinatorConfig, DmaStorage, FsyncPolicy, RecordKind, Replay, Runtime,
    RuntimeConfig, ShardConfig, ShardContext, SourceOffset,
};

const PARTITIONS: u64 = 8;
const BATCH: u64 = 256;
const KEYS: u64 = 1000;
const WINDOW: u64 = 10_000;
/// Bytes per `SnapshotWriter::write` call.
const SNAPSHOT_CHUNK: usize = 256 << 10;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy)]
struct Event {
    key: u64,
    value: u64,
    time: u64,
}

/// One logged input record: a batch accepted from one partition.
#[derive(Archive, Serialize, Deserialize, Debug)]
struct InputBatch {
    partition: u64,
    first_offset: u64,
    events: Vec<Event>,
}

/// A core's state snapshot.
#[derive(Archive, Serialize, Deserialize, Debug, Default)]
struct Snapshot {
    entries: Vec<(u64, u64, u64, u64)>,
}

type State = HashMap<(u64, u64), (u64, u64)>;

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The non-replayable source: event `k` of partition `p`, only from the
/// position the source has reached onwards.
struct Source {
    seed: u64,
    partition: u64,
    next: u64,
    end: u64,
}

impl Source {
    fn take(&mut self, n: u64) -> Vec<Event> {
        let upto = (self.next + n).min(self.end);
        let v = (self.next..upto)
            .map(|k| {
                let r = mix(self.seed ^ mix(self.partition.wrapping_mul(0x1000_0000_0001) ^ k));
                Event {
                    key: r % KEYS,
                    value: (r >> 20) % 100,
                    time: k,
                }
            })
            .collect();
        self.next = upto;
        v
    }
}

fn apply(state: &mut State, events: impl Iterator<Item = (u64, u64, u64)>) {
    for (key, value, time) in events {
        let e = state.entry((key, time / WINDOW)).or_insert((0, 0));
        e.0 += 1;
        e.1 += value;
    }
}

#[derive(Clone)]
struct Params {
    seed: u64,
    per_partition: u64,
}

struct Shared {
    failed: AtomicU64,
    consumed: AtomicU64,
    replayed: AtomicU64,
    done: AtomicU64,
}

/// Step 1, recovery, while the runtime's recovery scan reads the log (one
/// pass): the snapshot, then the log up to the sealed epoch.
async fn recover(mut replay: Replay<DmaStorage>, shared: Arc<Shared>) -> shardwal::Result<State> {
    let mut state = State::new();
    // This shard's snapshot and, after re-sharding, those of the retired
    // shards this core replays.
    for (_, bytes) in replay.snapshots().await? {
        if bytes.is_empty() {
            continue;
        }
        let snap: Snapshot = payloads::decode(&bytes, "snapshot")?;
        for (k, w, c, s) in snap.entries {
            state.insert((k, w), (c, s));
        }
    }
    while let Some(rec) = replay.next().await? {
        if rec.kind == RecordKind::Data {
            let b = rec.access::<InputBatch>()?;
            apply(
                &mut state,
                b.events
                    .iter()
                    .map(|e| (e.key.to_native(), e.value.to_native(), e.time.to_native())),
            );
            shared
                .replayed
                .fetch_add(b.events.len() as u64, Ordering::Relaxed);
        }
    }
    Ok(state)
}

async fn engine(
    ctx: Rc<ShardContext<DmaStorage>>,
    mut state: State,
    p: Params,
    shared: Arc<Shared>,
    out: crossbeam_channel::Sender<State>,
) -> shardwal::Result<()> {
    let cores = ctx.shard_count() as u64;
    let me = ctx.shard().0 as u64;
    let plan = ctx.replay_plan().clone();
    if std::env::var_os("STREAMING_DEBUG").is_some() {
        eprintln!("shard {me}: plan {plan:?}");
    }
    // 2. Resume the sources at the sealed epoch's committed offsets.
    let mut sources: Vec<Source> = (0..PARTITIONS)
        .filter(|q| q % cores == me)
        .map(|q| Source {
            seed: p.seed,
            partition: q,
            next: plan
                .merged_offsets
                .iter()
                .find(|o| o.source == format!("partition-{q}"))
                .map_or(0, |o| o.offset),
            end: p.per_partition,
        })
        .collect();
    // 3. Run.
    let mut reported_done = false;
    // An event already awaited (below), to be handled first.
    let mut awaited: Option<ControlEvent> = None;
    // Snapshots streaming out in the background.
    let mut snapshots: Vec<glommio::Task<()>> = Vec::new();
    loop {
        while let Some(ev) = awaited.take().or_else(|| ctx.poll_control()) {
            match ev {
                ControlEvent::Barrier(req) => {
                    let offsets = sources
                        .iter()
                        .map(|s| SourceOffset {
                            source: format!("partition-{}", s.partition),
                            offset: s.next,
                        })
                        .collect();
                    let watermark = sources.iter().map(|s| s.next).min().unwrap_or(0);
                    ctx.commit(offsets, watermark).await?;
                    // The epoch seals at once; at a checkpoint the state as
                    // of this barrier streams out while the next epoch runs.
                    let (_, writer) = ctx.complete_barrier_streamed(req).await?;
                    if let Some(mut w) = writer {
                        // Freeze the state: here an encoded copy (an engine
                        // with a large state would use copy-on-write).
                        let mut entries: Vec<(u64, u64, u64, u64)> =
                            state.iter().map(|(k, v)| (k.0, k.1, v.0, v.1)).collect();
                        entries.sort_unstable();
                        let frozen = payloads::encode(&Snapshot { entries })?;
                        let task = glommio::spawn_local(async move {
                            let id = w.checkpoint();
                            let mut written = Ok(());
                            for chunk in frozen.chunks(SNAPSHOT_CHUNK) {
                                written = w.write(chunk).await;
                                if written.is_err() {
                                    break;
                                }
                            }
                            // A failure fails the checkpoint (the coordinator's
                            // ticket reports it); the shard is poisoned.
                            let done = match written {
                                Ok(()) => w.finish().await.map(|_| ()),
                                Err(e) => Err(e),
                            };
                            if let Err(e) = done {
                                eprintln!("{id}: {e}");
                            }
                        });
                        snapshots.push(task);
                    }
                }
                _ => {
                    // Let the snapshots still streaming finish first.
                    for t in snapshots.drain(..) {
                        t.await;
                    }
                    let _ = out.send(state);
                    return Ok(());
                }
            }
        }
        let mut any = false;
        for s in &mut sources {
            let first_offset = s.next;
            let events = s.take(BATCH);
            if events.is_empty() {
                continue;
            }
            any = true;
            let batch = InputBatch {
                partition: s.partition,
                first_offset,
                events,
            };
            // Log before applying: the log is the only copy of this input.
            ctx.log().append(&payloads::encode(&batch)?).await?;
            apply(
                &mut state,
                batch.events.iter().map(|e| (e.key, e.value, e.time)),
            );
            shared
                .consumed
                .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        }
        if !any {
            if !reported_done {
                reported_done = true;
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
            // No input left: wait for the coordinator's next event (the
            // doorbell wakes this at once) instead of polling on a timer.
            awaited = Some(ctx.control().await);
        } else {
            futures_lite::future::yield_now().await;
        }
    }
}

fn state_hash(states: Vec<State>) -> u64 {
    let mut merged: std::collections::BTreeMap<(u64, u64), (u64, u64)> = Default::default();
    for st in states {
        for (k, v) in st {
            let e = merged.entry(k).or_insert((0, 0));
            e.0 += v.0;
            e.1 += v.1;
        }
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for ((k, w), (c, s)) in merged {
        for x in [k, w, c, s] {
            for b in x.to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    h
}

/// What a run is asked to do besides its input.
#[derive(Clone, Default)]
struct RunOpts {
    crash_after: Option<Duration>,
    shards: Option<usize>,
    archive: Option<String>,
}

fn run(dir: &Path, p: Params, o: &RunOpts) -> Result<u64, Box<dyn std::error::Error>> {
    let crash_after = o.crash_after;
    if let Some(t) = crash_after {
        std::thread::spawn(move || {
            std::thread::sleep(t);
            // SAFETY: kill(2) with our own pid; no memory is involved.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        });
    }
    let cfg = RuntimeConfig {
        shard: ShardConfig {
            fsync: FsyncPolicy::PerEpoch,
            segment_size: 16 << 20,
            buffer_size: 256 << 10,
            write_behind: 4,
            max_record_size: 64 << 10,
            ..ShardConfig::default()
        },
        coordinator: CoordinatorConfig {
            epoch_interval: Some(Duration::from_millis(5)),
            checkpoint_every: Some(40),
            keep_checkpoints: 2,
            ..CoordinatorConfig::default()
        },
        shards: o.shards,
        // More shards than cores run unpinned.
        pin: o
            .shards
            .is_none_or(|n| n <= shardwal::runtime::available_cores().len()),
        // Short epochs: archive every 100 ms or 16 epochs.
        archive: o
            .archive
            .as_deref()
            .map(shardwal::ArchiveConfig::from_url)
            .transpose()?
            .map(|a| shardwal::ArchiveConfig {
                interval: Duration::from_millis(100),
                every_epochs: 16,
                ..a
            }),
        ..RuntimeConfig::default()
    };
    let shared = Arc::new(Shared {
        failed: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        replayed: AtomicU64::new(0),
        done: AtomicU64::new(0),
    });
    let (tx, rx) = crossbeam_channel::unbounded();
    let started = Instant::now();
    let (p2, sh2, sh3) = (p.clone(), shared.clone(), shared.clone());
    let rt = Runtime::start_replaying(
        dir,
        cfg,
        move |replay| {
            let sh = sh3.clone();
            async move {
                let r = recover(replay, sh.clone()).await;
                if let Err(e) = &r {
                    eprintln!("replay failed: {e}");
                    sh.failed.fetch_add(1, Ordering::Relaxed);
                }
                r
            }
        },
        move |ctx, state| {
            let (p, sh, tx) = (p2.clone(), sh2.clone(), tx.clone());
            async move {
                let r = engine(ctx, state, p, sh.clone(), tx).await;
                if let Err(e) = &r {
                    eprintln!("engine failed: {e}");
                    sh.failed.fetch_add(1, Ordering::Relaxed);
                }
                r
            }
        },
    )?;
    let report = rt.recovery_report().clone();
    println!(
        "recovery: sealed epoch {}, checkpoint {:?}, {} shards, {:?}",
        report.sealed.0,
        report.checkpoint.map(|c| c.0),
        report.shards.len(),
        report.elapsed
    );
    for s in &report.shards {
        println!(
            "  shard {}: {} records ({} bytes) in {} segments, {} epochs, torn bytes {}, unsealed records cut {}, {:?}",
            s.shard.0,
            s.records,
            s.bytes,
            s.segments,
            s.epochs_seen,
            s.torn.as_ref().map_or(0, |t| t.bytes),
            s.cut_records,
            s.elapsed
        );
    }
    let n = rt.shard_count() as u64;
    let total = p.per_partition * PARTITIONS;
    let c = rt.coordinator();
    let tty = std::io::stderr().is_terminal();
    let mut last = (Instant::now(), 0u64);
    let mut archived = 0;
    while shared.done.load(Ordering::Relaxed) < n {
        if let Some(e) = c.archived_epoch()
            && e.0 > archived
        {
            archived = e.0;
            println!("archived_epoch={archived}");
            std::io::stdout().flush()?;
        }
        if shared.failed.load(Ordering::Relaxed) > 0 {
            let _ = rt.shutdown();
            return Err("an engine failed".into());
        }
        std::thread::sleep(Duration::from_millis(100));
        let consumed = shared.consumed.load(Ordering::Relaxed);
        let rate = (consumed - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), consumed);
        let line = format!(
            "consumed {consumed:>9} (+{} replayed) of {total}  {:>6.2} M rec/s  sealed epoch {:>5}",
            shared.replayed.load(Ordering::Relaxed),
            rate / 1e6,
            c.sealed_epoch().0
        );
        if tty {
            let width = 30usize;
            let filled = ((consumed + shared.replayed.load(Ordering::Relaxed)) * width as u64
                / total.max(1)) as usize;
            eprint!(
                "\r[{}{}] {line}",
                "#".repeat(filled.min(width)),
                " ".repeat(width - filled.min(width))
            );
            let _ = std::io::stderr().flush();
        }
    }
    if tty {
        eprintln!();
    }
    rt.shutdown()?;
    let states: Vec<State> = rx.try_iter().collect();
    if states.len() as u64 != n {
        return Err(format!("{} of {n} shards reported their state", states.len()).into());
    }
    println!(
        "finished in {:?}: consumed {} events from sources, replayed {} from the log",
        started.elapsed(),
        shared.consumed.load(Ordering::Relaxed),
        shared.replayed.load(Ordering::Relaxed)
    );
    Ok(state_hash(states))
}

fn child(
    dir: &Path,
    p: &Params,
    o: &RunOpts,
) -> Result<(Option<u64>, String), Box<dyn std::error::Error>> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--dir")
        .arg(dir)
        .arg("--seed")
        .arg(p.seed.to_string())
        .arg("--records-per-core")
        .arg(p.per_partition.to_string());
    if let Some(t) = o.crash_after {
        cmd.arg("--crash-after-ms").arg(t.as_millis().to_string());
    }
    if let Some(n) = o.shards {
        cmd.arg("--shards").arg(n.to_string());
    }
    if let Some(a) = &o.archive {
        cmd.arg("--archive").arg(a);
    }
    let out = cmd.stderr(Stdio::inherit()).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let hash = text
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("state_hash="))
        .and_then(|h| u64::from_str_radix(h, 16).ok());
    Ok((hash, text))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir: Option<PathBuf> = None;
    let mut p = Params {
        seed: 42,
        per_partition: 250_000,
    };
    let mut o = RunOpts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(val()?)),
            "--seed" => p.seed = val()?.parse()?,
            "--records-per-core" => p.per_partition = val()?.parse()?,
            "--crash-after-ms" => {
                o.crash_after = Some(Duration::from_millis(val()?.parse::<u64>()?))
            }
            "--shards" => o.shards = Some(val()?.parse()?),
            "--archive" => o.archive = Some(val()?.clone()),
            "-h" | "--help" => {
                println!(
                    "streaming [--dir DIR] [--seed S] [--records-per-core N] [--crash-after-ms T]\n\
                     \x20         [--shards M] [--archive URL]\n\
                     N is the number of events in each of the 8 source partitions.\n\
                     Without --dir: a clean run, a run killed with SIGKILL, and its recovery\n\
                     on the same directory; with --archive too, the killed run's directory is\n\
                     deleted and restored from the archive on 3 shards instead."
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if let Some(dir) = dir {
        let h = run(&dir, p, &o)?;
        println!("state_hash={h:016x}");
        return Ok(());
    }
    if let Some(url) = o.archive.clone() {
        return lose_the_disk(&p, &url, o.crash_after);
    }
    // No arguments: a clean reference run, then a run that kills itself
    // partway and is restarted on the same directory.
    let tmp = tempfile::tempdir()?;
    println!("== clean reference run");
    let t0 = Instant::now();
    let (clean, text) = child(&tmp.path().join("clean"), &p, &RunOpts::default())?;
    print!("{text}");
    let clean = clean.ok_or("the clean run printed no state_hash")?;
    let crash_ms = (t0.elapsed().as_millis() as u64 / 2).max(50);
    println!("== run killed with SIGKILL after {crash_ms} ms");
    let crashed_dir = tmp.path().join("crashed");
    let killed = RunOpts {
        crash_after: Some(Duration::from_millis(crash_ms)),
        ..RunOpts::default()
    };
    let (h, text) = child(&crashed_dir, &p, &killed)?;
    print!("{text}");
    if h.is_some() {
        println!("(the run finished before the kill)");
    }
    println!("== restart on the same directory: recover, replay, continue");
    let (recovered, text) = child(&crashed_dir, &p, &RunOpts::default())?;
    print!("{text}");
    let recovered = recovered.ok_or("the recovered run printed no state_hash")?;
    println!("clean     state_hash={clean:016x}");
    println!("recovered state_hash={recovered:016x}");
    if clean != recovered {
        return Err("MISMATCH: the recovered run differs from the clean run".into());
    }
    println!("identical: exactly-once after kill -9");
    println!("state_hash={recovered:016x}");
    Ok(())
}

/// The machine is lost: a clean run; a run archiving to `url`, killed with
/// SIGKILL (after `crash_after`, or two thirds of the clean run); its
/// directory deleted; a restore from the archive on a fresh
/// directory, continued with 3 shards to the end.
fn lose_the_disk(
    p: &Params,
    url: &str,
    crash_after: Option<Duration>,
) -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    println!("== clean reference run");
    let t0 = Instant::now();
    let (clean, text) = child(&tmp.path().join("clean"), p, &RunOpts::default())?;
    print!("{text}");
    let clean = clean.ok_or("the clean run printed no state_hash")?;
    let crash_ms = crash_after
        .map(|t| t.as_millis() as u64)
        .unwrap_or((t0.elapsed().as_millis() as u64 * 2 / 3).max(50));
    println!("== run archiving to {url}, killed with SIGKILL after {crash_ms} ms");
    let lost = tmp.path().join("lost");
    let killed = RunOpts {
        crash_after: Some(Duration::from_millis(crash_ms)),
        archive: Some(url.to_string()),
        ..RunOpts::default()
    };
    let (h, text) = child(&lost, p, &killed)?;
    print!("{text}");
    if h.is_some() {
        println!("(the run finished before the kill)");
    }
    let reported = text
        .lines()
        .filter_map(|l| l.strip_prefix("archived_epoch="))
        .filter_map(|e| e.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    println!("== the disk is lost: deleting {}", lost.display());
    std::fs::remove_dir_all(&lost)?;
    let restored = tmp.path().join("restored");
    let cfg = shardwal::ArchiveConfig::from_url(url)?;
    let restored_epoch = match shardwal::restore(
        cfg.store,
        &cfg.prefix,
        &restored,
        &shardwal::RestoreOptions::default(),
    ) {
        Ok(r) => {
            println!(
                "restored epoch {} from {}: {} files, {} objects, {:.1} MiB in {:?}",
                r.epoch.0,
                r.index,
                r.files,
                r.objects,
                r.bytes as f64 / (1 << 20) as f64,
                r.elapsed
            );
            r.epoch.0
        }
        // Killed before its first archive pass: nothing was archived, and
        // nothing was reported archived; the job starts over.
        Err(shardwal::Error::Archive { cause, .. })
            if reported == 0 && cause.contains("nothing was archived") =>
        {
            println!("nothing was archived before the kill: starting over");
            0
        }
        Err(e) => return Err(e.into()),
    };
    if restored_epoch < reported {
        return Err(format!(
            "LOST: the dead node reported epoch {reported} archived, the archive restores {restored_epoch}"
        )
        .into());
    }
    println!("== continue on the restored directory with 3 shards, archiving again");
    let go_on = RunOpts {
        shards: Some(3),
        archive: Some(url.to_string()),
        ..RunOpts::default()
    };
    let (recovered, text) = child(&restored, p, &go_on)?;
    print!("{text}");
    let recovered = recovered.ok_or("the restored run printed no state_hash")?;
    println!("clean    state_hash={clean:016x}");
    println!("restored state_hash={recovered:016x}");
    if clean != recovered {
        return Err("MISMATCH: the restored run differs from the clean run".into());
    }
    println!(
        "identical: exactly-once after losing the machine (archive watermark reported {reported}, restored {restored_epoch})"
    );
    println!("state_hash={recovered:016x}");
    Ok(())
}
