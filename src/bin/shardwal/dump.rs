//! `shardwal dump DIR [--shard S] [--from SEQ] [--limit N]`: the records of
//! a log with their LSN (shard/epoch/seq), kind and payload. Data payloads
//! print as UTF-8 text when they are printable, else as hex, truncated to
//! `--max-bytes`; commit records and checkpoint markers are decoded.
//!
//! Records come from the recovery scanner, so a dump shows exactly the
//! records recovery would keep (before the consistent cut at the sealed
//! epoch), and ends with a warning at a torn tail or an error (exit 1) at
//! corruption. Read-only. With `--json`, one object per record per line.

use std::io::Write;
use std::path::Path;

use shardwal::RecordKind;
use shardwal::checkpoint::payloads::{self, CheckpointMarker, CommitRecord};
use shardwal::format::frame::Frame;

use serde::Serialize;

use crate::logdir::{LogDir, Verdict, hex, kind_name};
use crate::output::json;
use crate::output::progress::Progress;
use crate::{CmdResult, EXIT_CORRUPT, EXIT_ERROR, EXIT_OK, Fail};

/// Options of `dump`.
pub struct Options {
    /// Only this shard.
    pub shard: Option<u32>,
    /// First seq, in each shard.
    pub from: u64,
    /// Records to print at most, in total.
    pub limit: Option<u64>,
    /// Payload bytes shown at most.
    pub max_bytes: usize,
    /// JSON lines.
    pub json: bool,
}

/// A payload shown as text if it is printable UTF-8, else as hex; the bool
/// says whether it was truncated to `max` bytes.
pub fn show_payload(p: &[u8], max: usize) -> (String, &'static str, bool) {
    let cut = &p[..p.len().min(max)];
    let truncated = cut.len() < p.len();
    // A cut may split a UTF-8 character: accept an incomplete last one.
    let text = match std::str::from_utf8(cut) {
        Ok(s) => Some(s),
        Err(e) if truncated && e.error_len().is_none() => {
            std::str::from_utf8(&cut[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    match text {
        Some(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            (s.to_string(), "utf8", truncated)
        }
        _ => (hex(cut), "hex", truncated),
    }
}

/// One record in `dump --json`.
#[derive(Serialize)]
struct RecordJson<'a> {
    shard: u32,
    epoch: u64,
    seq: u64,
    lsn: &'a str,
    kind: &'static str,
    len: usize,
    durable_next: u64,
    segment: String,
    offset: usize,
    /// The decoded commit record or checkpoint marker (left out otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    payload: String,
    encoding: &'static str,
    truncated: bool,
}

/// A decoded control record's payload.
#[derive(Serialize)]
#[serde(untagged)]
enum Value {
    /// `{"epoch", "watermark", "offsets"}`.
    Commit(json::Commit),
    /// `{"checkpoint", "epoch", "snapshot"}`.
    Checkpoint {
        checkpoint: u64,
        epoch: u64,
        snapshot: json::SnapshotRef,
    },
}

/// A decoded commit record or checkpoint marker, as text and as JSON.
fn decoded(f: &Frame<'_>) -> Option<(String, Option<Value>)> {
    match f.meta.kind {
        RecordKind::Commit => Some(
            match payloads::decode::<CommitRecord>(f.payload, "commit") {
                Ok(c) => {
                    let offs: Vec<String> = c
                        .offsets
                        .iter()
                        .map(|o| format!("{}={}", o.source, o.offset))
                        .collect();
                    (
                        format!(
                            "commit of epoch {}, watermark {}, offsets [{}]",
                            c.epoch,
                            c.watermark,
                            offs.join(" ")
                        ),
                        Some(Value::Commit((&c).into())),
                    )
                }
                Err(e) => (format!("INVALID commit payload: {e}"), None),
            },
        ),
        RecordKind::Checkpoint => Some(
            match payloads::decode::<CheckpointMarker>(f.payload, "checkpoint marker") {
                Ok(m) => (
                    format!(
                        "checkpoint {} at epoch {}, snapshot {} ({} bytes, crc {:#010x})",
                        m.checkpoint, m.epoch, m.snapshot.file, m.snapshot.len, m.snapshot.crc
                    ),
                    Some(Value::Checkpoint {
                        checkpoint: m.checkpoint,
                        epoch: m.epoch,
                        snapshot: (&m.snapshot).into(),
                    }),
                ),
                Err(e) => (format!("INVALID checkpoint marker: {e}"), None),
            },
        ),
        RecordKind::Barrier => Some((format!("end of epoch {}", f.meta.epoch), None)),
        RecordKind::Close => Some(("clean close".into(), None)),
        _ => None,
    }
}

/// Run `dump`.
pub fn run(dir: &Path, o: &Options) -> CmdResult {
    let log = LogDir::open(dir)?;
    let shards: Vec<u32> = match o.shard {
        Some(s) if log.shards.contains(&s) => vec![s],
        Some(s) => {
            return Err(Fail::new(
                EXIT_ERROR,
                format!(
                    "{} has no shard {s} (shards: {:?})",
                    dir.display(),
                    log.shards
                ),
            ));
        }
        None => log.shards.clone(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut code = EXIT_OK;
    let mut closed = false;
    if !o.json {
        let _ = writeln!(
            out,
            "{:<24} {:<10} {:>8}  payload",
            "lsn (shard/epoch/seq)", "kind", "len"
        );
    }
    for s in shards {
        if closed || o.limit.is_some_and(|l| printed >= l) {
            break;
        }
        let scan = log.scan_shard(s, Some(o.from), &mut Progress::hidden(), |f, seg, off| {
            if f.meta.seq.0 < o.from {
                return true;
            }
            if o.limit.is_some_and(|l| printed >= l) {
                return false;
            }
            let lsn = format!("{s}/{}/{}", f.meta.epoch.0, f.meta.seq.0);
            let written = if o.json {
                let (payload, encoding, truncated) = show_payload(f.payload, o.max_bytes);
                let rec = RecordJson {
                    shard: s,
                    epoch: f.meta.epoch.0,
                    seq: f.meta.seq.0,
                    lsn: &lsn,
                    kind: kind_name(f.meta.kind),
                    len: f.payload.len(),
                    durable_next: f.meta.durable_next.0,
                    segment: shardwal::segment::segment_name(seg),
                    offset: off,
                    value: decoded(f).and_then(|(_, v)| v),
                    payload,
                    encoding,
                    truncated,
                };
                json::write_line(&mut out, &rec).is_ok()
            } else {
                let shown = match decoded(f) {
                    Some((text, _)) => text,
                    None => {
                        let (p, enc, trunc) = show_payload(f.payload, o.max_bytes);
                        let dots = if trunc { "…" } else { "" };
                        if enc == "utf8" {
                            format!("{:?}{dots}", p)
                        } else {
                            format!("0x{p}{dots}")
                        }
                    }
                };
                writeln!(
                    out,
                    "{:<24} {:<10} {:>8}  {}",
                    lsn,
                    kind_name(f.meta.kind),
                    f.payload.len(),
                    shown
                )
                .is_ok()
            };
            if !written {
                // The reader went away (e.g. `| head`): stop quietly.
                closed = true;
                return false;
            }
            printed += 1;
            // Stop at once when the limit is reached: what lies beyond it
            // (even damage) is not part of this dump.
            o.limit.is_none_or(|l| printed < l)
        })?;
        let _ = out.flush();
        match &scan.verdict {
            Verdict::Corrupt(c) => {
                eprintln!(
                    "shardwal: corruption in shard {s}, segment {}, offset {}: {}",
                    c.path.display(),
                    c.offset,
                    c.cause
                );
                code = EXIT_CORRUPT;
            }
            Verdict::Torn(oc) => {
                if let Some(t) = &oc.torn {
                    eprintln!(
                        "shardwal: warning: shard {s} ends in a torn tail at segment {}, offset {} ({} bytes that recovery would cut): {}",
                        t.path.display(),
                        t.offset,
                        t.bytes,
                        t.cause
                    );
                }
            }
            Verdict::Clean(_) | Verdict::Stopped => {}
        }
    }
    let _ = out.flush();
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_show_as_text_or_hex() {
        assert_eq!(show_payload(b"hello", 64), ("hello".into(), "utf8", false));
        assert_eq!(show_payload(b"hello", 3), ("hel".into(), "utf8", true));
        assert_eq!(
            show_payload(&[0, 1, 0xff], 64),
            ("0001ff".into(), "hex", false)
        );
        // A multi-byte character cut in half is dropped, not hex-dumped.
        assert_eq!(show_payload("aé".as_bytes(), 2), ("a".into(), "utf8", true));
        assert_eq!(show_payload(b"a\x07b", 64), ("610762".into(), "hex", false));
    }
}
