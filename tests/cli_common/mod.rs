//! Helpers shared by the `cli_*` tests: running the `shardwal` binary,
//! generating a log with the library (a 2-shard runtime with epochs and
//! checkpoints), locating record frames in segment files, and fingerprinting
//! a directory to prove a command changed nothing.
//!
//! Each test file compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use shardwal::format::MAX_RECORD_HARD;
use shardwal::format::frame::{Decoded, FRAME_HEADER, decode_at};
use shardwal::format::segment_header::{RECORDS_START, SegmentHeader};
use shardwal::segment::{parse_segment_name, shard_dir};
use shardwal::{
    ControlEvent, CoordinatorConfig, FsyncPolicy, RecordKind, Runtime, RuntimeConfig, ShardConfig,
    ShardId, SourceOffset,
};

/// Data records each shard appends per epoch.
pub const PER_EPOCH: u64 = 40;
/// Epochs the generator seals (the shutdown seals one more).
pub const EPOCHS: u64 = 60;
/// Epochs at which the generator takes a checkpoint.
pub const CHECKPOINTS: [u64; 3] = [10, 20, 30];
/// Segment size of generated logs: small, so a log has several segments.
pub const SEGMENT: u64 = 32 << 10;

/// The result of running the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Panic with the whole output unless the exit status is `code`.
    pub fn expect(self, code: i32, what: &str) -> Run {
        assert_eq!(
            self.code, code,
            "{what}: exit status {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// Run `shardwal ARGS`.
pub fn shardwal(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_shardwal"))
        .args(args)
        .output()
        .expect("run the shardwal binary");
    Run::from(out)
}

/// Run `shardwal CMD DIR ARGS`.
pub fn on(cmd: &str, dir: &Path, args: &[&str]) -> Run {
    let d = dir.to_str().expect("utf-8 path");
    let mut v = vec![cmd, d];
    v.extend_from_slice(args);
    shardwal(&v)
}

/// The payload of data record `k` of `epoch` on `shard`: text for even
/// `k`, binary (not printable) for odd `k`.
pub fn payload(shard: u32, epoch: u64, k: u64) -> Vec<u8> {
    if k.is_multiple_of(2) {
        format!("shard {shard} epoch {epoch} record {k}").into_bytes()
    } else {
        let mut v = vec![0u8, 0xff, 0x01, 0x80];
        v.extend((0..44u64).map(|i| (i * 7 + k + epoch) as u8));
        v
    }
}

/// Write a log in `dir` with a 2-shard runtime: each shard appends
/// [`PER_EPOCH`] data records, then a commit record, at every barrier;
/// [`EPOCHS`] epochs are sealed, with checkpoints at [`CHECKPOINTS`]; the
/// shutdown seals one more. Returns the last sealed epoch.
pub fn generate(dir: &Path) -> u64 {
    generate_with(dir, shardwal::SegmentPrepare::ZeroFill)
}

/// [`generate`], with the segments prepared by `prepare`:
/// `SegmentPrepare::Create` gives segments that grow as they are written,
/// which a crash may leave short (a truncated `SIZED` segment is
/// corruption, not a torn tail).
pub fn generate_with(dir: &Path, prepare: shardwal::SegmentPrepare) -> u64 {
    let cfg = RuntimeConfig {
        shards: Some(2),
        pin: false,
        shard: ShardConfig {
            segment_size: SEGMENT,
            buffer_size: 16 << 10,
            write_behind: 4,
            max_record_size: 4 << 10,
            fsync: FsyncPolicy::PerEpoch,
            prepare,
            ..ShardConfig::default()
        },
        coordinator: CoordinatorConfig {
            keep_checkpoints: 2,
            ..CoordinatorConfig::default()
        },
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(dir, cfg, |ctx| async move {
        let shard = ctx.shard().0;
        loop {
            while let Some(ev) = ctx.poll_control() {
                let ControlEvent::Barrier(req) = ev else {
                    return Ok(());
                };
                let epoch = ctx.log().epoch().0;
                for k in 0..PER_EPOCH {
                    ctx.log().append(&payload(shard, epoch, k)).await?;
                }
                let offsets = vec![SourceOffset {
                    source: format!("input-{shard}"),
                    offset: epoch * PER_EPOCH,
                }];
                ctx.commit(offsets, epoch).await?;
                let snap = format!("state of shard {shard} after epoch {}", req.epoch.0);
                ctx.complete_barrier(req, Some(snap.as_bytes())).await?;
            }
            glommio::timer::sleep(Duration::from_micros(200)).await;
        }
    })
    .expect("start the runtime");
    let c = rt.coordinator();
    for e in 1..=EPOCHS {
        if CHECKPOINTS.contains(&e) {
            c.checkpoint().and_then(|t| t.wait()).expect("checkpoint");
        } else {
            c.advance_epoch().and_then(|t| t.wait()).expect("epoch");
        }
    }
    rt.shutdown().expect("shutdown");
    EPOCHS + 1
}

/// A record frame found in a segment file.
#[derive(Debug, Clone)]
pub struct FrameAt {
    pub path: PathBuf,
    pub offset: u64,
    pub seq: u64,
    pub epoch: u64,
    pub kind: RecordKind,
    pub payload_len: usize,
}

/// The segment files of `shard`, in index order.
pub fn segments(dir: &Path, shard: u32) -> Vec<PathBuf> {
    let sdir = shard_dir(dir, ShardId(shard));
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(&sdir)
        .expect("list shard dir")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            parse_segment_name(&name).map(|i| (i, e.path()))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

/// Every valid frame of `shard`, segment by segment, until the first
/// position that is not a valid frame in each segment.
pub fn frames(dir: &Path, shard: u32) -> Vec<FrameAt> {
    let mut out = Vec::new();
    for path in segments(dir, shard) {
        let bytes = std::fs::read(&path).expect("read segment");
        let Ok(h) = SegmentHeader::decode(&bytes) else {
            continue;
        };
        let buf = &bytes[..bytes.len().min(h.segment_size as usize)];
        let mut pos = RECORDS_START;
        while let Decoded::Frame(f) = decode_at(buf, pos, h.seed(), MAX_RECORD_HARD) {
            out.push(FrameAt {
                path: path.clone(),
                offset: pos as u64,
                seq: f.meta.seq.0,
                epoch: f.meta.epoch.0,
                kind: f.meta.kind,
                payload_len: f.payload.len(),
            });
            pos += f.len;
        }
    }
    out
}

/// Offset of the payload of a frame at `offset`.
pub fn payload_offset(f: &FrameAt) -> u64 {
    f.offset + FRAME_HEADER as u64
}

/// Every file under `dir` with its length, mtime and contents' hash: equal
/// fingerprints mean nothing was created, removed or written.
pub fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (u64, i64, i64, u64)> {
    fn walk(p: &Path, out: &mut BTreeMap<PathBuf, (u64, i64, i64, u64)>) {
        for e in std::fs::read_dir(p).expect("list").flatten() {
            let md = e.metadata().expect("stat");
            if md.is_dir() {
                out.insert(e.path(), (0, md.mtime(), md.mtime_nsec(), 0));
                walk(&e.path(), out);
            } else {
                let bytes = std::fs::read(e.path()).expect("read");
                let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
                });
                out.insert(e.path(), (md.len(), md.mtime(), md.mtime_nsec(), h));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// Lines of `text` that contain every one of `needles`.
pub fn lines_with<'a>(text: &'a str, needles: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// The value of `"key":<number>` in a JSON text (the first occurrence).
pub fn json_u64(text: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let at = text.find(&pat)? + pat.len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// The per-shard objects of a JSON report (`{"shard":N,...`), in order.
pub fn shard_objects(text: &str) -> Vec<&str> {
    text.split("{\"shard\":").skip(1).collect()
}

/// The value of `"key":<number>` in the per-shard object of `shard` (the
/// text starts just after `{"shard":`).
pub fn shard_u64(text: &str, shard: u32, key: &str) -> Option<u64> {
    shard_objects(text)
        .into_iter()
        .find(|o| o.starts_with(&format!("{shard},")))
        .and_then(|o| json_u64(o, key))
}
