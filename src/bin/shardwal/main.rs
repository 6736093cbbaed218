//! `shardwal`: the operator's tool for shardwal log directories.
//!
//! ```text
//! shardwal inspect DIR                  shards, segments, sealed epoch, checkpoints, disk usage
//! shardwal dump DIR [--shard S] [--from SEQ] [--limit N]
//!                                       records with LSN, epoch, kind and payload
//! shardwal verify DIR                   full CRC scan of segments, snapshots and manifests
//! shardwal recover DIR [--dry-run]      run recovery (or show what it would do)
//! shardwal restore --from URL DIR [--repair]
//!                                       rebuild a log directory from its archive
//! shardwal bench [--workload W] [--seconds S]
//!                                       macro-benchmark against raw file baselines
//! ```
//!
//! Every command prints human-readable tables, or JSON with `--json`.
//! `inspect`, `dump`, `verify` and `recover --dry-run` never modify the
//! directory: they read through a storage backend that refuses every write
//! (`shardwal::ReadOnlyStorage`) and they do not take the directory lock, so they can
//! run next to a live process (what they see of its unsynced tail may then
//! be torn).
//!
//! Exit status: 0 success (for `verify`: no corruption; a torn tail is a
//! warning); 1 corruption found (mid-log damage, a damaged segment header,
//! snapshot or manifest); 2 any other failure (usage, not a log, I/O error,
//! directory locked).
//!
//! Modules: [`logdir`] (read-only directory access over the library's
//! recovery scan), one module per subcommand ([`bench`] and [`verify`] are
//! folders of their steps), and [`output`]: tables (comfy-table), `--json`
//! (serde_json), the progress bar (indicatif) and units.

mod bench;
mod dump;
mod inspect;
mod logdir;
mod output;
mod recover;
mod restore;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: corruption found.
pub const EXIT_CORRUPT: u8 = 1;
/// Exit status: any other failure.
pub const EXIT_ERROR: u8 = 2;

/// A failure that ends the command with an exit status and a message.
#[derive(Debug)]
pub struct Fail {
    /// The exit status.
    pub code: u8,
    /// What went wrong, for stderr.
    pub msg: String,
}

impl Fail {
    /// A failure with exit status `code`.
    pub fn new(code: u8, msg: impl Into<String>) -> Fail {
        Fail {
            code,
            msg: msg.into(),
        }
    }
}

/// What a command returns: its exit status, or a failure.
pub type CmdResult = Result<u8, Fail>;

#[derive(Parser, Debug)]
#[command(
    name = "shardwal",
    version,
    about = "Inspect, dump, verify, recover and benchmark shardwal logs",
    after_help = "Exit status: 0 ok (a torn tail is only a warning), 1 corruption found, 2 other errors."
)]
struct Cli {
    /// Print JSON instead of tables (one object; `dump` and `bench`: one object per line).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Shards, segments, sealed epoch, checkpoints and disk usage of a log.
    Inspect {
        /// The log directory.
        dir: PathBuf,
    },
    /// Print records with their LSN, epoch, kind and payload.
    Dump {
        /// The log directory.
        dir: PathBuf,
        /// Only this shard (default: every shard, one after the other).
        #[arg(long)]
        shard: Option<u32>,
        /// Start at this sequence number (in each shard).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Print at most this many records (in total).
        #[arg(long)]
        limit: Option<u64>,
        /// Show at most this many payload bytes per record.
        #[arg(long, default_value_t = 64)]
        max_bytes: usize,
    },
    /// Check every segment, snapshot and manifest; exit 1 on corruption.
    Verify {
        /// The log directory.
        dir: PathBuf,
    },
    /// Recover the log (cut torn tails and unsealed epochs), or with
    /// --dry-run print what recovery would do without changing anything.
    Recover {
        /// The log directory.
        dir: PathBuf,
        /// Compute and print the recovery report; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Drop mid-log corruption (the damaged record and everything
        /// after it on that shard) instead of refusing, and report it.
        #[arg(long, conflicts_with = "dry_run")]
        repair: bool,
    },
    /// Rebuild a log directory from its object-store archive, to the
    /// archive's sealed epoch; every downloaded byte is checked.
    Restore {
        /// The archive: file:///path, or s3://bucket/prefix (AWS_*
        /// environment variables; needs shardwal built with `--features
        /// s3`).
        #[arg(long)]
        from: String,
        /// The new log directory (absent or empty).
        dir: PathBuf,
        /// When the newest index names a missing or damaged object, restore
        /// the newest older index that is whole instead of failing.
        #[arg(long)]
        repair: bool,
    },
    /// Macro-benchmark: shardwal against raw file baselines, in one run.
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let r = match cli.cmd {
        Cmd::Inspect { dir } => inspect::run(&dir, json),
        Cmd::Dump {
            dir,
            shard,
            from,
            limit,
            max_bytes,
        } => dump::run(
            &dir,
            &dump::Options {
                shard,
                from,
                limit,
                max_bytes,
                json,
            },
        ),
        Cmd::Verify { dir } => verify::run(&dir, json),
        Cmd::Recover {
            dir,
            dry_run,
            repair,
        } => recover::run(&dir, dry_run, repair, json),
        Cmd::Restore { from, dir, repair } => restore::run(&from, &dir, repair, json),
        Cmd::Bench(args) => bench::run(&args, json),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("shardwal: error: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}
