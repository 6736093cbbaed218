//! A stray shard directory is a clear error at start-up, never an
//! allocation or a mass of directories in proportion to its number: a log
//! without a `LAYOUT` file with an empty `shard-4294967295` or
//! `shard-99999` next to its shards is refused at once, and nothing is
//! created.

use crate::runtime_common;

use std::path::Path;
use std::time::{Duration, Instant};

use runtime_common::*;
use shardwal::{Error, Runtime, ShardConfig, ShardId, ShardLog, StdStorage};

/// A log of two shards written by bare `ShardLog`s (no `LAYOUT` file).
fn bare_log(dir: &Path) {
    let d = dir.to_path_buf();
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .unwrap();
    ex.run(async move {
        for s in 0..2 {
            let log = ShardLog::open(StdStorage, &d, ShardId(s), small_shard())
                .await
                .unwrap();
            log.append(b"a record").await.unwrap();
            log.close().await.unwrap();
        }
    });
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn a_stray_shard_directory_is_refused_at_once() {
    for stray in ["shard-4294967295", "shard-99999"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        bare_log(dir);
        std::fs::create_dir(dir.join(stray)).unwrap();
        let before = entries(dir);
        let t = Instant::now();
        let cfg = runtime_config(2, ShardConfig::default());
        match Runtime::start(dir, cfg, |_| async { Ok(()) }) {
            Err(Error::Config(m)) => assert!(m.contains(stray), "{stray}: {m}"),
            Err(e) => panic!("{stray}: refused with an unclear error: {e}"),
            Ok(rt) => {
                rt.shutdown().ok();
                panic!("{stray}: accepted");
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{stray}: took {:?}",
            t.elapsed()
        );
        // Nothing but the lock file may have been created.
        assert!(entries(dir) <= before + 1, "{stray}: created directories");
    }
}
