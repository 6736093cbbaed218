//! Helpers shared by the `runtime_*` integration tests: small shard
//! configurations, data payloads that encode where they were appended, and
//! reading a log directory back (records, segments, snapshots, manifests)
//! with the crate's own readers on blocking std files.
//!
//! Each test file compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use shardwal::checkpoint::manifest::{self, ManifestError};
use shardwal::format::segment_header::SegmentHeader;
use shardwal::rng::SplitMix;
use shardwal::segment::{parse_segment_name, shard_dir};
use shardwal::{
    FsyncPolicy, Manifest, RecordKind, RuntimeConfig, Seq, ShardConfig, ShardId, ShardReader,
    StdStorage,
};

/// A shard configuration small enough for tests (1 MiB segments).
pub fn small_shard() -> ShardConfig {
    ShardConfig {
        segment_size: 1 << 20,
        buffer_size: 64 << 10,
        write_behind: 2,
        max_record_size: 4096,
        fsync: FsyncPolicy::PerEpoch,
        ..ShardConfig::default()
    }
}

/// A user-mode runtime configuration with `shards` shards.
pub fn runtime_config(shards: usize, shard: ShardConfig) -> RuntimeConfig {
    RuntimeConfig {
        shards: Some(shards),
        shard,
        ..RuntimeConfig::default()
    }
}

/// Size of the fixed part of a data payload.
pub const DATA_HEADER: usize = 4 + 8 + 8;

/// What a test data record says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data {
    pub shard: u32,
    pub epoch: u64,
    pub index: u64,
}

/// A data payload: `(shard, epoch, index)` then `pad` bytes derived from them.
pub fn data_payload(d: Data, pad: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(DATA_HEADER + pad);
    v.extend_from_slice(&d.shard.to_le_bytes());
    v.extend_from_slice(&d.epoch.to_le_bytes());
    v.extend_from_slice(&d.index.to_le_bytes());
    let mut rng = SplitMix(
        (u64::from(d.shard) << 48) ^ d.epoch.wrapping_mul(0x9E37_79B9) ^ d.index.rotate_left(17),
    );
    while v.len() < DATA_HEADER + pad {
        v.push(rng.next_u64() as u8);
    }
    v
}

/// Decode a payload made by [`data_payload`], checking its padding.
pub fn parse_data(p: &[u8]) -> Data {
    assert!(
        p.len() >= DATA_HEADER,
        "data payload of {} bytes is too short",
        p.len()
    );
    let d = Data {
        shard: u32::from_le_bytes(p[0..4].try_into().unwrap()),
        epoch: u64::from_le_bytes(p[4..12].try_into().unwrap()),
        index: u64::from_le_bytes(p[12..20].try_into().unwrap()),
    };
    assert_eq!(
        data_payload(d, p.len() - DATA_HEADER),
        p,
        "payload of {d:?} is damaged"
    );
    d
}

/// A padding length for record `index` in `0..=max`.
pub fn pad_len(index: u64, max: usize) -> usize {
    (SplitMix(index ^ 0xabcd).next_u64() % (max as u64 + 1)) as usize
}

/// One record read back, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub seq: u64,
    pub epoch: u64,
    pub kind: RecordKind,
    pub payload: Vec<u8>,
}

/// Every record of `shard` from `from` on (from the oldest segment left if
/// `from` was truncated away), read with [`ShardReader`] on std files.
pub fn read_log(dir: &Path, shard: u32, from: u64) -> Vec<Rec> {
    futures_lite::future::block_on(async {
        let mut r = ShardReader::open(StdStorage, dir, ShardId(shard), Seq(from))
            .await
            .unwrap_or_else(|e| panic!("open reader of shard {shard}: {e}"));
        let mut out = Vec::new();
        while let Some(rec) = r
            .next()
            .await
            .unwrap_or_else(|e| panic!("read shard {shard}: {e}"))
        {
            assert_eq!(rec.lsn.shard, ShardId(shard));
            out.push(Rec {
                seq: rec.lsn.seq.0,
                epoch: rec.lsn.epoch.0,
                kind: rec.kind,
                payload: rec.payload.to_vec(),
            });
        }
        out
    })
}

/// Assert that the records' sequence numbers are dense.
pub fn assert_dense(shard: u32, recs: &[Rec]) {
    for w in recs.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq + 1,
            "shard {shard}: sequence numbers are not dense"
        );
    }
}

/// The log id of the log at `dir`.
pub fn log_id(dir: &Path) -> [u8; 16] {
    futures_lite::future::block_on(shardwal::log_dir::load_or_init(&StdStorage, dir))
        .expect("read log id")
}

/// Read and validate manifest `id`.
pub fn read_manifest(dir: &Path, id: u64) -> Result<Manifest, ManifestError> {
    futures_lite::future::block_on(manifest::read(&StdStorage, dir, id))
}

/// The newest valid manifest and the newer ones skipped.
pub fn load_newest(dir: &Path) -> (Option<Manifest>, Vec<(u64, ManifestError)>) {
    let id = log_id(dir);
    futures_lite::future::block_on(manifest::load_newest(&StdStorage, dir, id))
        .expect("load manifests")
}

/// Ids of the manifest files present.
pub fn manifest_ids(dir: &Path) -> Vec<u64> {
    futures_lite::future::block_on(manifest::list(&StdStorage, dir)).expect("list manifests")
}

/// Path of manifest `id`.
pub fn manifest_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(manifest::CHECKPOINT_DIR)
        .join(manifest::manifest_name(id))
}

/// Read and verify shard `shard`'s snapshot of the checkpoint in `m`.
pub fn read_snapshot(dir: &Path, m: &Manifest, shard: u32) -> shardwal::Result<Vec<u8>> {
    let sc = &m.shards[shard as usize];
    futures_lite::future::block_on(shardwal::checkpoint::snapshot::read(
        &StdStorage,
        &shard_dir(dir, ShardId(shard)),
        shard,
        m.checkpoint,
        &sc.snapshot,
    ))
}

/// Checkpoint ids of the snapshot files in a shard's directory, ascending.
pub fn snapshot_ids(dir: &Path, shard: u32) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(shard_dir(dir, ShardId(shard)))
        .expect("list shard dir")
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            shardwal::checkpoint::snapshot::parse_snapshot_name(&n)
        })
        .collect();
    v.sort_unstable();
    v
}

/// A segment file and its header, if it has a valid one (a prepared segment
/// that was never written has none).
#[derive(Debug, Clone)]
pub struct SegFile {
    pub index: u64,
    pub path: PathBuf,
    pub header: Option<SegmentHeader>,
}

/// The segment files of `shard`, in log order.
pub fn segments(dir: &Path, shard: u32) -> Vec<SegFile> {
    let sdir = shard_dir(dir, ShardId(shard));
    let mut v: Vec<SegFile> = std::fs::read_dir(&sdir)
        .unwrap_or_else(|e| panic!("list {}: {e}", sdir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            let index = parse_segment_name(p.file_name()?.to_str()?)?;
            let bytes = std::fs::read(&p).ok()?;
            Some(SegFile {
                index,
                header: SegmentHeader::decode(&bytes).ok(),
                path: p,
            })
        })
        .collect();
    v.sort_by_key(|s| s.index);
    v
}

/// Run `f` on a new thread; panic if it does not finish within `limit`
/// (a call that hangs is a bug: the test names it instead of hanging).
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not return within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// An error for engine code that found something wrong (fails the shard, so
/// `shutdown` returns it and the test fails).
pub fn engine_err(msg: String) -> shardwal::Error {
    shardwal::Error::Config(format!("test engine: {msg}"))
}
