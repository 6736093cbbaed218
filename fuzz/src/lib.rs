//! Helpers shared by the fuzz targets in `fuzz_targets/`: a reader that
//! turns fuzzer bytes into values (never failing: past the end it reads
//! zeros), builders of valid encoded structures whose fields come from the
//! fuzzer (so the targets get past the CRCs), and a glommio executor made
//! once per process.

use std::future::Future;

use shardwal::checkpoint::payloads::{self, CheckpointMarker, SnapshotRef};
use shardwal::format::frame::{self, FrameMeta};
use shardwal::format::seed::SegmentSeed;
use shardwal::format::segment_header::SegmentHeader;
use shardwal::{CommitRecord, Epoch, RecordKind, Seq, ShardId, SourceOffset};

/// Fuzzer bytes, read front to back. Reads past the end give zeros.
pub struct Src<'a> {
    b: &'a [u8],
    tame: bool,
}

impl<'a> Src<'a> {
    /// A reader over `b`.
    /// Tame (see [`Src::seq_like`]) unless [`guard_known`] is off.
    pub fn new(b: &'a [u8]) -> Src<'a> {
        Src {
            b,
            tame: guard_known(),
        }
    }

    /// True once every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (h, t) = self.b.split_at(n.min(self.b.len()));
        self.b = t;
        h
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }

    /// One byte.
    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    fn le<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let b = self.bytes(N);
        a[..b.len()].copy_from_slice(b);
        a
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.le())
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.le())
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.le())
    }

    /// A value in `0..n` (`n` at most 256).
    pub fn below(&mut self, n: u32) -> u32 {
        u32::from(self.u8()) % n.max(1)
    }

    /// A bool.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A u64 that is usually small or at an edge (0, 1, MAX-1, MAX), and
    /// sometimes any value: where overflows and off-by-ones live.
    pub fn edgy_u64(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => u64::MAX,
            2 => u64::MAX - 1,
            3 => u64::from(self.u8()),
            4 => u64::from(self.u16()),
            5 => u64::MAX - u64::from(self.u8()),
            _ => self.u64(),
        }
    }
}

impl Src<'_> {
    /// A value for a sequence number or an epoch: [`Src::edgy_u64`], kept
    /// below `u64::MAX / 2` by a tame reader, to explore past the known
    /// overflow panics on seqs and epochs near `u64::MAX` (fuzz/README.md,
    /// findings 3 and 5), which an untamed one finds within seconds.
    pub fn seq_like(&mut self) -> u64 {
        let v = self.edgy_u64();
        if self.tame { v.min(u64::MAX / 2) } else { v }
    }
}

/// Whether the targets steer clear of the crashes found earlier
/// (fuzz/README.md, "Findings"), so that a run explores past them. All five
/// are fixed, so the guards are off unless the environment sets
/// `SHARDWAL_FUZZ_GUARD=1` (useful only when fuzzing an older commit).
pub fn guard_known() -> bool {
    static GUARD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GUARD.get_or_init(|| std::env::var_os("SHARDWAL_FUZZ_GUARD").is_some_and(|v| v == "1"))
}

/// Flip, set or clear a few bytes of `b` at positions chosen by `src`.
pub fn mutate(src: &mut Src<'_>, b: &mut [u8]) {
    let n = src.below(6);
    for _ in 0..n {
        if b.is_empty() {
            return;
        }
        let at = usize::from(src.u16()) % b.len();
        match src.below(3) {
            0 => b[at] ^= 1 << src.below(8),
            1 => b[at] = 0,
            _ => b[at] = src.u8(),
        }
    }
}

/// A record kind from one byte.
pub fn kind(src: &mut Src<'_>) -> RecordKind {
    match src.below(5) {
        0 => RecordKind::Data,
        1 => RecordKind::Barrier,
        2 => RecordKind::Checkpoint,
        3 => RecordKind::Commit,
        _ => RecordKind::Close,
    }
}

/// A short string.
pub fn string(src: &mut Src<'_>) -> String {
    let n = usize::from(src.u8() % 24);
    String::from_utf8_lossy(src.bytes(n)).into_owned()
}

/// A commit record with fuzzer fields.
pub fn commit_record(src: &mut Src<'_>) -> CommitRecord {
    let n = src.below(4);
    CommitRecord {
        epoch: src.edgy_u64(),
        offsets: (0..n)
            .map(|_| SourceOffset {
                source: string(src),
                offset: src.edgy_u64(),
            })
            .collect(),
        watermark: src.edgy_u64(),
    }
}

/// A snapshot reference with fuzzer fields.
pub fn snapshot_ref(src: &mut Src<'_>) -> SnapshotRef {
    SnapshotRef {
        file: string(src),
        len: src.edgy_u64(),
        crc: src.u32(),
    }
}

/// A checkpoint marker with fuzzer fields.
pub fn checkpoint_marker(src: &mut Src<'_>) -> CheckpointMarker {
    CheckpointMarker {
        checkpoint: src.edgy_u64(),
        epoch: src.edgy_u64(),
        snapshot: snapshot_ref(src),
    }
}

/// A payload for a record of `kind`: a valid encoded commit record or
/// checkpoint marker most of the time for those kinds, otherwise raw bytes.
pub fn payload_for(src: &mut Src<'_>, kind: RecordKind, max: usize) -> Vec<u8> {
    let encoded = match (kind, src.below(4)) {
        (RecordKind::Commit, 0..=2) => payloads::encode(&commit_record(src)).ok(),
        (RecordKind::Checkpoint, 0..=2) => payloads::encode(&checkpoint_marker(src)).ok(),
        _ => None,
    };
    let mut p = encoded.unwrap_or_else(|| {
        let n = usize::from(src.u8());
        src.bytes(n).to_vec()
    });
    p.truncate(max);
    p
}

/// A segment header with fuzzer fields around a given identity.
pub fn segment_header(
    src: &mut Src<'_>,
    log_id: [u8; 16],
    shard: ShardId,
    index: u64,
    first_seq: Seq,
) -> SegmentHeader {
    let mut h = SegmentHeader {
        log_id,
        shard,
        index,
        first_seq,
        first_epoch: Epoch(src.edgy_u64() % 4),
        nonce: u64::from(src.u8()),
        segment_size: [8 << 10, 16 << 10, 64 << 10, 1 << 20][src.below(4) as usize],
        zeroed: src.bool(),
        sized: src.bool(),
    };
    // Sometimes, any field may be off.
    let off = src.u8();
    if off & 0x01 != 0 {
        h.log_id[0] ^= 1;
    }
    if off & 0x02 != 0 {
        h.shard = ShardId(src.u32());
    }
    if off & 0x04 != 0 {
        h.index = src.edgy_u64();
    }
    if off & 0x08 != 0 {
        h.first_seq = Seq(src.seq_like());
    }
    if off & 0x10 != 0 {
        h.first_epoch = Epoch(src.seq_like());
    }
    if off & 0x20 != 0 {
        // Any size: the decoder's bounds are under test too.
        h.segment_size = src.edgy_u64();
    }
    h
}

/// Append one frame (valid under `seed`, fields from the fuzzer) to `out`,
/// or raw bytes. `next` is the sequence number a scanner expects; it is
/// advanced when the frame carries it.
pub fn push_frame(src: &mut Src<'_>, out: &mut Vec<u8>, seed: SegmentSeed, next: &mut u64) {
    if src.below(16) == 0 {
        // Raw bytes where a frame should be.
        let n = usize::from(src.u8());
        out.extend_from_slice(src.bytes(n));
        return;
    }
    let kind = kind(src);
    let seq = match src.below(8) {
        0 => src.seq_like(),
        _ => *next,
    };
    let epoch = match src.below(4) {
        0 => src.seq_like(),
        _ => u64::from(src.u8() % 8),
    };
    let durable_next = match src.below(4) {
        0 => src.edgy_u64(),
        1 => seq.saturating_add(1),
        _ => seq,
    };
    let payload = payload_for(src, kind, 4096);
    let meta = FrameMeta {
        seq: Seq(seq),
        epoch: Epoch(epoch),
        durable_next: Seq(durable_next),
        kind,
    };
    let at = out.len();
    out.resize(at + frame::frame_len(payload.len()), 0);
    frame::encode_into(&mut out[at..], seed, &meta, &payload);
    if seq == *next {
        *next = next.wrapping_add(1);
    }
}

thread_local! {
    static EXECUTOR: glommio::LocalExecutor =
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .ring_depth(32)
            .make()
            .expect("make the glommio executor");
}

/// Run `f` to completion on this thread's glommio executor (made once).
pub fn on_executor<T>(f: impl Future<Output = T>) -> T {
    EXECUTOR.with(|ex| ex.run(f))
}

/// Run a future that never waits on real I/O (everything over `SimStorage`).
pub fn block_on<T>(f: impl Future<Output = T>) -> T {
    futures_lite::future::block_on(f)
}
