//! Owner-only permissions: every file the library creates is `0600` and
//! every directory `0700`, whatever the process umask would have allowed.
//! The test sets the umask to 0, so the modes it sees are the ones the code
//! asks for, then walks the whole log directory after a runtime (epochs, a
//! checkpoint with snapshots, manifests, `LAYOUT`, the locks) and after bare
//! `ShardLog`s on the DMA and the std backends.

use crate::runtime_common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use runtime_common::{small_shard, within};
use shardwal::{
    ControlEvent, DmaStorage, Runtime, RuntimeConfig, ShardConfig, ShardId, ShardLog, StdStorage,
    Storage,
};

/// Let the code alone decide the modes (0 widens nothing the code asks for,
/// and narrows nothing either).
fn umask_zero() {
    // SAFETY: umask only sets the process's file mode creation mask; it
    // cannot fail and touches no memory.
    unsafe {
        libc::umask(0);
    }
}

/// Every entry under `root` (and `root` itself): path and mode bits.
fn walk(root: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let md = std::fs::symlink_metadata(&p).expect("stat");
        let is_dir = md.is_dir();
        out.push((p.clone(), is_dir, md.permissions().mode() & 0o7777));
        if is_dir {
            for e in std::fs::read_dir(&p).expect("read dir") {
                todo.push(e.expect("entry").path());
            }
        }
    }
    out
}

/// Assert every directory is 0700 and every file 0600; return the names
/// seen, so the caller can check the walk covered what it should.
fn assert_owner_only(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for (p, is_dir, mode) in walk(root) {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(
            mode,
            want,
            "{} has mode {mode:o}, want {want:o}",
            p.display()
        );
        names.push(p.strip_prefix(root).unwrap().display().to_string());
    }
    names
}

fn has(names: &[String], what: &str, f: impl Fn(&str) -> bool) {
    assert!(
        names.iter().any(|n| f(n)),
        "no {what} among {names:?}: the walk would prove nothing about it"
    );
}

#[test]
fn a_runtime_creates_owner_only_files_and_directories() {
    umask_zero();
    let tmp = tempfile::tempdir().unwrap();
    // A directory the runtime creates itself, two levels deep.
    let dir = tmp.path().join("new").join("log");
    let cfg = RuntimeConfig {
        pin: false,
        ..runtime_common::runtime_config(2, small_shard())
    };
    let rt = Runtime::start(&dir, cfg, |ctx| async move {
        loop {
            while let Some(ev) = ctx.poll_control() {
                let ControlEvent::Barrier(req) = ev else {
                    return Ok(());
                };
                ctx.log().append(b"a record").await?;
                let snap = req.checkpoint.map(|_| vec![7u8; 5000]);
                ctx.complete_barrier(req, snap.as_deref()).await?;
            }
            glommio::timer::sleep(Duration::from_micros(200)).await;
        }
    })
    .expect("start");
    let c = rt.coordinator();
    c.advance_epoch().and_then(|t| t.wait()).expect("epoch");
    c.checkpoint().and_then(|t| t.wait()).expect("checkpoint");
    c.advance_epoch().and_then(|t| t.wait()).expect("epoch");
    within(Duration::from_secs(60), "shutdown", move || rt.shutdown()).expect("shutdown");

    // The runtime's own directories, not only the log's contents.
    for d in [tmp.path().join("new"), dir.clone()] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    let names = assert_owner_only(&dir);
    has(&names, "LOCK", |n| n == "LOCK");
    has(&names, "LOG_ID", |n| n == "LOG_ID");
    has(&names, "LAYOUT", |n| n == "LAYOUT");
    has(&names, "checkpoints/", |n| n == "checkpoints");
    has(&names, "manifest", |n| n.ends_with(".ckpt"));
    has(&names, "snapshot", |n| n.ends_with(".snap"));
    has(&names, "segment", |n| n.ends_with(".seg"));
    has(&names, "shard LOCK", |n| n == "shard-0001/LOCK");
}

fn bare_log<S: Storage + Send + Copy>(storage: S, dir: &Path) {
    let dir = dir.to_path_buf();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let cfg = ShardConfig {
                segment_size: 16 << 10,
                ..small_shard()
            };
            let log = ShardLog::open(storage, &dir, ShardId(3), cfg)
                .await
                .expect("open");
            for i in 0..200u32 {
                log.append(&i.to_le_bytes().repeat(20))
                    .await
                    .expect("append");
            }
            log.sync().await.expect("sync");
            log.close().await.expect("close");
        })
        .expect("executor")
        .join()
        .expect("join");
}

#[test]
fn a_bare_shard_log_creates_owner_only_files_and_directories() {
    umask_zero();
    let tmp = tempfile::tempdir().unwrap();
    for (name, dma) in [("dma", true), ("std", false)] {
        let dir = tmp.path().join(name);
        if dma {
            bare_log(DmaStorage, &dir);
        } else {
            bare_log(StdStorage, &dir);
        }
        let names = assert_owner_only(&dir);
        has(&names, "LOG_ID", |n| n == "LOG_ID");
        has(&names, "shard directory", |n| n == "shard-0003");
        has(&names, "shard LOCK", |n| n == "shard-0003/LOCK");
        // Several segments: rolled ones, and the one prepared ahead.
        let segs = names.iter().filter(|n| n.ends_with(".seg")).count();
        assert!(segs >= 2, "{name}: {segs} segments in {names:?}");
    }
}
