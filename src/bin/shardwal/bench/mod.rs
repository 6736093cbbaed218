//! `shardwal bench`: the macro-benchmark. Each workload measures shardwal
//! and, in the same run on the same disk, a raw baseline, and prints
//! throughput and latency percentiles (hdrhistogram, nanosecond precision)
//! and their ratios. Figures on a shared machine vary between runs: compare
//! within one run.
//!
//! | workload | shardwal | baseline |
//! |---|---|---|
//! | `buffered` | 128 B `append` under `FsyncPolicy::Never`, one `sync` at the end | `BufWriter<File>` `write_all`, `sync_data` at the end; O_DIRECT sequential write and read of as many bytes as shardwal wrote |
//! | `group` | 64 tasks, each `append` + `wait_durable`, under `EveryAppend` (group commit) | 64 × `write_all` 128 B, `flush`, `sync_data` per group |
//! | `sync` | one 1 KiB `append` + `wait_durable` at a time, `EveryAppend` | `write_all` 1 KiB + `flush` + `sync_data` |
//! | `large` | 4 KiB appends, `Never` | as `buffered`, 4 KiB |
//! | `recover` | `ShardLog::open` (full recovery scan) of a log of `--recover-mib` MiB of 128 B records written by the run | O_DIRECT sequential read of the same segment files |
//! | `epoch` | seal latency: `advance_epoch().wait()` on a 2-shard `Runtime` (auto barriers) | one 4 KiB `pwrite` + `sync_data`, on a prefilled file and on a growing one |
//! | `archive` | a 2-shard runtime appending 128 B records at full speed with 10 ms epochs, archiving to an object store: throughput, archive lag, then `restore` and the time to the first replayed record | the same runs with archiving off, interleaved |
//! | `checkpoint` | a 2-shard `Runtime` whose engines answer barriers inline: seal latency idle and under load, barrier delivery to an awaiting engine, append throughput with 10 ms epochs, and one streamed checkpoint of `--state-mib` MiB per shard under half load | appends without epochs; O_DIRECT sequential write of the snapshots' bytes |
//!
//! Latency is per operation: per append (`buffered`, `large`: every 16th
//! append is timed, to keep the clock's cost out of the throughput), per
//! record from append to durable (`group`, `sync`), per reopen (`recover`),
//! per seal (`epoch`). shardwal runs on one glommio executor
//! (`io_memory` 2 MiB, unpinned) with `DmaStorage` (O_DIRECT, io_uring).
//! Each measurement runs for `--seconds`.
//!
//! Modules: [`measure`] (a system's measurement, a workload's report),
//! [`setup`] (scratch directory, payloads, errors), [`raw`] (the O_DIRECT
//! baselines), and one module per workload.

mod appends;
mod archive;
mod checkpoint;
mod epoch;
mod group;
mod measure;
mod raw;
mod recover;
mod replay;
mod setup;
mod sync;

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use glommio::{LocalExecutorBuilder, Placement};

use self::setup::{Scratch, err};
use crate::{CmdResult, EXIT_ERROR, EXIT_OK, Fail};

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The workload to run.
    #[arg(long, value_enum, default_value_t = Workload::All)]
    workload: Workload,
    /// Seconds per measurement (each system of each workload).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Where to write the benchmark's files (a fresh subdirectory is made
    /// and removed afterwards). Default: the system's temp directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Size of the log the `recover` workload writes and reopens, in MiB.
    #[arg(long, default_value_t = 256)]
    recover_mib: u64,
    /// Size of the log the `replay` workload restarts on (over 2 shards),
    /// in MiB; `segments` writes half of it to one shard.
    #[arg(long, default_value_t = 2048)]
    replay_mib: u64,
    /// The `replay` workload's one-pass replay buffer per core
    /// (`RuntimeConfig::replay_buffer`), in MiB. Default: the runtime's
    /// default.
    #[arg(long)]
    replay_buffer_mib: Option<u64>,
    /// State per shard that the `checkpoint` workload snapshots, in MiB.
    #[arg(long, default_value_t = 1024)]
    state_mib: u64,
    /// Where the `archive` workload archives (file:///path or, built with
    /// `--features s3`, s3://bucket/prefix). Default: the local filesystem backend in the
    /// scratch directory.
    #[arg(long)]
    archive_url: Option<String>,
}

/// A benchmark workload.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// 128 B appends, no fsync until the end.
    Buffered,
    /// 64 concurrent appenders, each record durable (group commit).
    Group,
    /// 1 KiB records, each made durable before the next.
    Sync,
    /// 4 KiB appends, no fsync until the end.
    Large,
    /// Reopening (recovering) a log written by the run.
    Recover,
    /// Epoch seal latency on a 2-shard runtime.
    Epoch,
    /// Epochs and a streamed checkpoint under load on a 2-shard runtime.
    Checkpoint,
    /// Restart of a 2-shard runtime and replay, one pass and two, against
    /// a raw O_DIRECT read of the same files.
    Replay,
    /// One-pass reopen of the same bytes in 1 MiB and in 64 MiB segments.
    Segments,
    /// Append throughput with archiving off and on, archive lag, restore.
    Archive,
    /// Every workload but `checkpoint`, `replay`, `segments` (which write
    /// gigabytes) and `archive`, in this order.
    All,
}

const ALL: [Workload; 6] = [
    Workload::Buffered,
    Workload::Group,
    Workload::Sync,
    Workload::Large,
    Workload::Recover,
    Workload::Epoch,
];

/// Run `bench`.
pub fn run(a: &Args, json: bool) -> CmdResult {
    if !(a.seconds > 0.0 && a.seconds <= 3600.0) {
        return Err(Fail::new(EXIT_ERROR, "--seconds must be in (0, 3600]"));
    }
    let base = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let root = base.join(format!("shardwal-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(|e| err(&root, e))?;
    let root = root.canonicalize().map_err(|e| err(&root, e))?;
    let scratch = Scratch(root);
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(2 << 20)
        .name("shardwal-bench")
        .make()
        .map_err(|e| Fail::new(EXIT_ERROR, format!("bench: glommio executor: {e}")))?;
    let dur = Duration::from_secs_f64(a.seconds);
    let list: Vec<Workload> = if a.workload == Workload::All {
        ALL.to_vec()
    } else {
        vec![a.workload]
    };
    if !json {
        println!(
            "shardwal bench: {} s per measurement, files in {}",
            a.seconds,
            scratch.0.display()
        );
        println!();
    }
    for w in list {
        let r = match w {
            Workload::Buffered => appends::run(&ex, &scratch, dur, "buffered", 128, 16)?,
            Workload::Large => appends::run(&ex, &scratch, dur, "large", 4096, 1)?,
            Workload::Group => group::run(&ex, &scratch, dur)?,
            Workload::Sync => sync::run(&ex, &scratch, dur)?,
            Workload::Recover => recover::run(&ex, &scratch, dur, a.recover_mib)?,
            Workload::Epoch => epoch::run(&scratch, dur)?,
            Workload::Checkpoint => checkpoint::run(&scratch, dur, a.state_mib)?,
            Workload::Replay => replay::run(&scratch, a.replay_mib, a.replay_buffer_mib)?,
            Workload::Segments => replay::run_segments(&ex, &scratch, a.replay_mib)?,
            Workload::Archive => archive::run(&scratch, dur, a.archive_url.as_deref())?,
            Workload::All => unreachable!("expanded above"),
        };
        if json {
            r.print_json()?;
        } else {
            r.print();
        }
    }
    Ok(EXIT_OK)
}
