//! One writer per shard: every `ShardLog` holds its shard's lock
//! (`shard-NNNN/LOCK`), bare or under the runtime. A bare writer on a shard
//! that a running `Runtime` owns is refused with `Error::Locked`, and so is a
//! second bare writer on one shard; the lock is released at close.

use crate::runtime_common;

use std::path::Path;

use runtime_common::*;
use shardwal::{Error, Runtime, ShardId, ShardLog, StdStorage};

fn on_executor<T: Send + 'static>(f: impl AsyncFnOnce() -> T + Send + 'static) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move { f().await })
        .unwrap()
        .join()
        .unwrap()
}

async fn open(dir: &Path, shard: u32) -> shardwal::Result<ShardLog<StdStorage>> {
    ShardLog::open(StdStorage, dir, ShardId(shard), small_shard()).await
}

#[test]
fn a_bare_writer_cannot_write_a_shard_that_a_runtime_owns() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let rt = Runtime::start(&dir, runtime_config(2, small_shard()), |_| async { Ok(()) })
        .expect("start");
    let d = dir.clone();
    let r = on_executor(async move || open(&d, 0).await.map(|_| ()));
    assert!(matches!(r, Err(Error::Locked { .. })), "{r:?}");
    let sealed = rt.coordinator().advance_epoch().and_then(|t| t.wait());
    assert!(sealed.is_ok(), "the runtime is unaffected: {sealed:?}");
    rt.shutdown().expect("shutdown");
    // Once the runtime is gone, a bare writer may open the shard.
    let d = dir.clone();
    on_executor(async move || open(&d, 0).await.unwrap().close().await.unwrap());
}

#[test]
fn a_second_bare_writer_on_one_shard_is_refused_until_the_first_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    on_executor(async move || {
        let first = open(&dir, 0).await.unwrap();
        first.append(b"first").await.unwrap();
        let second = open(&dir, 0).await;
        assert!(
            matches!(second, Err(Error::Locked { .. })),
            "{:?}",
            second.err()
        );
        // Another shard of the same log is a different writer.
        let other = open(&dir, 1).await.unwrap();
        other.close().await.unwrap();
        first.close().await.unwrap();
        let again = open(&dir, 0).await.unwrap();
        assert_eq!(
            again.next_seq().0,
            2,
            "the first writer's records (and close) are there"
        );
        again.close().await.unwrap();
    });
}
