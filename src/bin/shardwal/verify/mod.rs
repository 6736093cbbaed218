//! `shardwal verify DIR`: a full check of a log directory, read-only, in
//! three steps and a report:
//!
//! 1. [`segments`]: every segment of every shard is scanned from its first
//!    byte with the library's recovery scan (every frame's CRC, dense
//!    seqs, non-decreasing epochs), and the recovery table of cases decides
//!    how each shard ends: clean, a torn tail (a warning: recovery cuts it;
//!    nothing that was reported durable is lost), or corruption (damage
//!    that a later record proves was durable, or a damaged segment
//!    header). Commit records and checkpoint markers must hold valid rkyv
//!    payloads.
//! 2. [`checkpoints`]: every manifest must validate (CRC, rkyv, id, log
//!    id); every snapshot referenced by a valid manifest must validate
//!    against it (`snapshot::read`: header, length, CRCs). An older
//!    manifest whose snapshot file is gone (removed by truncation while the
//!    manifest's own removal was not yet durable) is a warning.
//! 3. Also in [`checkpoints`]: the replay position of the checkpoint in use
//!    (the newest valid one) must lie within each shard's log.
//! 4. [`report`]: one line per problem naming the shard, the file and the
//!    byte offset, or one JSON object.
//!
//! Exit 0 when nothing is corrupt (warnings included), 1 on corruption.

mod checkpoints;
mod report;
mod segments;

use std::path::Path;

use crate::CmdResult;
use crate::logdir::LogDir;

use self::report::Report;

/// Run `verify`.
pub fn run(dir: &Path, json: bool) -> CmdResult {
    let log = LogDir::open(dir)?;
    let mut report = Report::default();
    let ends = segments::check(&log, &mut report, !json)?;
    checkpoints::check(&log, &ends, &mut report)?;
    report.print(dir, json)
}
