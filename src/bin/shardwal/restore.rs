//! `shardwal restore --from URL DIR [--repair]`: build a log directory from
//! an archive ([`shardwal::restore`]), checking every downloaded byte.
//!
//! The directory recovers to the archive's epoch; start a `Runtime` on it
//! (with any shard count) to go on. Exit status 1 when the newest index
//! names a missing or damaged object (named in the message), unless
//! `--repair` finds an older index that is whole.

use std::path::Path;

use serde::Serialize;

use crate::output::{json, units};
use crate::{CmdResult, EXIT_CORRUPT, EXIT_ERROR, EXIT_OK, Fail};

#[derive(Serialize)]
struct RestoreJson {
    dir: String,
    epoch: u64,
    index: String,
    files: usize,
    objects: usize,
    bytes: u64,
    seconds: f64,
    skipped: Vec<SkippedJson>,
}

#[derive(Serialize)]
struct SkippedJson {
    index: String,
    reason: String,
}

/// Run the subcommand.
pub fn run(from: &str, dir: &Path, repair: bool, json_out: bool) -> CmdResult {
    let cfg = shardwal::ArchiveConfig::from_url(from).map_err(|e| Fail {
        code: EXIT_ERROR,
        msg: e.to_string(),
    })?;
    let opts = shardwal::RestoreOptions {
        repair,
        ..Default::default()
    };
    let r = shardwal::restore(cfg.store, &cfg.prefix, dir, &opts).map_err(|e| Fail {
        code: match e {
            shardwal::Error::Archive { .. } => EXIT_CORRUPT,
            _ => EXIT_ERROR,
        },
        msg: e.to_string(),
    })?;
    if json_out {
        json::print(&RestoreJson {
            dir: json::path(dir),
            epoch: r.epoch.0,
            index: r.index.clone(),
            files: r.files,
            objects: r.objects,
            bytes: r.bytes,
            seconds: json::round6(r.elapsed.as_secs_f64()),
            skipped: r
                .skipped
                .iter()
                .map(|(i, why)| SkippedJson {
                    index: i.clone(),
                    reason: why.clone(),
                })
                .collect(),
        })?;
        return Ok(EXIT_OK);
    }
    for (i, why) in &r.skipped {
        println!("skipped {i}: {why}");
    }
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    println!(
        "restored {} to sealed epoch {} from {}: {} files, {} objects, {} in {} ({}/s)",
        dir.display(),
        r.epoch.0,
        r.index,
        r.files,
        r.objects,
        units::bytes(r.bytes),
        units::duration(r.elapsed),
        units::bytes((r.bytes as f64 / secs) as u64)
    );
    Ok(EXIT_OK)
}
