//! The checks of a killed append child (`FsyncPolicy::EveryAppend`) against
//! its per-record reports.

use std::path::Path;

use futures_lite::future::block_on;
use shardwal::recovery::Expect;
use shardwal::recovery::shard::{self as shard_scan, ScanOptions};
use shardwal::segment::shard_dir;
use shardwal::{ReadOnlyStorage, RecordKind, ShardId};

use crate::Figures;
use crate::kill::Killed;
use crate::payload::append_payload;
use crate::protocol::Line;
use crate::read_only::read_shard;

/// The append workload's model: per shard, where recovery ends the log.
#[derive(Debug, Default)]
pub(crate) struct AppendModel {
    pub(crate) next: Vec<u64>,
}

/// Check a killed append child and its directory; update the model.
pub(crate) fn verify_append(
    dir: &Path,
    k: usize,
    m: &mut AppendModel,
    ch: &Killed,
    f: &mut Figures,
) -> Result<(), String> {
    if m.next.is_empty() {
        m.next = vec![0; k];
    }
    let mut ready: Vec<Option<u64>> = vec![None; k];
    let mut appended: Vec<Option<u64>> = vec![None; k];
    let mut durable: Vec<Vec<u64>> = vec![Vec::new(); k];
    for l in &ch.lines {
        match *l {
            Line::Fail(ref msg) => return Err(format!("the child reported: {msg}")),
            Line::Ready { s, next } => ready[s as usize] = Some(next),
            Line::Appended { s, seq } => appended[s as usize] = appended[s as usize].max(Some(seq)),
            Line::Durable { s, seq } => durable[s as usize].push(seq),
            _ => {}
        }
    }
    let log_id = match block_on(shardwal::log_dir::load(&ReadOnlyStorage, dir)) {
        Ok(id) => id,
        Err(_) if ready.iter().all(Option::is_none) && m.next.iter().all(|&n| n == 0) => {
            return Ok(());
        }
        Err(e) => return Err(format!("LOG_ID: {e}")),
    };
    for s in 0..k {
        let sh = ShardId(s as u32);
        if let Some(r) = ready[s]
            && r != m.next[s]
        {
            return Err(format!(
                "shard {s}: ShardLog::open resumed at {r}; the read-only scan predicted {}",
                m.next[s]
            ));
        }
        let sdir = shard_dir(dir, sh);
        let next = if sdir.exists() {
            let exp = Expect {
                log_id,
                shard: sh,
                max_payload: shardwal::format::MAX_RECORD_HARD,
            };
            let opts = ScanOptions {
                from_seq: None,
                repair: false,
            };
            let sc = block_on(shard_scan::scan(
                &ReadOnlyStorage,
                &sdir,
                exp,
                opts,
                |_, _, _| true,
            ))
            .map_err(|e| format!("scan of shard {s}: {e}"))?;
            shard_scan::decide(sc, None, None).report.next_seq.0
        } else {
            0
        };
        if next < m.next[s] {
            return Err(format!(
                "shard {s}: the log's end went back from {} to {next}",
                m.next[s]
            ));
        }
        if ready[s].is_none() && next != m.next[s] {
            return Err(format!(
                "shard {s}: an open killed before it finished moved the end from {} to {next}",
                m.next[s]
            ));
        }
        if let Some(&d) = durable[s].iter().max()
            && d >= next
        {
            return Err(format!(
                "shard {s}: record {d} was reported durable; the log ends at {next}"
            ));
        }
        let appended_end = appended[s].map_or(m.next[s], |a| a + 1);
        if next > appended_end {
            return Err(format!(
                "shard {s}: the log holds records up to {}, but {appended_end} were appended",
                next - 1
            ));
        }
        if durable[s]
            .iter()
            .any(|&d| d < m.next[s] || d >= appended_end)
        {
            return Err(format!(
                "shard {s}: a durable report outside what was appended"
            ));
        }
        let recs = if next > 0 {
            read_shard(dir, s as u32, next)?
        } else {
            Vec::new()
        };
        f.records_read += recs.len() as u64;
        if recs.len() as u64 != next {
            return Err(format!(
                "shard {s}: {} records read, the scan found {next}",
                recs.len()
            ));
        }
        for (i, r) in recs.iter().enumerate() {
            if r.seq != i as u64 {
                return Err(format!("shard {s}: record {i} has seq {}", r.seq));
            }
            if r.kind != RecordKind::Data || r.payload != append_payload(s as u32, r.seq) {
                return Err(format!(
                    "shard {s}: record {} is not the one appended ({:?})",
                    r.seq, r.kind
                ));
            }
        }
        f.append_durable_acked += durable[s].len() as u64;
        f.append_records_verified += next - m.next[s];
        m.next[s] = next;
    }
    Ok(())
}
