//! The decoders survive arbitrary bytes: every one of them answers any input
//! with a value or an error, never a panic (issue 14 §5, "Fuzzing"; the
//! stable-toolchain half of the cargo-fuzz targets in `fuzz/`, run by CI).
//!
//! Each decoder gets, deterministically (seeded `SplitMix`):
//! - 20,000 pseudo-random buffers of random lengths (random bytes, mostly
//!   zeros, or the decoder's magic followed by random bytes), and, for the
//!   framed files (manifest, layout), random payloads inside correct
//!   framing, so that the rkyv validation behind the CRC is reached;
//! - a valid example built with the crate's own encoders, with every
//!   single-bit flip, every truncation, and 2,000 random multi-byte damages.
//!
//! Decoders: frames (`decode_at` walked like a scanner, `frame_need`), the
//! segment header, `LOG_ID`, the metadata-file framing, manifests,
//! `LAYOUT`, the commit-record and checkpoint-marker payloads, snapshot
//! files (`checkpoint::snapshot::read` over `SimStorage`), and whole
//! segments through the recovery classifier (`recovery::classify`), the
//! streaming scan (`recovery::shard::scan`, `decide`) and `ShardReader`.
//!
//! A panic fails the test with the decoder's name and the input in hex.
//! The `regression_*` tests are the crashes the fuzzers found (fuzz/README.md,
//! "Findings"); each is fixed in `src/` and kept here as a regression test.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use shardwal::checkpoint::ShardCheckpoint;
use shardwal::checkpoint::manifest::{self, MAX_MANIFEST};
use shardwal::checkpoint::payloads::{self, CheckpointMarker, SnapshotRef};
use shardwal::checkpoint::snapshot;
use shardwal::format::frame::{self, Decoded, FrameMeta};
use shardwal::format::seed::SegmentSeed;
use shardwal::format::segment_header::{RECORDS_START, SegmentHeader};
use shardwal::format::{BLOCK, FRAME_ALIGN, MAX_RECORD_HARD, log_id};
use shardwal::io::sim::SimImage;
use shardwal::layout::RetiredShard;
use shardwal::log_dir::LOG_ID_FILE;
use shardwal::meta_file::{self, Kind};
use shardwal::recovery::{self, Expect, ScanOptions, SegmentBytes, shard};
use shardwal::rng::SplitMix;
use shardwal::segment::{segment_name, shard_dir};
use shardwal::{
    CommitRecord, Epoch, Layout, Manifest, RecordKind, Seq, ShardId, ShardReader, SimStorage,
    SourceOffset,
};

/// Random buffers per decoder.
const RANDOM_CASES: usize = 20_000;
/// Random multi-byte damages of each valid example.
const DAMAGES: usize = 2_000;
/// Steps of a frame walk at most.
const MAX_STEPS: usize = 4096;

const LOG: [u8; 16] = [0x4c; 16];
const SHARD: ShardId = ShardId(0);

const MANIFEST_KIND: Kind = Kind {
    magic: b"SHRDMANI",
    version: 1,
    max_payload: MAX_MANIFEST,
    name: "manifest",
};

const LAYOUT_KIND: Kind = Kind {
    magic: b"SHRDLAYT",
    version: 1,
    max_payload: 1 << 20,
    name: "layout",
};

const SMALL_KIND: Kind = Kind {
    magic: b"TESTFILE",
    version: 3,
    max_payload: 64,
    name: "test",
};

// ---------------------------------------------------------------- harness

/// `b` in hex, trailing zeros summarized.
fn hex(b: &[u8]) -> String {
    let end = b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
    let mut s: String = b[..end].iter().map(|x| format!("{x:02x}")).collect();
    if end < b.len() {
        s += &format!(" then {} zero bytes", b.len() - end);
    }
    s
}

/// Run `f(input)`; fail, naming `what` and the input, if it panics.
fn survives(what: &str, input: &[u8], f: &dyn Fn(&[u8])) {
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
        panic!(
            "{what} panicked on this input of {} bytes: {}",
            input.len(),
            hex(input)
        );
    }
}

/// A random length: mostly short, sometimes up to `max`.
fn random_len(rng: &mut SplitMix, max: usize) -> usize {
    let cap = match rng.below(4) {
        0 => 16,
        1 => 128,
        2 => 1024,
        _ => max,
    };
    rng.below(cap.min(max) as u64 + 1) as usize
}

/// A pseudo-random buffer: random bytes, mostly zeros, or `prefix` (a
/// decoder's magic) followed by random bytes.
fn random_buffer(rng: &mut SplitMix, max: usize, prefix: &[u8]) -> Vec<u8> {
    let len = random_len(rng, max);
    let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    match rng.below(4) {
        0 => {
            for x in b.iter_mut() {
                if rng.below(8) != 0 {
                    *x = 0;
                }
            }
        }
        1 => {
            let n = prefix.len().min(b.len());
            b[..n].copy_from_slice(&prefix[..n]);
        }
        _ => {}
    }
    b
}

/// `RANDOM_CASES` random buffers through `f`.
fn random_cases(what: &str, seed: u64, max: usize, prefix: &[u8], f: &dyn Fn(&[u8])) {
    let mut rng = SplitMix(seed);
    for _ in 0..RANDOM_CASES {
        let b = random_buffer(&mut rng, max, prefix);
        survives(what, &b, f);
    }
}

/// Every single-bit flip and every truncation of `valid`, and `DAMAGES`
/// random damages of a few bytes each, through `f`. `valid` itself first.
fn mutations(what: &str, valid: &[u8], seed: u64, f: &dyn Fn(&[u8])) {
    survives(what, valid, f);
    let mut b = valid.to_vec();
    for bit in 0..valid.len() * 8 {
        b[bit / 8] ^= 1 << (bit % 8);
        survives(what, &b, f);
        b[bit / 8] ^= 1 << (bit % 8);
    }
    for cut in 0..valid.len() {
        survives(what, &valid[..cut], f);
    }
    let mut rng = SplitMix(seed);
    for _ in 0..DAMAGES {
        let mut b = valid.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len() as u64) as usize;
            b[at] = match rng.below(3) {
                0 => 0,
                1 => 0xff,
                _ => rng.next_u64() as u8,
            };
        }
        if rng.below(4) == 0 {
            b.truncate(rng.below(b.len() as u64 + 1) as usize);
        }
        survives(what, &b, f);
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::block_on(f)
}

// ------------------------------------------------------- valid examples

fn header(first_seq: u64, segment_size: u64) -> SegmentHeader {
    SegmentHeader {
        log_id: LOG,
        shard: SHARD,
        index: 0,
        first_seq: Seq(first_seq),
        first_epoch: Epoch(1),
        nonce: 0x0dd_ba11,
        segment_size,
        zeroed: true,
        // The segments built here hold only their frames, not a whole
        // prepared file: not `SIZED`, or recovery refuses them as cut.
        sized: false,
    }
}

fn commit() -> CommitRecord {
    CommitRecord {
        epoch: 1,
        offsets: vec![
            SourceOffset {
                source: "feed-0".into(),
                offset: 42,
            },
            SourceOffset {
                source: "feed-1".into(),
                offset: u64::MAX,
            },
        ],
        watermark: 1234,
    }
}

fn marker() -> CheckpointMarker {
    CheckpointMarker {
        checkpoint: 1,
        epoch: 1,
        snapshot: SnapshotRef {
            file: snapshot::snapshot_name(1),
            len: 10,
            crc: 0xabcd,
        },
    }
}

fn push_frame(out: &mut Vec<u8>, seed: SegmentSeed, meta: FrameMeta, payload: &[u8]) {
    let at = out.len();
    out.resize(at + frame::frame_len(payload.len()), 0);
    frame::encode_into(&mut out[at..], seed, &meta, payload);
}

fn meta(seq: u64, epoch: u64, kind: RecordKind) -> FrameMeta {
    FrameMeta {
        seq: Seq(seq),
        epoch: Epoch(epoch),
        durable_next: Seq(seq),
        kind,
    }
}

/// Five frames of every kind, from seq `first`, under `seed`.
fn frames(seed: SegmentSeed, first: u64) -> Vec<u8> {
    let mut b = Vec::new();
    let commit = payloads::encode(&commit()).expect("encode commit");
    let marker = payloads::encode(&marker()).expect("encode marker");
    push_frame(&mut b, seed, meta(first, 1, RecordKind::Data), b"hello");
    push_frame(
        &mut b,
        seed,
        meta(first + 1, 1, RecordKind::Commit),
        &commit,
    );
    push_frame(&mut b, seed, meta(first + 2, 1, RecordKind::Barrier), &[]);
    push_frame(
        &mut b,
        seed,
        meta(first + 3, 2, RecordKind::Checkpoint),
        &marker,
    );
    push_frame(&mut b, seed, meta(first + 4, 2, RecordKind::Close), &[]);
    b
}

/// A segment file: a header block, then `frames` (the rest of the
/// segment not yet written).
fn segment(h: &SegmentHeader, frames: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; RECORDS_START];
    h.encode_into(&mut b);
    b.extend_from_slice(frames);
    b
}

fn a_manifest() -> Manifest {
    Manifest {
        log_id: LOG,
        checkpoint: 1,
        epoch: 1,
        shards: vec![ShardCheckpoint {
            shard: 0,
            replay_from: 3,
            marker_seq: 3,
            snapshot: marker().snapshot,
            commit: Some(commit()),
        }],
    }
}

fn a_layout() -> Layout {
    Layout {
        log_id: LOG,
        joined: vec![0, 3],
        retired: vec![RetiredShard { shard: 4, epoch: 2 }],
    }
}

/// A snapshot file of `body` (the layout in `checkpoint::snapshot`).
fn snapshot_file(shard: u32, checkpoint: u64, body: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    b[..8].copy_from_slice(b"SHRDSNAP");
    b[8..12].copy_from_slice(&1u32.to_le_bytes());
    b[12..16].copy_from_slice(&shard.to_le_bytes());
    b[16..24].copy_from_slice(&checkpoint.to_le_bytes());
    b[24..32].copy_from_slice(&(body.len() as u64).to_le_bytes());
    b[32..36].copy_from_slice(&crc32c::crc32c(body).to_le_bytes());
    let hcrc = crc32c::crc32c(&b[..36]);
    b[36..40].copy_from_slice(&hcrc.to_le_bytes());
    b.extend_from_slice(body);
    b.resize(b.len().next_multiple_of(BLOCK), 0);
    b
}

// ------------------------------------------------------------ decoders

/// Walk frames from offset 0 like a scanner (a frame advances by its
/// length; anything else resynchronizes at the next 8-byte boundary), for
/// several payload bounds.
fn walk_frames(b: &[u8], seed: SegmentSeed) {
    for max in [0, 64, 4096, MAX_RECORD_HARD] {
        let mut pos = 0;
        for _ in 0..MAX_STEPS {
            let need = frame::frame_need(b.get(pos..).unwrap_or(&[]), max);
            assert!(need >= frame::FRAME_HEADER);
            match frame::decode_at(b, pos, seed, max) {
                Decoded::Frame(f) => {
                    assert_eq!(f.len, need);
                    pos += f.len;
                }
                Decoded::End | Decoded::Invalid(_) => {
                    pos = (pos / FRAME_ALIGN + 1) * FRAME_ALIGN;
                    if pos > b.len() {
                        break;
                    }
                }
            }
        }
    }
    let _ = frame::decode_at(b, usize::MAX, seed, MAX_RECORD_HARD);
}

fn decode_header(b: &[u8]) {
    if let Ok(h) = SegmentHeader::decode(b) {
        let _ = h.seed();
    }
}

fn decode_log_id(b: &[u8]) {
    let _ = log_id::decode(b);
    let _ = log_id::decode(&b[..b.len().min(log_id::LOG_ID_LEN)]);
}

fn decode_meta(b: &[u8]) {
    let _ = meta_file::decode(SMALL_KIND, b);
    let _ = meta_file::decode(MANIFEST_KIND, b);
    let _ = meta_file::decode(LAYOUT_KIND, b);
}

fn decode_manifest(b: &[u8]) {
    let _ = manifest::decode(b);
}

fn decode_layout(b: &[u8]) {
    if let Ok(l) = Layout::decode(b) {
        let _ = l.data_shards();
        let sealed = l.sealed(Epoch(0), |s| Epoch(u64::from(s.0)));
        let _ = l.reshard(l.active().max(1), sealed);
    }
}

fn decode_payloads(b: &[u8]) {
    let _ = payloads::decode::<CommitRecord>(b, "commit");
    let _ = payloads::decode::<CheckpointMarker>(b, "marker");
    let _ = payloads::decode::<SnapshotRef>(b, "snapshot ref");
}

/// `b` as snapshot file 1 of shard 0, read against a reference that names
/// it with its body's length and CRC (as a manifest would).
fn read_snapshot(b: &[u8]) {
    let dir = Path::new("/log/shard-0000");
    let name = snapshot::snapshot_name(1);
    let body = b.get(BLOCK..).unwrap_or(&[]);
    let sim = SimStorage::from_image(&SimImage::default().with_file(&dir.join(&name), b));
    for len in [body.len() as u64, 10, u64::MAX] {
        let expect = SnapshotRef {
            file: name.clone(),
            len,
            crc: crc32c::crc32c(body),
        };
        let _ = block_on(snapshot::read(&sim, dir, 0, 1, &expect));
    }
}

fn expect() -> Expect {
    Expect {
        log_id: LOG,
        shard: SHARD,
        max_payload: MAX_RECORD_HARD,
    }
}

/// `b` as the only segment of a shard, through the in-memory classifier.
fn classify_segment(b: &[u8]) {
    let seg = SegmentBytes {
        index: 0,
        path: segment_name(0).into(),
        bytes: b,
    };
    let _ = recovery::classify(&[seg], &expect());
}

/// `b` as segment 0 of shard 0 of a log on `SimStorage`: the streaming
/// scan (plain and with repair), the decision at the last barrier, and a
/// reader over every record.
fn scan_segment(b: &[u8]) {
    let log = Path::new("/log");
    let image = SimImage::default()
        .with_file(&log.join(LOG_ID_FILE), &log_id::encode(LOG))
        .with_file(&shard_dir(log, SHARD).join(segment_name(0)), b);
    let sim = SimStorage::from_image(&image);
    block_on(async {
        for repair in [false, true] {
            let opts = ScanOptions {
                from_seq: None,
                repair,
            };
            let dir = shard_dir(log, SHARD);
            if let Ok(sc) = shard::scan(&sim, &dir, expect(), opts, |_, _, _| true).await {
                let sealed = sc.summary.last_barrier(Epoch(0));
                let cut = sc.summary.cut_for(sealed);
                let _ = shard::decide(sc, cut, Some(Epoch(sealed.0.saturating_add(1))));
            }
        }
        if let Ok(mut r) = ShardReader::open(sim.clone(), log, SHARD, Seq(0)).await {
            for _ in 0..MAX_STEPS {
                if !matches!(r.next().await, Ok(Some(_))) {
                    break;
                }
            }
        }
    });
}

// --------------------------------------------------------------- tests

#[test]
fn frames_survive_arbitrary_bytes() {
    let seed = header(0, 1 << 20).seed();
    let walk = |b: &[u8]| walk_frames(b, seed);
    random_cases("frame walk", 1, 8192, &[], &walk);
    let valid = frames(seed, 0);
    assert!(matches!(
        frame::decode_at(&valid, 0, seed, 4096),
        Decoded::Frame(_)
    ));
    mutations("frame walk", &valid, 2, &walk);
}

#[test]
fn segment_headers_survive_arbitrary_bytes() {
    random_cases("segment header", 3, 2 * BLOCK, b"SHRDSEG1", &decode_header);
    let mut valid = vec![0u8; BLOCK];
    header(7, 1 << 20).encode_into(&mut valid);
    assert_eq!(SegmentHeader::decode(&valid), Ok(header(7, 1 << 20)));
    mutations("segment header", &valid, 4, &decode_header);
}

#[test]
fn log_ids_survive_arbitrary_bytes() {
    random_cases("LOG_ID", 5, 64, b"SHRDWLID", &decode_log_id);
    let valid = log_id::encode(LOG);
    assert_eq!(log_id::decode(&valid), Ok(LOG));
    mutations("LOG_ID", &valid, 6, &decode_log_id);
}

#[test]
fn metadata_files_survive_arbitrary_bytes() {
    random_cases("meta file", 7, 512, b"TESTFILE", &decode_meta);
    let valid = meta_file::encode(SMALL_KIND, b"a small payload");
    assert_eq!(
        meta_file::decode(SMALL_KIND, &valid),
        Ok(&b"a small payload"[..])
    );
    mutations("meta file", &valid, 8, &decode_meta);
}

#[test]
fn manifests_survive_arbitrary_bytes() {
    random_cases("manifest", 9, 4096, b"SHRDMANI", &decode_manifest);
    // Random payloads inside correct framing reach the archive validation.
    let framed = |b: &[u8]| decode_manifest(&meta_file::encode(MANIFEST_KIND, b));
    random_cases("framed manifest payload", 10, 4096, &[], &framed);
    let valid = manifest::encode(&a_manifest()).expect("encode manifest");
    assert_eq!(manifest::decode(&valid).ok(), Some(a_manifest()));
    mutations("manifest", &valid, 11, &decode_manifest);
    // The archive alone, damaged, behind framing that stays correct.
    let payload = payloads::encode(&a_manifest()).expect("encode manifest payload");
    mutations("framed manifest payload", &payload, 12, &framed);
}

#[test]
fn layouts_survive_arbitrary_bytes() {
    random_cases("layout", 13, 4096, b"SHRDLAYT", &decode_layout);
    let framed = |b: &[u8]| decode_layout(&meta_file::encode(LAYOUT_KIND, b));
    random_cases("framed layout payload", 14, 4096, &[], &framed);
    let valid = a_layout().encode().expect("encode layout");
    assert_eq!(Layout::decode(&valid), Ok(a_layout()));
    mutations("layout", &valid, 15, &decode_layout);
    let payload = payloads::encode(&a_layout()).expect("encode layout payload");
    mutations("framed layout payload", &payload, 16, &framed);
}

#[test]
fn payloads_survive_arbitrary_bytes() {
    random_cases("payloads", 17, 4096, &[], &decode_payloads);
    let c = payloads::encode(&commit()).expect("encode commit");
    assert_eq!(
        payloads::decode::<CommitRecord>(&c, "commit").ok(),
        Some(commit())
    );
    mutations("commit record", &c, 18, &decode_payloads);
    let m = payloads::encode(&marker()).expect("encode marker");
    assert_eq!(
        payloads::decode::<CheckpointMarker>(&m, "marker").ok(),
        Some(marker())
    );
    mutations("checkpoint marker", &m, 19, &decode_payloads);
}

#[test]
fn snapshots_survive_arbitrary_bytes() {
    random_cases("snapshot", 20, 2 * BLOCK, b"SHRDSNAP", &read_snapshot);
    let body = b"the state of shard 0 at checkpoint 1";
    let valid = snapshot_file(0, 1, body);
    let dir = Path::new("/log/shard-0000");
    let sim = SimStorage::from_image(
        &SimImage::default().with_file(&dir.join(snapshot::snapshot_name(1)), &valid),
    );
    let expect = SnapshotRef {
        file: snapshot::snapshot_name(1),
        len: body.len() as u64,
        crc: crc32c::crc32c(body),
    };
    assert_eq!(
        block_on(snapshot::read(&sim, dir, 0, 1, &expect)).ok(),
        Some(body.to_vec())
    );
    // The header and the body carry meaning; flips in the zero padding of
    // the header block would only repeat the header's cases.
    mutations("snapshot", &valid[..BLOCK + body.len()], 21, &read_snapshot);
}

#[test]
fn segments_survive_arbitrary_bytes_in_recovery() {
    let h = header(0, 2 * BLOCK as u64);
    let seed = h.seed();
    // Random records behind a valid header (their frames fail their CRCs
    // or are not frames), and random whole files.
    let behind_header = |b: &[u8]| classify_segment(&segment(&h, b));
    random_cases("classify", 22, BLOCK, &[], &behind_header);
    random_cases("classify", 23, 2 * BLOCK, b"SHRDSEG1", &classify_segment);
    let valid = segment(&h, &frames(seed, 0));
    let outcome = recovery::classify(
        &[SegmentBytes {
            index: 0,
            path: segment_name(0).into(),
            bytes: &valid,
        }],
        &expect(),
    )
    .expect("the valid segment classifies");
    assert_eq!(outcome.next_seq, Seq(5));
    mutations("classify", &valid, 24, &classify_segment);
    // The streaming scan and the reader: fewer cases, each reads a log.
    let mut rng = SplitMix(25);
    for _ in 0..RANDOM_CASES / 10 {
        let b = segment(&h, &random_buffer(&mut rng, BLOCK, &[]));
        survives("scan", &b, &scan_segment);
    }
    survives("scan", &valid, &scan_segment);
    for bit in (0..valid.len() * 8).step_by(7) {
        let mut b = valid.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        survives("scan", &b, &scan_segment);
    }
    for cut in (0..valid.len()).step_by(3) {
        survives("scan", &valid[..cut], &scan_segment);
    }
}

// ----------------------------------------------- regressions (fuzz/README.md)

/// Finding 5: the recovery scan panics ("epoch overflow", src/recovery/scan.rs,
/// `f.meta.epoch.next()` after a barrier) on a CRC-valid barrier frame of
/// epoch u64::MAX.
#[test]
fn regression_scan_barrier_at_epoch_u64_max() {
    let h = header(0, 2 * BLOCK as u64);
    let mut f = Vec::new();
    push_frame(
        &mut f,
        h.seed(),
        meta(0, u64::MAX, RecordKind::Barrier),
        &[],
    );
    let seg = segment(&h, &f);
    survives("classify", &seg, &classify_segment);
    survives("scan", &seg, &scan_segment);
}

/// Finding 5 (the same loop, seqs): the recovery scan panics ("sequence
/// number overflow", `e = e.next()`) on a CRC-valid frame of seq u64::MAX
/// in a segment whose header starts at seq u64::MAX.
#[test]
fn regression_scan_frame_at_seq_u64_max() {
    let h = header(u64::MAX, 2 * BLOCK as u64);
    let mut f = Vec::new();
    push_frame(&mut f, h.seed(), meta(u64::MAX, 1, RecordKind::Data), b"x");
    let seg = segment(&h, &f);
    survives("classify", &seg, &classify_segment);
    survives("scan", &seg, &scan_segment);
}

/// Finding 1: `recovery::plan::own_scope` (the CLI's scope) panics (index
/// out of bounds, src/recovery/plan.rs `per_core[..]`) on a `LAYOUT` that
/// `Layout::decode` accepts: no written shard, one retired shard.
#[test]
fn regression_own_scope_of_a_layout_without_written_shards() {
    let l = Layout {
        log_id: LOG,
        joined: vec![],
        retired: vec![RetiredShard { shard: 0, epoch: 0 }],
    };
    let file = l.encode().expect("encode layout");
    assert_eq!(Layout::decode(&file), Ok(l));
    survives("own_scope", &file, &|b| {
        let loaded = Layout::decode(b).ok();
        let _ = recovery::plan::own_scope(LOG, loaded, &[]);
    });
}

/// Finding 2: `Manifests::from_found` (every start, and the CLI) panics
/// ("checkpoint id overflow", `id.next()`) when `checkpoints/` holds a file
/// named `manifest-18446744073709551615.ckpt`, whatever its bytes.
#[test]
fn regression_manifest_file_named_u64_max() {
    let log = Path::new("/log");
    let name = manifest::manifest_name(u64::MAX);
    assert_eq!(name, "manifest-18446744073709551615.ckpt");
    survives("manifests", b"", &|b| {
        let path = log.join(manifest::CHECKPOINT_DIR).join(&name);
        let sim = SimStorage::from_image(&SimImage::default().with_file(&path, b));
        let ids = block_on(manifest::list(&sim, log)).expect("list");
        let found: Vec<_> = ids
            .into_iter()
            .map(|id| (id, block_on(manifest::read(&sim, log, id))))
            .collect();
        let _ = recovery::plan::Manifests::from_found(LOG, found);
    });
}

/// Run `body` on a fresh glommio executor on this thread.
fn on_executor<T>(body: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("make a glommio executor")
        .run(body)
}

fn small_config() -> shardwal::ShardConfig {
    shardwal::ShardConfig {
        segment_size: 64 << 10,
        buffer_size: 8 << 10,
        write_behind: 2,
        max_record_size: 4096,
        fsync: shardwal::FsyncPolicy::Never,
        prepare: shardwal::SegmentPrepare::Create,
        repair: false,
    }
}

/// A log whose shard 0 has one segment file `index` holding `seg`.
fn log_with_segment(index: u64, seg: &[u8]) -> SimImage {
    let log = Path::new("/log");
    SimImage::default()
        .with_file(&log.join(LOG_ID_FILE), &log_id::encode(LOG))
        .with_file(&shard_dir(log, SHARD).join(segment_name(index)), seg)
}

/// Finding 3: a log whose segment header starts at seq u64::MAX - 1 opens
/// (recovery accepts it), then `close` panics ("sequence number overflow",
/// src/writer/state.rs `seq.next()`) appending its close record, after
/// one `append`; with a header at u64::MAX the `append` itself panics.
/// `append` and `close` return `Result`: they should refuse with an error.
#[test]
fn regression_append_at_seq_u64_max() {
    let mut h = header(u64::MAX - 1, 64 << 10);
    h.zeroed = false;
    let seg = segment(&h, &[]);
    survives("open, append, close", &seg, &|b| {
        let image = log_with_segment(0, b);
        on_executor(async {
            let sim = SimStorage::from_image(&image);
            let log = shardwal::ShardLog::open(sim, Path::new("/log"), SHARD, small_config())
                .await
                .expect("recovery accepts the log");
            let _ = log.append(b"one").await;
            let _ = log.close().await;
        });
    });
}

/// Finding 4: a shard whose only segment is number `u64::MAX - 1` (header
/// to match) is given records of 3000 bytes, each synced, until the writer
/// runs out of segment indexes (u64::MAX - 1, then u64::MAX, then none):
/// the append that cannot roll fails with an error (it used to wrap to
/// segment 0, which recovery then took for the start of the log, losing
/// the records of the two segments before it), `close` reports the
/// failure, and a reopen reads back every record whose sync returned.
#[test]
fn regression_segment_index_near_u64_max() {
    let mut h = header(0, 64 << 10);
    h.index = u64::MAX - 1;
    h.zeroed = false;
    let seg = segment(&h, &[]);
    survives("open, write through rolls, reopen", &seg, &|b| {
        let image = log_with_segment(u64::MAX - 1, b);
        on_executor(async {
            let sim = SimStorage::from_image(&image);
            let dir = Path::new("/log");
            let log = shardwal::ShardLog::open(sim.clone(), dir, SHARD, small_config())
                .await
                .expect("recovery accepts the log");
            let mut durable = 0u64;
            let mut failed = None;
            for _ in 0..200 {
                let r = async {
                    log.append(&[7u8; 3000]).await?;
                    log.sync().await
                }
                .await;
                match r {
                    Ok(_) => durable += 1,
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            let failed = failed.expect("the writer runs out of segment indexes");
            assert!(
                failed.contains("segment indexes"),
                "the failure says why: {failed}"
            );
            assert!(durable > 0, "records fit before the limit");
            assert!(log.close().await.is_err(), "close reports the failure");
            let again = shardwal::ShardLog::open(sim.clone(), dir, SHARD, small_config())
                .await
                .expect("the log reopens");
            again.close().await.expect("close");
            let mut r = ShardReader::open(sim, dir, SHARD, Seq(0))
                .await
                .expect("reader");
            let mut data = 0;
            while let Some(rec) = r.next().await.expect("read") {
                if rec.kind == RecordKind::Data {
                    data += 1;
                }
            }
            assert!(
                data >= durable,
                "records lost: {durable} were durable, {data} read back"
            );
        });
    });
}
