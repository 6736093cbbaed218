//! Two bare `ShardLog`s opening one fresh log directory at the same moment
//! (an engine opening one shard per core without the runtime) agree on one
//! `LOG_ID`: both opens succeed, both shards keep every record they wrote
//! and closed, and `LOG_ID` is whole. Issue 10, case 1: `LOG_ID` used to be
//! created check-then-create through one fixed temp name, so one open could
//! fail, or a shard could write under a log id other than the published
//! one and have its segments deleted as foreign at the next open.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use common::{check_records, fill_payload, read_all};
use futures_lite::future::block_on;
use shardwal::segment::shard_dir;
use shardwal::{DmaStorage, FsyncPolicy, Seq, ShardConfig, ShardId, ShardLog, StdStorage};

const TRIALS: usize = 30;
const RECORDS: u64 = 20;

fn config() -> ShardConfig {
    ShardConfig {
        segment_size: 64 << 10,
        buffer_size: 8 << 10,
        max_record_size: 4096,
        fsync: FsyncPolicy::Never,
        ..ShardConfig::default()
    }
}

fn rec(shard: u32, seq: u64) -> Vec<u8> {
    let mut v = vec![0u8; 40 + (seq as usize % 50)];
    fill_payload(u64::from(shard) + 1, seq, &mut v);
    v
}

/// Run `body` on a fresh executor of its own, like one core of an engine.
fn on_executor<T: Send + 'static>(
    name: String,
    body: impl AsyncFnOnce() -> T + Send + 'static,
) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .name(&name)
        .spawn(move || async move { body().await })
        .expect("spawn executor")
        .join()
        .expect("executor")
}

/// Join `thread`; a panic in it (or in its executor) is a failure to
/// report with the others, not the end of the test.
fn joined<T>(thread: std::thread::JoinHandle<Result<T, String>>) -> Result<T, String> {
    thread.join().unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("panicked: {msg}"))
    })
}

/// Open `shard`, append `RECORDS` records, sync and close, starting the
/// open when every other writer of the trial is ready too.
fn write_shard(dir: PathBuf, shard: u32, start: Arc<Barrier>) -> Result<(), String> {
    on_executor(format!("writer-{shard}"), async move || {
        start.wait();
        let log = ShardLog::open(DmaStorage, &dir, ShardId(shard), config())
            .await
            .map_err(|e| format!("open: {e}"))?;
        for seq in 0..RECORDS {
            log.append(&rec(shard, seq))
                .await
                .map_err(|e| e.to_string())?;
        }
        log.sync().await.map_err(|e| e.to_string())?;
        log.close().await.map_err(|e| e.to_string())
    })
}

/// What reopening a shard found: `Ok(next_seq)` or the open's error.
fn reopen(dir: &Path, shard: u32) -> Result<Seq, String> {
    let dir = dir.to_path_buf();
    joined(std::thread::spawn(move || {
        on_executor(format!("reopen-{shard}"), async move || {
            let log = ShardLog::open(DmaStorage, &dir, ShardId(shard), config())
                .await
                .map_err(|e| e.to_string())?;
            let next = log.next_seq();
            log.close().await.map_err(|e| e.to_string())?;
            Ok(next)
        })
    }))
}

#[test]
fn two_shards_opening_a_fresh_log_at_once_both_keep_their_records() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut failed_opens = Vec::new();
    let mut lost = Vec::new();
    let mut bad_log_id = Vec::new();
    for trial in 0..TRIALS {
        let dir = tmp.path().join(format!("trial-{trial}"));
        let start = Arc::new(Barrier::new(2));
        let writers: Vec<_> = [0u32, 1]
            .into_iter()
            .map(|shard| {
                let (dir, start) = (dir.clone(), start.clone());
                std::thread::spawn(move || write_shard(dir, shard, start))
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(joined).collect();
        let mut opened = Vec::new();
        for (shard, r) in results.into_iter().enumerate() {
            match r {
                Ok(()) => opened.push(shard as u32),
                Err(e) => failed_opens.push(format!("trial {trial} shard {shard}: {e}")),
            }
        }
        if let Err(e) = block_on(shardwal::log_dir::load(&StdStorage, &dir)) {
            bad_log_id.push(format!("trial {trial}: {e}"));
        }
        // Every record of a shard that wrote and closed is still there: its
        // records and its close record.
        for shard in opened {
            match reopen(&dir, shard) {
                Ok(next) if next == Seq(RECORDS + 1) => {}
                Ok(next) => lost.push(format!("trial {trial} shard {shard}: next_seq {next}")),
                Err(e) => lost.push(format!("trial {trial} shard {shard}: reopen failed: {e}")),
            }
        }
    }
    assert!(
        failed_opens.is_empty() && lost.is_empty() && bad_log_id.is_empty(),
        "of {TRIALS} trials: {} opens failed {failed_opens:#?}; {} shards lost records \
         {lost:#?}; {} LOG_IDs unreadable {bad_log_id:#?}",
        failed_opens.len(),
        lost.len(),
        bad_log_id.len(),
    );
    // The records themselves, read back, in the last trial's directory.
    let dir = tmp.path().join(format!("trial-{}", TRIALS - 1));
    for shard in [0u32, 1] {
        let d = dir.clone();
        let recs = on_executor(format!("read-{shard}"), async move || {
            read_all(DmaStorage, &d, ShardId(shard), 0).await
        });
        assert_eq!(
            recs.len() as u64,
            RECORDS + 1,
            "{:?}",
            shard_dir(&dir, ShardId(shard))
        );
        check_records(&recs, 0, |seq| rec(shard, seq));
    }
}
