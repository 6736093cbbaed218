//! Recovery never removes a file without saying so: every segment file it
//! deletes (blank, short, empty, or past the cut) is listed in the shard's
//! recovery report and logged through `tracing` with its path.

use crate::common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::{payload, run, segment_paths};
use shardwal::segment::{segment_name, shard_dir};
use shardwal::{DmaStorage, FsyncPolicy, ShardConfig, ShardId, ShardLog};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Collects every event as one line of `name=value` pairs.
struct Capture(Arc<Mutex<Vec<String>>>);

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line(String::new());
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn config() -> ShardConfig {
    ShardConfig {
        segment_size: 64 << 10,
        buffer_size: 8 << 10,
        max_record_size: 4096,
        fsync: FsyncPolicy::Never,
        ..ShardConfig::default()
    }
}

#[test]
fn every_segment_file_recovery_removes_is_reported_and_logged() {
    let events = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(Capture(events.clone())).expect("subscriber");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let shard = ShardId(0);
    {
        let dir = dir.clone();
        run("write", move || async move {
            let log = ShardLog::open(DmaStorage, &dir, shard, config())
                .await
                .expect("open");
            for seq in 0..500 {
                log.append(&payload(7, seq, 300)).await.expect("append");
            }
            log.sync().await.expect("sync");
            log.close().await.expect("close");
        });
    }
    // Stray files with segment names after the end of the log: an empty
    // one and a short all-zero one, as a crash while creating them leaves.
    let sdir = shard_dir(&dir, shard);
    let last = segment_paths(&dir, shard)
        .iter()
        .filter_map(|p| shardwal::segment::parse_segment_name(p.file_name()?.to_str()?))
        .max()
        .expect("segments");
    let empty = sdir.join(segment_name(last + 1));
    let short = sdir.join(segment_name(last + 2));
    std::fs::write(&empty, b"").unwrap();
    std::fs::write(&short, [0u8; 100]).unwrap();
    // Every file without a valid header goes: the strays, and the next
    // segment the writer had prepared but never written.
    let data: BTreeSet<PathBuf> = common::data_segments(&dir, shard).into_iter().collect();
    let doomed: Vec<PathBuf> = segment_paths(&dir, shard)
        .into_iter()
        .filter(|p| !data.contains(p))
        .collect();
    assert!(
        doomed.contains(&empty) && doomed.contains(&short),
        "{doomed:?}"
    );

    let report = {
        let dir = dir.clone();
        run("reopen", move || async move {
            let log = ShardLog::open(DmaStorage, &dir, shard, config())
                .await
                .expect("reopen");
            assert_eq!(log.next_seq().0, 501, "500 records and the close record");
            let r = log.recovery().clone();
            log.close().await.expect("close");
            r
        })
    };
    assert_eq!(report.removed, doomed, "the report lists what was removed");
    // Gone, or (the index after the log's end) being prepared anew, blank,
    // by the reopened writer when it closed.
    for p in &doomed {
        if let Ok(b) = std::fs::read(p) {
            assert!(
                b.len() as u64 <= config().segment_size && b.iter().all(|&x| x == 0),
                "{} was reported removed but holds {} bytes",
                p.display(),
                b.len()
            );
        }
    }
    assert!(!short.exists());
    let events = events.lock().unwrap();
    for p in &doomed {
        let shown = p.display().to_string();
        assert!(
            events
                .iter()
                .any(|e| e.contains("removing a segment") && e.contains(&shown)),
            "no event names {shown}: {events:#?}"
        );
    }
    assert!(
        events.iter().any(|e| e.contains("shard recovered")),
        "{events:#?}"
    );
}
