//! Classify the valid extent of a shard's log from the bytes of its segments.
//!
//! The scan walks frames from the first segment, checking each frame's CRC
//! (seeded per segment) and that sequence numbers are dense. It stops at the
//! first position `(segment i, offset p)` where the expected frame (seq `E`)
//! is not found. What that stop means is decided by this table:
//!
//! | stop                                      | later evidence                          | verdict            |
//! |-------------------------------------------|-----------------------------------------|--------------------|
//! | zeros to the end of the segment, no later segment | —                               | clean end          |
//! | zeros, then non-zero bytes in the segment | (decided like a bad frame, below)       | stop at (i, p)     |
//! | zeros, next segment starts at seq `E`     | —                                       | continue in next   |
//! | zeros, next segment is ours but starts elsewhere | —                                | stop at (i, p)     |
//! | zeros, next header blank, foreign or damaged | —                                    | stop at (i+1, 0)   |
//! | zeros / bad frame / bad or blank header   | a later valid frame has durable-next > E | **corruption** at (i, p) |
//! | any stop                                  | a damaged header at or after the stop   | **corruption** at (that segment, 0) |
//! | zeros / bad frame / bad or blank header   | nothing vouches for `E`                 | torn tail: cut at (i, p) |
//!
//! "Vouches": every frame records the writer's durable watermark at the time
//! it was built. If a later frame says `E` was already durable, the bytes at
//! `(i, p)` were once durable and are now damaged: that is corruption, never
//! a torn tail. Otherwise the damage lies in bytes that were never
//! acknowledged (writes that were in flight, possibly completed out of order,
//! when the process or machine died), and cutting them loses nothing that was
//! reported durable.
//!
//! "Damaged header": a segment header whose bytes are all present and not
//! all zero, but which fails its own checks (magic, CRC, version, reserved
//! bits, size). The header lies in the segment's first sector and is written
//! once, in one write, over zeros; sectors are written atomically (see
//! `docs/FORMAT.md`), so a crash leaves a header blank or whole, never
//! damaged. A damaged header is media damage, and since the records behind
//! it cannot be checked without it (its fields seed their CRCs), dropping the
//! segment as a torn tail could silently lose acknowledged records: recovery
//! refuses instead. A well-formed header of another log or shard is not
//! damage: it is stale, and handled like any bytes past the tail.

use std::path::PathBuf;

use crate::format::frame::{Decoded, decode_at};
use crate::format::segment_header::{HEADER_USED, HeaderError, RECORDS_START, SegmentHeader};
use crate::format::{FRAME_ALIGN, align_up, frame::RecordKind};

/// The bytes of one segment file, as read from disk.
pub struct SegmentBytes<'a> {
    /// Segment index from the file name.
    pub index: u64,
    /// The file's path (for error messages).
    pub path: PathBuf,
    /// The file's contents (possibly shorter than the segment size).
    pub bytes: &'a [u8],
}

/// A segment that is part of the recovered log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedSegment {
    /// Segment index.
    pub index: u64,
    /// File path.
    pub path: PathBuf,
    /// Its header.
    pub header: SegmentHeader,
    /// Offset just past the last valid frame.
    pub valid_end: u64,
    /// Offset past the last non-zero byte found in the file (block-aligned):
    /// everything in `valid_end..data_end` must be zeroed before writing on.
    pub data_end: u64,
    /// Sequence number after the segment's last record.
    pub next_seq: u64,
    /// Records in the segment.
    pub records: u64,
}

/// Where the log was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment holding the first missing frame.
    pub path: PathBuf,
    /// Its offset.
    pub offset: u64,
    /// Why the frame there was not valid.
    pub detail: String,
    /// Bytes discarded (in this segment and the dropped ones).
    pub bytes: u64,
}

/// Result of classifying a shard's segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// The segments that hold the recovered log, in order.
    pub kept: Vec<ScannedSegment>,
    /// Segment files after the end of the log (blank, torn or cut): delete them.
    pub dropped: Vec<PathBuf>,
    /// Set when a torn tail was cut.
    pub torn: Option<TornTail>,
    /// Sequence number for the next record.
    pub next_seq: u64,
    /// Epoch for the next record (last record's epoch, or +1 after a barrier).
    pub next_epoch: Option<u64>,
    /// Records recovered.
    pub records: u64,
    /// Bytes of frames recovered.
    pub bytes: u64,
}

/// Mid-log corruption, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    /// The segment.
    pub path: PathBuf,
    /// The offset of the damaged frame or header.
    pub offset: u64,
    /// What failed.
    pub detail: String,
}

/// Identity a segment header must match.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// The log's id.
    pub log_id: [u8; 16],
    /// The shard.
    pub shard: u32,
    /// Bound on payload lengths.
    pub max_payload: usize,
}

fn check_header(seg: &SegmentBytes<'_>, exp: &Expect) -> Result<SegmentHeader, HeaderError> {
    let h = SegmentHeader::decode(seg.bytes)?;
    if h.log_id != exp.log_id {
        return Err(HeaderError::Invalid(
            "segment belongs to another log".into(),
        ));
    }
    if h.shard != exp.shard {
        return Err(HeaderError::Invalid(format!(
            "segment belongs to shard {}, not {}",
            h.shard, exp.shard
        )));
    }
    if h.index != seg.index {
        return Err(HeaderError::Invalid(format!(
            "header index {} does not match file name index {}",
            h.index, seg.index
        )));
    }
    Ok(h)
}

fn limit(seg: &SegmentBytes<'_>, h: &SegmentHeader) -> usize {
    seg.bytes
        .len()
        .min(usize::try_from(h.segment_size).unwrap_or(usize::MAX))
}

fn data_end(bytes: &[u8]) -> u64 {
    let last = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    align_up(last, crate::format::BLOCK) as u64
}

/// Where and why the scan stopped before the end of the files.
#[derive(Debug, Clone)]
pub struct Stop {
    path: PathBuf,
    offset: usize,
    detail: String,
    expected: Option<u64>,
    here_nonzero: bool,
    cut_bytes: u64,
    vouch: u64,
    later_valid_header: bool,
    later_nonzero: bool,
    /// The first segment at or after the stop whose header is damaged.
    damaged_header: Option<(PathBuf, String)>,
    dropped: Vec<PathBuf>,
}

/// Why the header of `bytes` is damaged (see the module docs), if it is.
fn damaged_header(bytes: &[u8]) -> Option<String> {
    if bytes.len() < HEADER_USED {
        // A file cut short: treated like any other cut.
        return None;
    }
    match SegmentHeader::decode(bytes) {
        Err(HeaderError::Invalid(d)) => Some(d),
        Ok(_) | Err(HeaderError::Blank) => None,
    }
}

/// Streaming scanner: feed it segments in index order; it holds at most the
/// segment being fed, so memory does not grow with the log.
pub struct Scanner {
    exp: Expect,
    out: ScanOutcome,
    expected: Option<u64>,
}

impl Scanner {
    /// A scanner for a shard with identity `exp`.
    pub fn new(exp: Expect) -> Scanner {
        Scanner {
            exp,
            out: ScanOutcome {
                kept: Vec::new(),
                dropped: Vec::new(),
                torn: None,
                next_seq: 0,
                next_epoch: None,
                records: 0,
                bytes: 0,
            },
            expected: None,
        }
    }

    /// Scan one segment. `next_header` is the first block of the next
    /// segment file, if there is one. Returns `Some(stop)` when the log does
    /// not continue past this segment as written: then feed every later
    /// segment to [`Stop::consider_later`] and call [`Scanner::decide`].
    /// `on_frame` sees every valid frame in order, with its segment index
    /// and byte offset.
    pub fn feed(
        &mut self,
        seg: &SegmentBytes<'_>,
        next_header: Option<&[u8]>,
        mut on_frame: impl FnMut(&crate::format::frame::Frame<'_>, u64, usize),
    ) -> Option<Stop> {
        let exp = self.exp;
        let (p, detail) = match check_header(seg, &exp) {
            Err(HeaderError::Blank) => (0, "blank segment header".to_string()),
            Err(HeaderError::Invalid(d)) => (0, d),
            Ok(h) if self.expected.is_some_and(|e| e != h.first_seq) => (
                0,
                format!(
                    "segment starts at seq {} but seq {} was expected",
                    h.first_seq,
                    self.expected.unwrap_or(0)
                ),
            ),
            Ok(h) => {
                let seed = h.seed();
                let lim = limit(seg, &h);
                let buf = &seg.bytes[..lim];
                let mut e = h.first_seq;
                let mut pos = RECORDS_START;
                let mut records = 0;
                let mut epoch = self.out.next_epoch.unwrap_or(0).max(h.first_epoch);
                let why = loop {
                    match decode_at(buf, pos, seed, exp.max_payload) {
                        Decoded::Frame(f) if f.meta.seq == e && f.meta.epoch < epoch => {
                            break Some(format!(
                                "epoch went backwards: seq {e} has epoch {} after epoch {epoch}",
                                f.meta.epoch
                            ));
                        }
                        Decoded::Frame(f) if f.meta.seq == e => {
                            on_frame(&f, seg.index, pos);
                            e += 1;
                            records += 1;
                            self.out.bytes += f.len as u64;
                            pos += f.len;
                            epoch = if f.meta.kind == RecordKind::Barrier {
                                f.meta.epoch + 1
                            } else {
                                f.meta.epoch
                            };
                        }
                        Decoded::Frame(f) => {
                            break Some(format!(
                                "sequence gap: expected seq {e}, found seq {}",
                                f.meta.seq
                            ));
                        }
                        Decoded::End => break None,
                        Decoded::Invalid(d) => break Some(d),
                    }
                };
                self.out.kept.push(ScannedSegment {
                    index: seg.index,
                    path: seg.path.clone(),
                    header: h,
                    valid_end: pos as u64,
                    data_end: data_end(seg.bytes),
                    next_seq: e,
                    records,
                });
                self.out.records += records;
                self.out.next_seq = e;
                self.out.next_epoch = Some(epoch);
                self.expected = Some(e);
                match why {
                    // Zeros, but non-zero bytes further on in this segment:
                    // the frame header here was lost (a write that never
                    // landed, or damage). Decided by vouching, like any stop.
                    None if buf
                        .get(pos..)
                        .is_some_and(|rest| rest.iter().any(|&b| b != 0)) =>
                    {
                        (pos, "zeroed frame header followed by data".to_string())
                    }
                    None => {
                        // Zeros: a clean end, or the log goes on in the next
                        // segment. If the next segment is ours but starts at
                        // another seq, records are missing here. Any other
                        // problem with the next segment (blank, damaged or
                        // foreign header) is its own, reported at its offset 0
                        // when it is fed.
                        let next_disagrees = next_header.is_some_and(|nh| {
                            SegmentHeader::decode(nh).is_ok_and(|nh| {
                                nh.log_id == exp.log_id
                                    && nh.shard == exp.shard
                                    && nh.first_seq != e
                            })
                        });
                        if !next_disagrees {
                            return None;
                        }
                        (
                            pos,
                            "the next segment does not continue this one".to_string(),
                        )
                    }
                    Some(d) => (pos, d),
                }
            }
        };
        let whole = p == 0;
        let mut stop = Stop {
            path: seg.path.clone(),
            offset: p,
            detail,
            expected: self.expected,
            here_nonzero: seg
                .bytes
                .get(p..)
                .is_some_and(|r| r.iter().any(|&b| b != 0)),
            cut_bytes: data_end(seg.bytes).saturating_sub(p as u64),
            vouch: 0,
            later_valid_header: false,
            later_nonzero: false,
            damaged_header: damaged_header(seg.bytes).map(|d| (seg.path.clone(), d)),
            dropped: Vec::new(),
        };
        if whole {
            stop.dropped.push(seg.path.clone());
        }
        stop.vouch = vouched_in(seg, p + FRAME_ALIGN, &exp);
        Some(stop)
    }

    /// The outcome when every segment was fed without a stop.
    pub fn finish(&self) -> ScanOutcome {
        self.out.clone()
    }

    /// Decide what a stop means (see the table in the module docs).
    pub fn decide(&mut self, stop: Stop) -> Result<ScanOutcome, Corrupt> {
        let damaged = match stop.expected {
            Some(e) => stop.vouch > e,
            // The first segment's header is unreadable: any later valid
            // segment means the log had durable data beyond it.
            None => stop.later_valid_header,
        };
        let e = stop.expected.unwrap_or(0);
        if damaged {
            return Err(Corrupt {
                path: stop.path,
                offset: stop.offset as u64,
                detail: format!("{} (later records show seq {e} was durable)", stop.detail),
            });
        }
        if let Some((path, d)) = stop.damaged_header {
            return Err(Corrupt {
                path,
                offset: 0,
                detail: format!(
                    "damaged segment header: {d} (a crash leaves a header blank or whole)"
                ),
            });
        }
        if stop.here_nonzero || stop.later_nonzero {
            self.out.torn = Some(TornTail {
                path: stop.path,
                offset: stop.offset as u64,
                detail: stop.detail,
                bytes: stop.cut_bytes,
            });
        }
        self.out.dropped = stop.dropped;
        self.out.next_seq = e;
        Ok(self.out.clone())
    }
}

impl Stop {
    /// Account for a segment that lies after the stop.
    pub fn consider_later(&mut self, seg: &SegmentBytes<'_>, exp: &Expect) {
        self.dropped.push(seg.path.clone());
        let end = data_end(seg.bytes);
        self.cut_bytes += end;
        self.later_nonzero |= end > 0;
        self.later_valid_header |= check_header(seg, exp).is_ok();
        if self.damaged_header.is_none() {
            self.damaged_header = damaged_header(seg.bytes).map(|d| (seg.path.clone(), d));
        }
        self.vouch = self.vouch.max(vouched_in(seg, RECORDS_START, exp));
    }
}

/// Largest durable-next vouched by any valid frame at or after `from` in
/// `seg`, searching every aligned position (frame boundaries after a damaged
/// frame are unknown).
fn vouched_in(seg: &SegmentBytes<'_>, from: usize, exp: &Expect) -> u64 {
    let Ok(h) = check_header(seg, exp) else {
        return 0;
    };
    let seed = h.seed();
    let lim = limit(seg, &h);
    let buf = &seg.bytes[..lim];
    let mut best = 0;
    let mut pos = from.max(RECORDS_START);
    while pos < lim {
        match decode_at(buf, pos, seed, exp.max_payload) {
            Decoded::Frame(f) => {
                best = best.max(f.meta.durable_next);
                pos += f.len;
            }
            _ => pos += FRAME_ALIGN,
        }
    }
    best
}

/// Classify `segs` (all of a shard's segment files, in index order), holding
/// them all in memory. Recovery streams instead; this is for tests and tools.
pub fn classify(segs: &[SegmentBytes<'_>], exp: &Expect) -> Result<ScanOutcome, Corrupt> {
    let mut sc = Scanner::new(*exp);
    for (i, seg) in segs.iter().enumerate() {
        let next = segs.get(i + 1).map(|n| n.bytes);
        if let Some(mut stop) = sc.feed(seg, next, |_, _, _| {}) {
            for later in &segs[i + 1..] {
                stop.consider_later(later, exp);
            }
            return sc.decide(stop);
        }
    }
    Ok(sc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::frame::{FrameMeta, encode_header, frame_len};

    const LOG: [u8; 16] = [9; 16];

    /// A segment of `n` records; record `i` vouches for `vouch(i)`.
    fn segment(n: u64, vouch: impl Fn(u64) -> u64) -> (Vec<u8>, Vec<usize>) {
        let h = SegmentHeader {
            log_id: LOG,
            shard: 0,
            index: 0,
            first_seq: 0,
            first_epoch: 1,
            nonce: 5,
            segment_size: 64 << 10,
        };
        let mut b = vec![0u8; 64 << 10];
        h.encode_into(&mut b);
        let mut pos = RECORDS_START;
        let mut starts = Vec::new();
        for i in 0..n {
            let payload = [i as u8; 20];
            let meta = FrameMeta {
                seq: i,
                epoch: 1,
                durable_next: vouch(i),
                kind: RecordKind::Data,
            };
            starts.push(pos);
            b[pos..pos + 40].copy_from_slice(&encode_header(h.seed(), &meta, &payload));
            b[pos + 40..pos + 60].copy_from_slice(&payload);
            pos += frame_len(20);
        }
        (b, starts)
    }

    fn exp() -> Expect {
        Expect {
            log_id: LOG,
            shard: 0,
            max_payload: 1 << 20,
        }
    }

    fn run(b: &[u8]) -> Result<ScanOutcome, Corrupt> {
        classify(
            &[SegmentBytes {
                index: 0,
                path: "0.seg".into(),
                bytes: b,
            }],
            &exp(),
        )
    }

    #[test]
    fn a_zeroed_header_vouched_for_by_later_records_is_corruption() {
        let (mut b, starts) = segment(10, |i| i);
        b[starts[5]..starts[5] + 40].fill(0);
        let e = run(&b).unwrap_err();
        assert_eq!(e.offset, starts[5] as u64);
    }

    #[test]
    fn a_zeroed_header_nobody_vouches_for_is_a_torn_tail() {
        let (mut b, starts) = segment(10, |_| 0);
        b[starts[5]..starts[5] + 40].fill(0);
        let o = run(&b).unwrap();
        assert_eq!(o.next_seq, 5);
        assert!(o.torn.is_some());
    }

    #[test]
    fn zeros_to_the_end_are_a_clean_end() {
        let (b, _) = segment(10, |i| i);
        let o = run(&b).unwrap();
        assert_eq!((o.next_seq, o.torn), (10, None));
    }
}
