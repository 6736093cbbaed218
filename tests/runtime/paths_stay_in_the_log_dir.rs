//! No path taken from disk data leaves the log directory. The one name a
//! file of the log carries is a manifest's snapshot reference, which
//! recovery joins to the shard's directory; a manifest (valid CRC and all)
//! whose reference names anything but `snapshot_name(checkpoint)` (`..`, an
//! absolute path, another checkpoint's file) is refused like a damaged one:
//! the runtime falls back to the previous manifest, says so in
//! `RecoveryReport::skipped_manifests`, and restores that checkpoint's own
//! snapshot, never the file outside. (Every other name is built from
//! numbers: segment, snapshot and manifest names are parsed from directory
//! listings, shard directories from `u32` ids.)

use crate::runtime_common;

use std::future::Future;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use runtime_common::*;
use shardwal::checkpoint::SnapshotRef;
use shardwal::checkpoint::manifest;
use shardwal::checkpoint::snapshot::{self, snapshot_name};
use shardwal::{CheckpointId, ControlEvent, Runtime, ShardId, StdStorage};

/// The snapshot shard 0 writes at checkpoint `id`.
fn state(id: u64) -> Vec<u8> {
    format!("the state at checkpoint {id}").into_bytes()
}

fn write_log(dir: &Path) {
    let rt = Runtime::start(dir, runtime_config(1, small_shard()), |ctx| async move {
        loop {
            while let Some(ev) = ctx.poll_control() {
                let ControlEvent::Barrier(req) = ev else {
                    return Ok(());
                };
                ctx.log().append(b"data").await?;
                let snap = req.checkpoint.map(|c| state(c.0));
                ctx.complete_barrier(req, snap.as_deref()).await?;
            }
            glommio::timer::sleep(Duration::from_micros(200)).await;
        }
    })
    .expect("start");
    let c = rt.coordinator();
    for _ in 0..2 {
        c.checkpoint().and_then(|t| t.wait()).expect("checkpoint");
    }
    within(Duration::from_secs(60), "shutdown", move || rt.shutdown()).expect("shutdown");
}

/// Start a runtime; the checkpoint it restores, the snapshot shard 0 got,
/// and the manifests it skipped.
fn restore(dir: &Path) -> (Option<CheckpointId>, Vec<u8>, Vec<(CheckpointId, String)>) {
    let (tx, rx) = mpsc::channel();
    let rt = Runtime::start(dir, runtime_config(1, small_shard()), move |ctx| {
        let tx = tx.clone();
        async move {
            let snap = ctx.snapshot().await?.unwrap_or_default();
            let _ = tx.send((ctx.replay_plan().checkpoint, snap));
            Ok(())
        }
    })
    .expect("start");
    let skipped = rt.recovery_report().skipped_manifests.clone();
    let (ckpt, snap) = rx.recv_timeout(Duration::from_secs(30)).expect("restored");
    within(Duration::from_secs(60), "shutdown", move || rt.shutdown()).expect("shutdown");
    (ckpt, snap, skipped)
}

#[test]
fn a_manifest_naming_a_snapshot_outside_its_shard_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let pristine = tmp.path().join("pristine");
    write_log(&pristine);
    let (ckpt, snap, skipped) = restore(&pristine);
    assert_eq!(
        (ckpt, snap, skipped),
        (Some(CheckpointId(2)), state(2), vec![])
    );

    // A valid snapshot of checkpoint 2 for shard 0, with other bytes, out
    // of the log directory.
    let evil = b"bytes from outside the log directory";
    let o = outside.clone();
    let r = on_executor(move || async move {
        snapshot::write(&StdStorage, &o, 0, 2, evil)
            .await
            .expect("write the outside snapshot")
    });
    let abs = outside.join(&r.file);
    for (case, file) in [
        ("relative", format!("../../outside/{}", r.file)),
        ("absolute", abs.display().to_string()),
        ("another checkpoint's", snapshot_name(1)),
    ] {
        let dir = tmp.path().join(case.replace(' ', "-"));
        copy_tree(&pristine, &dir);
        let path = manifest_path(&dir, 2);
        let mut m = read_manifest(&dir, 2).expect("manifest 2");
        m.shards[0].snapshot = SnapshotRef {
            file: file.clone(),
            ..r.clone()
        };
        std::fs::write(&path, manifest::encode(&m).unwrap()).unwrap();
        let (ckpt, snap, skipped) = restore(&dir);
        assert_eq!(ckpt, Some(CheckpointId(1)), "{case}: falls back");
        assert_eq!(snap, state(1), "{case}: checkpoint 1's own snapshot");
        assert_eq!(skipped.len(), 1, "{case}: {skipped:?}");
        assert_eq!(skipped[0].0, CheckpointId(2));
        assert!(
            skipped[0].1.contains(&file),
            "{case}: the reason names the file: {}",
            skipped[0].1
        );
    }
    // The snapshot outside was a valid one: only the name stopped it.
    let sdir = shardwal::segment::shard_dir(&pristine, ShardId(0));
    let reread = futures_lite::future::block_on(snapshot::read(&StdStorage, &sdir, 0, 2, &{
        SnapshotRef {
            file: format!("../../outside/{}", r.file),
            ..r.clone()
        }
    }))
    .expect("snapshot::read itself follows the name");
    assert_eq!(reread, evil);
}

/// Run `f` on a glommio executor (snapshot writes spawn tasks on it).
fn on_executor<T: Send + 'static, F: Future<Output = T> + 'static>(
    f: impl FnOnce() -> F + Send + 'static,
) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(f)
        .expect("executor")
        .join()
        .expect("join")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}
