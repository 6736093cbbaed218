//! Close quiesces I/O: once `ShardLog::close` has returned, the shard does no
//! more I/O in its directory — no segment is created, grown or removed
//! after it — so the directory can be reopened, copied or deleted at once.
//!
//! `close` flags the shard closed, then awaits its write, sync and
//! segment-preparation tasks; the preparation of a next segment stops
//! between zero-fill chunks. Before that fix, reopening a directory on the
//! executor that closed it raced with the preparation task (glommio panics
//! in `DmaFile::open_at` when the file vanishes between its open and its
//! statfs).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::run;
use shardwal::{DmaStorage, FsyncPolicy, SegmentPrepare, ShardConfig, ShardId, ShardLog};

/// Every file under `dir` with its size.
fn snapshot(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let e = e.expect("entry");
            let m = e.metadata().expect("metadata");
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path().display().to_string(), m.len());
            }
        }
    }
    out
}

#[test]
fn no_segment_is_touched_after_close_returns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run("close-quiesces", move || async move {
        // A large zero-filled segment keeps the prepare task busy for a while.
        let cfg = ShardConfig {
            segment_size: 256 << 20,
            fsync: FsyncPolicy::Never,
            prepare: SegmentPrepare::ZeroFill,
            ..ShardConfig::default()
        };
        let log = ShardLog::open(DmaStorage, &dir, ShardId(0), cfg)
            .await
            .expect("open");
        log.append(b"one record").await.expect("append");
        log.close().await.expect("close");
        let after_close = snapshot(&dir);
        glommio::timer::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            snapshot(&dir),
            after_close,
            "the directory changed after close() returned"
        );
    });
}
