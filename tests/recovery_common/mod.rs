//! Helpers shared by the `recovery_*` integration tests: running code on a
//! glommio executor, bounding waits, deterministic payloads, simulated disks
//! carried between executors as plain byte images, and reading a shard back.
//!
//! Each test file compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use shardwal::io::AlignedBuf;
use shardwal::rng::SplitMix;
use shardwal::{
    FsyncPolicy, RecordKind, RuntimeConfig, Seq, ShardConfig, ShardId, ShardReader, SimStorage,
    StdStorage, Storage, StorageFile,
};

/// Run `body` on a fresh, unpinned glommio executor and return its result.
/// A panic inside the body fails the calling test.
pub fn run<G, F, T>(name: &str, body: G) -> T
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .name(name)
        .spawn(body)
        .expect("spawn glommio executor")
        .join()
        .unwrap_or_else(|e| panic!("executor {name} failed: {e}"))
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

/// A user-mode (the engine answers barriers), unpinned runtime configuration.
pub fn runtime_config(shards: usize, shard: ShardConfig) -> RuntimeConfig {
    RuntimeConfig {
        shards: Some(shards),
        shard,
        pin: false,
        ..RuntimeConfig::default()
    }
}

/// Small segments, so that logs of a few hundred records span many files.
pub fn small_shard(segment_size: u64) -> ShardConfig {
    ShardConfig {
        segment_size,
        buffer_size: 16 << 10,
        write_behind: 2,
        max_record_size: 4096,
        fsync: FsyncPolicy::PerEpoch,
        ..ShardConfig::default()
    }
}

/// `len` deterministic bytes derived from `key`.
pub fn fill(key: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix(key ^ 0x05ee_d0fb_17e5);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A data payload that names itself: `(generation, shard, epoch, index)`
/// followed by `pad` bytes derived from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    pub generation: u32,
    pub shard: u32,
    pub epoch: u64,
    pub index: u64,
}

/// Fixed part of a [`Tag`] payload.
pub const TAG_LEN: usize = 24;

impl Tag {
    fn key(&self) -> u64 {
        (u64::from(self.generation) << 56)
            ^ (u64::from(self.shard) << 48)
            ^ self.epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ self.index.rotate_left(23)
    }

    /// The payload: the tag, then `pad` bytes derived from it.
    pub fn payload(&self, pad: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(TAG_LEN + pad);
        v.extend_from_slice(&self.generation.to_le_bytes());
        v.extend_from_slice(&self.shard.to_le_bytes());
        v.extend_from_slice(&self.epoch.to_le_bytes());
        v.extend_from_slice(&self.index.to_le_bytes());
        v.extend_from_slice(&fill(self.key(), pad));
        v
    }

    /// Decode a payload made by [`Tag::payload`], checking its padding.
    pub fn parse(p: &[u8]) -> Tag {
        assert!(
            p.len() >= TAG_LEN,
            "payload of {} bytes is too short",
            p.len()
        );
        let t = Tag {
            generation: u32::from_le_bytes(p[0..4].try_into().unwrap()),
            shard: u32::from_le_bytes(p[4..8].try_into().unwrap()),
            epoch: u64::from_le_bytes(p[8..16].try_into().unwrap()),
            index: u64::from_le_bytes(p[16..24].try_into().unwrap()),
        };
        assert_eq!(
            t.payload(p.len() - TAG_LEN),
            p,
            "payload of {t:?} is damaged"
        );
        t
    }
}

/// One record read back, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub shard: u32,
    pub seq: u64,
    pub epoch: u64,
    pub kind: RecordKind,
    pub payload: Vec<u8>,
}

impl Rec {
    /// Copy a borrowed record.
    pub fn of(r: &shardwal::Record<'_>) -> Rec {
        Rec {
            shard: r.lsn.shard.0,
            seq: r.lsn.seq.0,
            epoch: r.lsn.epoch.0,
            kind: r.kind,
            payload: r.payload.to_vec(),
        }
    }
}

/// Drain a shard reader.
pub async fn drain<S: Storage>(mut r: ShardReader<S>) -> shardwal::Result<Vec<Rec>> {
    let mut out = Vec::new();
    while let Some(rec) = r.next().await? {
        out.push(Rec::of(&rec));
    }
    Ok(out)
}

/// Every record a merged reader (e.g. `ShardContext::replay`) yields.
pub async fn drain_merged<S: Storage>(
    mut r: shardwal::MergedReader<S>,
) -> shardwal::Result<Vec<Rec>> {
    let mut out = Vec::new();
    while let Some(rec) = r.next().await? {
        out.push(Rec::of(&rec));
    }
    Ok(out)
}

/// Every record of `shard` from `from` on, read with blocking std files.
pub fn read_shard(dir: &Path, shard: u32, from: u64) -> Vec<Rec> {
    futures_lite::future::block_on(async {
        let r = ShardReader::open(StdStorage, dir, ShardId(shard), Seq(from))
            .await
            .unwrap_or_else(|e| panic!("open reader of shard {shard}: {e}"));
        drain(r)
            .await
            .unwrap_or_else(|e| panic!("read shard {shard}: {e}"))
    })
}

/// Number of segment files in a shard's directory.
pub fn segment_count(dir: &Path, shard: u32) -> usize {
    std::fs::read_dir(shardwal::segment::shard_dir(dir, ShardId(shard)))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    shardwal::segment::parse_segment_name(&e.file_name().to_string_lossy())
                        .is_some()
                })
                .count()
        })
        .unwrap_or(0)
}

/// The durable contents of a simulated disk, as plain bytes (`Send`), so it
/// can be carried from one executor to another: every file's path and bytes.
pub type Image = Vec<(PathBuf, Vec<u8>)>;

/// The image of a simulated disk whose live and durable states agree (one
/// returned by `SimStorage::crash`).
pub fn image_of(sim: &SimStorage) -> Image {
    sim.files()
        .into_iter()
        .map(|p| {
            let b = sim.read_file(&p).expect("listed file exists");
            (p, b)
        })
        .collect()
}

/// A simulated disk holding exactly `image`, every file and name durable.
/// Its operations complete at once, so this can run outside an executor.
pub fn sim_from_image(image: &Image) -> SimStorage {
    let sim = SimStorage::new();
    futures_lite::future::block_on(async {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (path, bytes) in image {
            let parent = path.parent().expect("file has a parent").to_path_buf();
            sim.create_dir_all(&parent).await.expect("sim mkdir");
            let f = sim.open(path, true).await.expect("sim create");
            if !bytes.is_empty() {
                let n = f
                    .write_at(Rc::new(AlignedBuf::from_slice(bytes)), 0)
                    .await
                    .expect("sim write");
                assert_eq!(n, bytes.len());
            }
            f.sync_data().await.expect("sim fdatasync");
            if !dirs.contains(&parent) {
                dirs.push(parent);
            }
        }
        for d in dirs {
            sim.sync_dir(&d).await.expect("sim dir fsync");
        }
    });
    sim
}

/// The image of a fresh simulated disk that holds only the `LOG_ID` file of
/// the log at `dir` (so that readers on the simulated disk find the same
/// log id as the runtime, which reads it from the real directory).
pub fn log_id_image(dir: &Path, log_id: [u8; 16]) -> Image {
    let mut block = vec![0u8; shardwal::format::BLOCK];
    let enc = shardwal::format::log_id::encode(log_id);
    block[..enc.len()].copy_from_slice(&enc);
    vec![(dir.join(shardwal::log_dir::LOG_ID_FILE), block)]
}

/// An error for engine code that found something wrong (fails the shard,
/// so `shutdown` returns it and the test fails).
pub fn engine_err(msg: String) -> shardwal::Error {
    shardwal::Error::Config(format!("test engine: {msg}"))
}
