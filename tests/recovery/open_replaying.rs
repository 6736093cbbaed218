//! `ShardLog::open_replaying`: the one-pass open. The records it hands over
//! while recovery reads the log are exactly those a `ShardReader` reads
//! after a plain open, for a clean log over many segments and for the same
//! log torn at many offsets of its last segment (nothing of a torn tail is
//! ever handed over); mid-log corruption fails the open as it does without
//! replay; an error from the callback stops the scan and is returned; the
//! writer then continues at the next seq. Both backends. The segments grow
//! as they are written (`SegmentPrepare::Create`), so a truncated file is a
//! crash's shape (a `SIZED` one cut short is corruption).

use crate::common;

use std::path::{Path, PathBuf};

use common::{Owned, copy_dir, data_segments, payload_between, read_all, run, segment_paths};
use shardwal::rng::SplitMix;
use shardwal::{
    DmaStorage, Error, FsyncPolicy, SegmentPrepare, Seq, ShardConfig, ShardId, ShardLog,
    StdStorage, Storage,
};

const TAG: u64 = 0x0e9a;
const SHARD: ShardId = ShardId(0);

fn config() -> ShardConfig {
    ShardConfig {
        segment_size: 64 << 10,
        buffer_size: 4 << 10,
        max_record_size: 2048,
        fsync: FsyncPolicy::Never,
        prepare: SegmentPrepare::Create,
        ..ShardConfig::default()
    }
}

fn rec(seq: u64) -> Vec<u8> {
    payload_between(TAG, seq, 0, 1500)
}

/// Write ~1,500 records (data, with a barrier every 50) over many segments.
async fn write<S: Storage>(storage: S, dir: &Path) -> u64 {
    let log = ShardLog::open(storage, dir, SHARD, config())
        .await
        .expect("open");
    for i in 0..1500u64 {
        if i % 50 == 49 {
            log.barrier().await.expect("barrier");
        } else {
            let seq = log.next_seq();
            log.append(&rec(seq.0)).await.expect("append");
        }
    }
    let next = log.next_seq().0;
    log.close().await.expect("close");
    next
}

/// Open with replay; the records handed over, owned.
async fn open_collecting<S: Storage>(
    storage: S,
    dir: &Path,
) -> Result<(ShardLog<S>, Vec<Owned>), Error> {
    let mut seen = Vec::new();
    let log = ShardLog::open_replaying(storage, dir, SHARD, config(), |r| {
        assert_eq!(r.lsn.shard, SHARD);
        assert_eq!(r.payload.as_ptr() as usize % 8, 0, "payload alignment");
        seen.push(Owned {
            seq: r.lsn.seq.0,
            epoch: r.lsn.epoch.0,
            kind: r.kind,
            payload: r.payload.to_vec(),
        });
        Ok(())
    })
    .await?;
    Ok((log, seen))
}

/// `a == b`, reported by the first record that differs (not by dumping both).
fn same(a: &[Owned], b: &[Owned], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: record counts");
    if let Some((x, y)) = a.iter().zip(b).find(|(x, y)| x != y) {
        panic!(
            "{what}: records differ: seq {} {:?} ({} B) vs seq {} {:?} ({} B)",
            x.seq,
            x.kind,
            x.payload.len(),
            y.seq,
            y.kind,
            y.payload.len()
        );
    }
}

fn scratch(root: &Path, name: &str, from: &Path) -> PathBuf {
    let d = root.join(name);
    copy_dir(from, &d);
    d
}

async fn agrees_with_reader<S: Storage>(storage: S, root: PathBuf) {
    let orig = root.join("orig");
    let written = write(storage.clone(), &orig).await;
    let segs = segment_paths(&orig, SHARD);
    assert!(
        segs.len() > 10,
        "the log spans many segments: {}",
        segs.len()
    );

    // The clean log: everything, in order, once.
    let d = scratch(&root, "clean", &orig);
    let (log, seen) = open_collecting(storage.clone(), &d).await.expect("open");
    assert_eq!(seen.len() as u64, written + 1, "every record and the close");
    assert!(seen.iter().enumerate().all(|(i, r)| r.seq == i as u64));
    assert_eq!(log.next_seq().0, seen.len() as u64);
    log.close().await.expect("close");
    let again = read_all(storage.clone(), &d, SHARD, 0).await;
    same(&again[..seen.len()], &seen, "clean");

    // Torn at random offsets of the last segment with records (not a blank
    // prepared one after it): what is handed over is what the log keeps,
    // and the writer continues right after it.
    let last = data_segments(&orig, SHARD)
        .last()
        .expect("segments")
        .clone();
    let len = std::fs::metadata(&last).expect("stat").len();
    let mut rng = SplitMix(0x7e11);
    for t in 0..12 {
        let d = scratch(&root, &format!("torn{t}"), &orig);
        let at = rng.next_u64() % len;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join(last.strip_prefix(&orig).expect("under orig")))
            .expect("open segment");
        f.set_len(at).expect("truncate");
        drop(f);
        let (log, seen) = open_collecting(storage.clone(), &d)
            .await
            .expect("open torn");
        assert_eq!(log.recovery().next_seq.0, seen.len() as u64, "cut at {at}");
        let lsn = log.append(b"after").await.expect("append after");
        assert_eq!(lsn.seq, Seq(seen.len() as u64));
        log.close().await.expect("close");
        let after = read_all(storage.clone(), &d, SHARD, 0).await;
        same(&after[..seen.len()], &seen, &format!("cut at {at}"));
        assert_eq!(after[seen.len()].payload, b"after");
    }

    // Mid-log corruption: refused, as by a plain open.
    let d = scratch(&root, "corrupt", &orig);
    let victim = d.join(segs[3].strip_prefix(&orig).expect("under orig"));
    let mut bytes = std::fs::read(&victim).expect("read");
    bytes[20_000] ^= 0x10;
    std::fs::write(&victim, &bytes).expect("write");
    let plain = ShardLog::open(storage.clone(), &d, SHARD, config())
        .await
        .err()
        .expect("plain open refuses");
    let replaying = open_collecting(storage.clone(), &d)
        .await
        .err()
        .expect("replaying open refuses");
    assert!(matches!(plain, Error::Corruption { .. }), "{plain}");
    assert_eq!(plain.to_string(), replaying.to_string());

    // The callback's error stops the scan and is the open's error; the log
    // opens normally afterwards.
    let d = scratch(&root, "stopped", &orig);
    let mut calls = 0u64;
    let err = ShardLog::open_replaying(storage.clone(), &d, SHARD, config(), |_| {
        calls += 1;
        if calls == 100 {
            Err(Error::Config("enough".into()))
        } else {
            Ok(())
        }
    })
    .await
    .err()
    .expect("stopped");
    assert!(matches!(&err, Error::Config(m) if m == "enough"), "{err}");
    assert_eq!(calls, 100, "nothing is handed over after the error");
    let (log, seen) = open_collecting(storage, &d).await.expect("open after");
    assert_eq!(seen.len() as u64, written + 1);
    log.close().await.expect("close");
}

#[test]
fn one_pass_open_hands_over_what_the_log_keeps_std() {
    let root = tempfile::tempdir().expect("tempdir");
    let path = root.path().to_path_buf();
    run("open-replaying-std", move || {
        agrees_with_reader(StdStorage, path)
    });
}

#[test]
fn one_pass_open_hands_over_what_the_log_keeps_dma() {
    let root = tempfile::tempdir().expect("tempdir");
    let path = root.path().to_path_buf();
    run("open-replaying-dma", move || {
        agrees_with_reader(DmaStorage, path)
    });
}
