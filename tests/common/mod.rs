//! Helpers shared by the integration tests: running a test body on a glommio
//! executor, deterministic payloads derived from a sequence number, reading a
//! shard's log back, and locating record frames inside segment files.
//!
//! Each test file compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use shardwal::format::MAX_RECORD_HARD;
use shardwal::format::frame::{Decoded, FRAME_HEADER, decode_at};
use shardwal::format::segment_header::{RECORDS_START, SegmentHeader};
use shardwal::rng::SplitMix;
use shardwal::segment::{parse_segment_name, shard_dir};
use shardwal::{RecordKind, Seq, ShardId, ShardReader, Storage};

/// Raise the limit on open files, once per test process: to the kernel's
/// per-process maximum (`fs.nr_open`) where the process may raise its hard
/// limit (`CAP_SYS_RESOURCE`; this sandbox's root lacks it), else the soft
/// limit to the hard one. Every glommio executor leaks an eventfd when it
/// ends (glommio 0.9, its issue 448), and shard tasks still running when
/// their executor ends keep their segment files open, so a test that starts
/// thousands of executors needs more than the usual soft limit of 1024.
fn raise_open_files_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let nr_open: libc::rlim_t = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write `lim` and
        // `all`, valid rlimits owned by this frame.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return;
            }
            let all = libc::rlimit {
                rlim_cur: nr_open,
                rlim_max: nr_open,
            };
            if nr_open > lim.rlim_max && libc::setrlimit(libc::RLIMIT_NOFILE, &all) == 0 {
                return;
            }
            if lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    });
}

/// Run `body` on a fresh glommio executor (unbound, 2 MiB of I/O memory) and
/// return its result. Panics inside the body fail the test.
pub fn run<G, F, T>(name: &str, body: G) -> T
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    raise_open_files_limit();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(2 << 20)
        .name(name)
        .spawn(body)
        .expect("spawn glommio executor")
        .join()
        .unwrap_or_else(|e| panic!("executor {name} failed: {e}"))
}

/// Await `fut`, failing the test if it takes longer than `limit`: a call
/// that hangs is a bug, and the test should say which call it was.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    let timed = async {
        glommio::timer::sleep(limit).await;
        None
    };
    match futures_lite::future::or(async { Some(fut.await) }, timed).await {
        Some(v) => v,
        None => panic!("{what} did not complete within {limit:?}"),
    }
}

/// The 64-bit hash used to derive payloads.
pub fn mix(a: u64, b: u64) -> u64 {
    SplitMix(a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b).next_u64()
}

/// Length of the payload of record `seq` in the log tagged `tag`: in `min_len..=max_len`.
pub fn payload_len_between(tag: u64, seq: u64, min_len: usize, max_len: usize) -> usize {
    min_len + (mix(tag, seq) % (max_len - min_len + 1) as u64) as usize
}

/// Length of the payload of record `seq` in the log tagged `tag`: in `0..=max_len`.
pub fn payload_len(tag: u64, seq: u64, max_len: usize) -> usize {
    payload_len_between(tag, seq, 0, max_len)
}

/// Write the payload of record `seq` of the log tagged `tag` into `out`
/// (whose length is chosen by the caller, usually [`payload_len`]).
pub fn fill_payload(tag: u64, seq: u64, out: &mut [u8]) {
    let mut rng = SplitMix(mix(tag ^ 0x5eed, seq));
    for chunk in out.chunks_mut(8) {
        let w = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// The payload of record `seq` of the log tagged `tag`, `min_len..=max_len`
/// bytes long. Different tags give different bytes, so a record of one log
/// never passes for a record of another.
pub fn payload_between(tag: u64, seq: u64, min_len: usize, max_len: usize) -> Vec<u8> {
    let mut v = vec![0u8; payload_len_between(tag, seq, min_len, max_len)];
    fill_payload(tag, seq, &mut v);
    v
}

/// The payload of record `seq` of the log tagged `tag`, at most `max_len` bytes.
pub fn payload(tag: u64, seq: u64, max_len: usize) -> Vec<u8> {
    payload_between(tag, seq, 0, max_len)
}

/// One record read back, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub seq: u64,
    pub epoch: u64,
    pub kind: RecordKind,
    pub payload: Vec<u8>,
}

/// Every record of `shard` from `from` on, read with [`ShardReader`].
pub async fn read_all<S: Storage>(storage: S, log: &Path, shard: ShardId, from: u64) -> Vec<Owned> {
    let mut r = ShardReader::open(storage, log, shard, Seq(from))
        .await
        .expect("open reader");
    let mut out = Vec::new();
    while let Some(rec) = r.next().await.expect("read record") {
        assert_eq!(rec.lsn.shard, shard);
        assert_eq!(
            rec.payload.as_ptr() as usize % 8,
            0,
            "payloads are 8-byte aligned in memory"
        );
        out.push(Owned {
            seq: rec.lsn.seq.0,
            epoch: rec.lsn.epoch.0,
            kind: rec.kind,
            payload: rec.payload.to_vec(),
        });
    }
    out
}

/// Check that `recs` are dense from `first`, that every data record carries
/// `expected(seq)` and that every close record is empty.
pub fn check_records(recs: &[Owned], first: u64, expected: impl Fn(u64) -> Vec<u8>) {
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.seq, first + i as u64, "sequence numbers are dense");
        match r.kind {
            RecordKind::Data => assert_eq!(r.payload, expected(r.seq), "payload of seq {}", r.seq),
            RecordKind::Close => {
                assert!(r.payload.is_empty(), "close record {} has a payload", r.seq)
            }
            other => panic!("unexpected record kind {other:?} at seq {}", r.seq),
        }
    }
}

/// The segment files of `shard` in `log`, in log order.
pub fn segment_paths(log: &Path, shard: ShardId) -> Vec<PathBuf> {
    let dir = shard_dir(log, shard);
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter_map(|p| {
            let i = parse_segment_name(p.file_name()?.to_str()?)?;
            Some((i, p))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

/// The segment files of `shard` whose header is valid (leaving out
/// prepared segments that were never written), in log order.
pub fn data_segments(log: &Path, shard: ShardId) -> Vec<PathBuf> {
    segment_paths(log, shard)
        .into_iter()
        .filter(|p| {
            let b = std::fs::read(p).expect("read segment");
            SegmentHeader::decode(&b).is_ok()
        })
        .collect()
}

/// Where one valid frame sits in a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePos {
    /// Offset of the frame header.
    pub pos: usize,
    /// Header plus payload (the bytes that carry meaning).
    pub used: usize,
    /// On-disk length including padding.
    pub len: usize,
    pub seq: u64,
    pub kind: RecordKind,
}

/// The valid frames of a segment image, in order, up to the first position
/// that does not hold one.
pub fn frames_in(bytes: &[u8]) -> Vec<FramePos> {
    let h = SegmentHeader::decode(bytes).expect("segment header");
    let seed = h.seed();
    let mut out = Vec::new();
    let mut pos = RECORDS_START;
    while let Decoded::Frame(f) = decode_at(bytes, pos, seed, MAX_RECORD_HARD) {
        out.push(FramePos {
            pos,
            used: FRAME_HEADER + f.payload.len(),
            len: f.len,
            seq: f.meta.seq.0,
            kind: f.meta.kind,
        });
        pos += f.len;
    }
    out
}

/// Whether the segment image `bytes` was zeroed before use (header flag
/// bit 0, docs/FORMAT.md §2).
pub fn segment_zeroed(bytes: &[u8]) -> bool {
    SegmentHeader::decode(bytes).expect("segment header").zeroed
}

/// The test's own statement of the torn-or-damaged rule (FORMAT.md §5):
/// the meaningful bytes `pos..pos + used` of a frame were written whole
/// when every 512-byte sector they touch holds a non-zero byte of them.
pub fn landed_whole(bytes: &[u8], pos: usize, used: usize) -> bool {
    let end = pos + used;
    end <= bytes.len()
        && (pos / 512..=(end - 1) / 512).all(|s| {
            let (a, b) = ((s * 512).max(pos), ((s + 1) * 512).min(end));
            bytes[a..b].iter().any(|&x| x != 0)
        })
}

/// Copy the directory tree `from` to `to` (which must not exist).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy dir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("dir entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).expect("copy file");
        }
    }
}

/// A seed for randomised tests: `SHARDWAL_TEST_SEED` if set, else the clock.
/// Printed so a failure can be replayed.
pub fn test_seed(what: &str) -> u64 {
    let seed = std::env::var("SHARDWAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("{what}: SHARDWAL_TEST_SEED={seed}");
    seed
}
pub mod flaky_store;
#[cfg(feature = "s3")]
pub mod s3_server;
