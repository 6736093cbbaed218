//! Classify the valid extent of a shard's log from the bytes of its segments.
//!
//! The scan walks frames from the first segment, checking each frame's CRC
//! (seeded per segment) and that sequence numbers are dense. It stops at the
//! first position `(segment i, offset p)` where the expected frame (seq `E`)
//! is not found. What that stop means is decided by this table (the
//! reference is `docs/FORMAT.md` §10, whose row numbers the code cites):
//!
//! | stop                                      | later evidence                          | verdict            |
//! |-------------------------------------------|-----------------------------------------|--------------------|
//! | zeros to the end of the segment, no later segment | —                               | clean end          |
//! | zeros, then non-zero bytes in the segment | (decided like a bad frame, below)       | stop at (i, p)     |
//! | zeros, next segment starts at seq `E`     | —                                       | continue in next   |
//! | zeros, next segment is ours but starts elsewhere | —                                | stop at (i, p)     |
//! | zeros, next header blank, foreign or damaged | —                                    | stop at (i+1, 0)   |
//! | any stop                                  | a valid header of another log id at or after the stop | **refused**: `ForeignLogId` at (that segment, 0), even with repair; nothing removed |
//! | zeros / bad frame / bad or blank header   | a later valid frame has durable-next > E | **corruption** at (i, p) |
//! | bad frame that landed whole, in a `ZEROED` segment | —                            | **corruption** at (i, p) (row 1a) |
//! | segment i is `SIZED` and shorter than its size | —                                  | **corruption** at (i, p) (row 1b) |
//! | any stop                                  | a damaged header at or after the stop   | **corruption** at (that segment, 0) |
//! | any stop                                  | a later `SIZED` segment cut short       | **corruption** at (that segment, its length) |
//! | zeros / bad frame / bad or blank header   | nothing vouches for `E`                 | torn tail: cut at (i, p) |
//!
//! "Vouches": every frame records the writer's durable watermark at the time
//! it was built. If a later frame says `E` was already durable, the bytes at
//! `(i, p)` were once durable and are now damaged: that is corruption, never
//! a torn tail. The next segment's (index + 1) valid header vouches for
//! every seq below its first seq: the writer fdatasyncs a segment before it
//! issues the write that holds the next segment's header. Otherwise the damage lies in bytes that were never
//! acknowledged (writes that were in flight, possibly completed out of order,
//! when the process or machine died), and cutting them loses nothing that was
//! reported durable.
//!
//! "Damaged header": a segment header that is not all zero but fails its
//! own checks (magic, CRC, version, reserved bits, size), or is cut short
//! by the end of the file: every write is block-aligned, so a crash leaves
//! a segment file empty or at least a sector long, never a partial header. The header lies in the segment's first sector and is written
//! once, in one write, over zeros; sectors are written atomically (see
//! `docs/FORMAT.md`), so a crash leaves a header blank or whole, never
//! damaged. A damaged header is media damage, and since the records behind
//! it cannot be checked without it (its fields seed their CRCs), dropping the
//! segment as a torn tail could silently lose acknowledged records: recovery
//! refuses instead. A well-formed header of another shard is not damage:
//! it is stale, and handled like any bytes past the tail.
//!
//! "Cut short" (`SIZED`): a segment whose header says its length was made
//! durable before its first write (zero fill or fallocate, then fdatasync)
//! and whose file is shorter than its size lost bytes after they were
//! written; nothing shortens a segment file, and a crash during the
//! preparation leaves the header blank. It is refused at the first frame
//! that is not wholly in the file, whatever vouches for it: the records
//! cut may be the last acknowledged ones, which nothing later vouches for.
//!
//! "Another log id": a segment header that passes every check of its own
//! (magic, CRC, version, ...) but names a log id other than `LOG_ID`'s.
//! That is not a torn write either (a crash leaves a header blank or whole,
//! and a whole header of this log carries this log's id): the segment was
//! written under another identity, e.g. by a writer that raced `LOG_ID`'s
//! creation, or copied in by hand. Its records may have been acknowledged,
//! so recovery never cuts, zeroes or deletes it, with or without repair: it
//! refuses the shard with [`CorruptionCause::ForeignLogId`] naming both ids
//! and leaves the file for an operator. The check wins over every other
//! row. A blank or damaged header (one that fails its own CRC) is not
//! "another log id" and keeps the rows above.

use std::path::{Path, PathBuf};

use crate::error::CorruptionCause;
use crate::format::frame::{Decoded, FRAME_HEADER, FrameFault};
use crate::format::segment_header::{HeaderError, HeaderFault, RECORDS_START, SegmentHeader};
use crate::format::{BLOCK, FRAME_ALIGN, align_up, frame::RecordKind};
use crate::ids::{Epoch, Seq, ShardId};
use crate::io::window::{SegmentFrames, SliceWindow, Window, first_nonzero, ready};

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
    pub next_seq: Seq,
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
    pub cause: CorruptionCause,
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
    /// Set when mid-log corruption was dropped on request (repair): where
    /// it was, what failed, and the bytes dropped from there on.
    pub repaired: Option<TornTail>,
    /// Sequence number for the next record.
    pub next_seq: Seq,
    /// Epoch for the next record (last record's epoch, or +1 after a barrier).
    pub next_epoch: Option<Epoch>,
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
    pub cause: CorruptionCause,
}

/// Identity a segment header must match.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// The log's id.
    pub log_id: [u8; 16],
    /// The shard.
    pub shard: ShardId,
    /// Bound on payload lengths.
    pub max_payload: usize,
}

/// Decode the header block `head` of segment `index` and check that it is
/// one of ours: the log and shard of `exp`, the index of its file name.
fn check_header(head: &[u8], index: u64, exp: &Expect) -> Result<SegmentHeader, CorruptionCause> {
    let h = SegmentHeader::decode(head).map_err(|e| match e {
        HeaderError::Blank => CorruptionCause::BlankSegmentHeader,
        HeaderError::Invalid(fault) => CorruptionCause::SegmentHeader(fault),
    })?;
    check_identity(&h, index, exp.log_id, exp.shard)?;
    Ok(h)
}

/// Whether a valid header `h`, read from the file of segment `index`,
/// belongs to shard `shard` of log `log_id` at that index. The scanner and
/// the reader both ask it.
pub(crate) fn check_identity(
    h: &SegmentHeader,
    index: u64,
    log_id: [u8; 16],
    shard: ShardId,
) -> Result<(), CorruptionCause> {
    if h.log_id != log_id {
        return Err(CorruptionCause::ForeignLogId {
            found: h.log_id,
            expected: log_id,
        });
    }
    if h.shard != shard {
        return Err(CorruptionCause::WrongShard {
            found: h.shard,
            expected: shard,
        });
    }
    if h.index != index {
        return Err(CorruptionCause::IndexMismatch {
            header: h.index,
            file: index,
        });
    }
    Ok(())
}

/// The header block of a segment, from the first bytes the window holds:
/// everything a header decoder looks at, and no more.
async fn head_of<W: Window>(win: &mut W) -> Result<&[u8], W::Error> {
    let head = win.at(0, BLOCK).await?;
    Ok(&head[..head.len().min(BLOCK)])
}

/// Where and why the scan stopped before the end of the files.
#[derive(Debug, Clone)]
pub struct Stop {
    /// The index of the segment the stop is in.
    index: u64,
    path: PathBuf,
    offset: usize,
    cause: CorruptionCause,
    expected: Option<Seq>,
    here_nonzero: bool,
    cut_bytes: u64,
    vouch: Seq,
    later_valid_header: bool,
    later_nonzero: bool,
    /// The first segment at or after the stop whose header is damaged.
    damaged_header: Option<(PathBuf, HeaderFault)>,
    /// The first segment after the stop that is `SIZED` but shorter than
    /// its size: its path, its length (the error's offset), and the
    /// [`CorruptionCause::SegmentTruncated`] that says so.
    truncated: Option<(PathBuf, u64, CorruptionCause)>,
    /// The first segment at or after the stop whose valid header names
    /// another log id (a [`CorruptionCause::ForeignLogId`]).
    foreign: Option<(PathBuf, CorruptionCause)>,
    dropped: Vec<PathBuf>,
}

/// The cause to refuse a segment for, if `header` (its header checked by
/// [`check_header`]) is valid but names another log id.
fn foreign_log(header: &Result<SegmentHeader, CorruptionCause>) -> Option<CorruptionCause> {
    match header {
        Err(c @ CorruptionCause::ForeignLogId { .. }) => Some(c.clone()),
        _ => None,
    }
}

/// Why the header `head` (a segment's first block) is damaged (see the
/// module docs), if it is. A header cut short by the end of the file
/// (fewer than its 84 bytes, not all zero) is damaged too: every write
/// is block-aligned, so a crash leaves a segment file empty, or at least
/// one sector long (`docs/FORMAT.md` §12), never a partial header.
fn damaged_header(head: &[u8]) -> Option<HeaderFault> {
    match SegmentHeader::decode(head) {
        Err(HeaderError::Invalid(fault)) => Some(fault),
        Ok(_) | Err(HeaderError::Blank) => None,
    }
}

/// What the valid header `h` of ours, in the file of segment `index`,
/// vouches for when the segment before it in the scan is `prev`: every seq
/// below its first seq if `index` is `prev + 1`, since the writer
/// fdatasyncs a segment before it issues the first write (the one holding
/// the header) to the next. Only the direct successor counts: a segment
/// further on may have outlived the removal of the ones between (recovery
/// removes the segments after a cut last first, and a crash may keep any
/// of those removals that its directory fsync did not yet make durable).
fn next_vouch(prev: Option<u64>, index: u64, h: &SegmentHeader) -> Seq {
    if prev.and_then(|p| p.checked_add(1)) == Some(index) {
        h.first_seq
    } else {
        Seq(0)
    }
}

/// [`CorruptionCause::SegmentTruncated`] if the segment with header `h`,
/// whose file is `len` bytes long, is `SIZED` and shorter than its size:
/// its length was durable before its first write, so no crash shortens
/// it (`docs/FORMAT.md` §10, row 1b). A segment not `SIZED` (prepared with
/// `SegmentPrepare::Create`, or written before the flag existed) grows as
/// it is written, and may be short after a crash.
fn truncation(h: &SegmentHeader, len: u64) -> Option<CorruptionCause> {
    (h.sized && len < h.segment_size).then_some(CorruptionCause::SegmentTruncated {
        len,
        size: h.segment_size,
    })
}

/// Sector size for telling a torn write from damage: writes are atomic per
/// sector (docs/FORMAT.md §5); 512 bytes is the smallest sector there is,
/// so a tear at any coarser unit is seen too.
const SECTOR: u64 = 512;

/// Whether the frame at `pos` of the segment with header `h`, which fails
/// its checks with `fault`, was written whole: its header and (if its
/// length field is one the writer could have written: within the payload
/// bound and the segment's capacity) its payload are all readable, and in
/// every sector they span, some of their bytes are non-zero. In a zeroed
/// segment a torn write leaves some sector of the frame as it was before,
/// all zeros, so a frame that passes this test was not torn. Padding is
/// left out: it is zero by design. A frame cut short by the end of the
/// file is a tear; so is one whose bytes in some sector are all zero by
/// content: the ambiguity that is left, documented in docs/FORMAT.md §5.
async fn landed_whole<W: Window>(
    win: &mut W,
    pos: u64,
    fault: FrameFault,
    h: &SegmentHeader,
    max_payload: usize,
) -> Result<bool, W::Error> {
    let writable =
        |len: usize| len <= max_payload && pos + (FRAME_HEADER + len) as u64 <= h.segment_size;
    match fault {
        FrameFault::ShortHeader { .. } => return Ok(false),
        // Past the file's end but inside the segment: the file is short.
        FrameFault::Truncated { len, .. } if pos + len as u64 <= h.segment_size => {
            return Ok(false);
        }
        _ => {}
    }
    let head = win.at(pos, FRAME_HEADER).await?;
    let Some(len) = crate::format::frame::declared_payload_len(head) else {
        return Ok(false);
    };
    let used = FRAME_HEADER + if writable(len) { len } else { 0 };
    let bytes = win.at(pos, used).await?;
    if bytes.len() < used {
        return Ok(false);
    }
    let end = pos + used as u64;
    let mut from = pos;
    while from < end {
        let to = ((from / SECTOR + 1) * SECTOR).min(end);
        let part = &bytes[(from - pos) as usize..(to - pos) as usize];
        if first_nonzero(part).is_none() {
            return Ok(false);
        }
        from = to;
    }
    Ok(true)
}

/// Streaming scanner: feed it segments in index order; it holds at most the
/// window of the segment being fed, so memory does not grow with the log.
pub struct Scanner {
    exp: Expect,
    out: ScanOutcome,
    expected: Option<Seq>,
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
                repaired: None,
                next_seq: Seq(0),
                next_epoch: None,
                records: 0,
                bytes: 0,
            },
            expected: None,
        }
    }

    /// Scan one segment held in memory. `next_header` is the first block of
    /// the next segment file, if there is one. Returns `Some(stop)` when the
    /// log does not continue past this segment as written: then feed every
    /// later segment to [`Stop::consider_later`] and call
    /// [`Scanner::decide`]. `on_frame` sees every valid frame in order, with
    /// its segment index and byte offset.
    pub fn feed(
        &mut self,
        seg: &SegmentBytes<'_>,
        next_header: Option<&[u8]>,
        on_frame: impl FnMut(&crate::format::frame::Frame<'_>, u64, usize),
    ) -> Option<Stop> {
        ready(self.feed_window(
            seg.index,
            &seg.path,
            &mut SliceWindow::with_next(seg.bytes, next_header),
            on_frame,
        ))
    }

    /// [`Scanner::feed`] over a segment read through `win`, which is read
    /// once, front to back, to the end of the file.
    pub async fn feed_window<W: Window>(
        &mut self,
        index: u64,
        path: &Path,
        win: &mut W,
        mut on_frame: impl FnMut(&crate::format::frame::Frame<'_>, u64, usize),
    ) -> Result<Option<Stop>, W::Error> {
        let exp = self.exp;
        let head = head_of(win).await?;
        let damaged = damaged_header(head);
        let header = check_header(head, index, &exp);
        let foreign = foreign_log(&header).map(|c| (path.to_path_buf(), c));
        let (p, cause, vouch, last_nonzero) = match header {
            Err(cause) => (0, cause, Seq(0), win.finish().await?),
            Ok(h) if self.expected.is_some_and(|e| e != h.first_seq) => {
                let cause = CorruptionCause::SegmentStartsElsewhere {
                    expected: self.expected.unwrap_or_default(),
                    found: h.first_seq,
                };
                let (vouch, _) = vouch_scan(win, 0, &h, &exp).await?;
                // This header vouches for the records before it if the
                // segment it follows is its predecessor (see `next_vouch`).
                let prev = self.out.kept.last().map(|k| k.index);
                let vouch = vouch.max(next_vouch(prev, index, &h));
                (0, cause, vouch, win.finish().await?)
            }
            Ok(h) => {
                let frames = SegmentFrames::new(&h, exp.max_payload);
                let mut e = h.first_seq;
                let mut pos = RECORDS_START as u64;
                let mut records = 0;
                let mut epoch = self.out.next_epoch.unwrap_or_default().max(h.first_epoch);
                let why = loop {
                    match frames.decode(win, pos).await? {
                        Decoded::Frame(f) if f.meta.seq == e && f.meta.epoch < epoch => {
                            break Some(CorruptionCause::EpochBackwards {
                                seq: e,
                                epoch: f.meta.epoch,
                                floor: epoch,
                            });
                        }
                        Decoded::Frame(f) if f.meta.seq == e => {
                            on_frame(&f, index, pos as usize);
                            e = e.next();
                            records += 1;
                            self.out.bytes += f.len as u64;
                            pos += f.len as u64;
                            epoch = if f.meta.kind == RecordKind::Barrier {
                                f.meta.epoch.next()
                            } else {
                                f.meta.epoch
                            };
                        }
                        Decoded::Frame(f) => {
                            break Some(CorruptionCause::SeqGap {
                                expected: e,
                                found: f.meta.seq,
                            });
                        }
                        Decoded::End => break None,
                        Decoded::Invalid(fault) => break Some(fault.into()),
                    }
                };
                // A frame that landed whole in a zeroed segment and still
                // fails its checks was damaged after it was written.
                let why = match why {
                    Some(CorruptionCause::Frame(fault))
                        if h.zeroed
                            && landed_whole(win, pos, fault, &h, exp.max_payload).await? =>
                    {
                        Some(CorruptionCause::LandedFrameDamaged(fault))
                    }
                    other => other,
                };
                // Every aligned offset after the stop, for vouching; this
                // also tells whether anything non-zero follows the frames
                // before the end of the segment's records.
                let (vouch, nonzero_after) = vouch_scan(win, pos, &h, &exp).await?;
                let last_nonzero = win.finish().await?;
                // A `SIZED` file shorter than its size was cut after it was
                // written: whatever the frames say, that is the stop (row 1b).
                let why = truncation(&h, win.file_len()).or(why);
                self.out.kept.push(ScannedSegment {
                    index,
                    path: path.to_path_buf(),
                    header: h,
                    valid_end: pos,
                    data_end: align_up(last_nonzero as usize, BLOCK) as u64,
                    next_seq: e,
                    records,
                });
                self.out.records += records;
                self.out.next_seq = e;
                self.out.next_epoch = Some(epoch);
                self.expected = Some(e);
                let p = pos as usize;
                match why {
                    // Zeros, but non-zero bytes further on in this segment:
                    // the frame header here was lost (a write that never
                    // landed, or damage). Decided by vouching, like any stop.
                    // (`decode_at` found zeros in `pos..pos + 40`, so the
                    // vouching walk from `pos + 8` saw every byte after them.)
                    None if nonzero_after => (
                        p,
                        CorruptionCause::ZeroedHeaderBeforeData,
                        vouch,
                        last_nonzero,
                    ),
                    None => {
                        // Zeros: a clean end, or the log goes on in the next
                        // segment. If the next segment is ours but starts at
                        // another seq, records are missing here. Any other
                        // problem with the next segment (blank, damaged or
                        // foreign header) is its own, reported at its offset 0
                        // when it is fed.
                        let next_first = win
                            .next_head()
                            .await?
                            .and_then(|nh| SegmentHeader::decode(nh).ok())
                            .filter(|nh| nh.log_id == exp.log_id && nh.shard == exp.shard)
                            .map(|nh| nh.first_seq);
                        let Some(found) = next_first.filter(|&f| f != e) else {
                            return Ok(None);
                        };
                        (
                            p,
                            CorruptionCause::SegmentDoesNotContinue { expected: e, found },
                            vouch,
                            last_nonzero,
                        )
                    }
                    Some(d) => (p, d, vouch, last_nonzero),
                }
            }
        };
        let data_end = align_up(last_nonzero as usize, BLOCK) as u64;
        let mut stop = Stop {
            index,
            path: path.to_path_buf(),
            offset: p,
            cause,
            expected: self.expected,
            here_nonzero: last_nonzero > p as u64,
            cut_bytes: data_end.saturating_sub(p as u64),
            vouch,
            later_valid_header: false,
            later_nonzero: false,
            damaged_header: damaged.map(|d| (path.to_path_buf(), d)),
            truncated: None,
            foreign,
            dropped: Vec::new(),
        };
        if p == 0 {
            stop.dropped.push(path.to_path_buf());
        }
        Ok(Some(stop))
    }

    /// The outcome when every segment was fed without a stop.
    pub fn finish(&self) -> ScanOutcome {
        self.out.clone()
    }

    /// Decide what a stop means (see the table in the module docs).
    pub fn decide(&mut self, stop: Stop) -> Result<ScanOutcome, Corrupt> {
        self.decide_with(stop, false)
    }

    /// [`Scanner::decide`]; with `repair`, corruption is not an error: the
    /// log is cut at the stop like a torn tail, and what was dropped is
    /// reported in [`ScanOutcome::repaired`]. A segment of another log id
    /// is refused whatever `repair` says: its bytes are not this log's to
    /// cut.
    pub fn decide_with(&mut self, stop: Stop, repair: bool) -> Result<ScanOutcome, Corrupt> {
        if let Some((path, cause)) = stop.foreign {
            return Err(Corrupt {
                path,
                offset: 0,
                cause,
            });
        }
        match self.corruption(&stop) {
            Some(c) if !repair => Err(c),
            Some(c) => {
                self.out.repaired = Some(TornTail {
                    path: c.path,
                    offset: c.offset,
                    cause: c.cause,
                    bytes: stop.cut_bytes,
                });
                self.out.dropped = stop.dropped;
                self.out.next_seq = stop.expected.unwrap_or_default();
                Ok(self.out.clone())
            }
            None => Ok(self.torn_or_clean(stop)),
        }
    }

    /// The corruption a stop reveals, if any (rows 0–3 and 1a of the table).
    fn corruption(&self, stop: &Stop) -> Option<Corrupt> {
        let damaged = match stop.expected {
            Some(e) => stop.vouch > e,
            // The first segment's header is unreadable: any later valid
            // segment means the log had durable data beyond it.
            None => stop.later_valid_header,
        };
        let e = stop.expected.unwrap_or_default();
        // A frame that was written whole and fails is damage, whatever
        // vouches for it (row 1a); so is a segment cut short (row 1b).
        let landed = matches!(
            stop.cause,
            CorruptionCause::LandedFrameDamaged(_) | CorruptionCause::SegmentTruncated { .. }
        );
        if landed && !damaged {
            return Some(Corrupt {
                path: stop.path.clone(),
                offset: stop.offset as u64,
                cause: stop.cause.clone(),
            });
        }
        if damaged {
            return Some(Corrupt {
                path: stop.path.clone(),
                offset: stop.offset as u64,
                cause: CorruptionCause::Vouched {
                    expected_seq: e,
                    inner: Box::new(stop.cause.clone()),
                },
            });
        }
        let header = stop.damaged_header.as_ref().map(|(path, fault)| Corrupt {
            path: path.clone(),
            offset: 0,
            cause: CorruptionCause::DamagedSegmentHeader(*fault),
        });
        header.or_else(|| {
            stop.truncated.as_ref().map(|(path, len, cause)| Corrupt {
                path: path.clone(),
                offset: *len,
                cause: cause.clone(),
            })
        })
    }

    /// A stop that is not corruption: a torn tail or a clean end (rows 4–5).
    fn torn_or_clean(&mut self, stop: Stop) -> ScanOutcome {
        let e = stop.expected.unwrap_or_default();
        if stop.here_nonzero || stop.later_nonzero {
            self.out.torn = Some(TornTail {
                path: stop.path,
                offset: stop.offset as u64,
                cause: stop.cause,
                bytes: stop.cut_bytes,
            });
        }
        self.out.dropped = stop.dropped;
        self.out.next_seq = e;
        self.out.clone()
    }
}

impl Stop {
    /// Account for a segment, held in memory, that lies after the stop.
    pub fn consider_later(&mut self, seg: &SegmentBytes<'_>, exp: &Expect) {
        ready(self.consider_later_window(
            seg.index,
            &seg.path,
            &mut SliceWindow::new(seg.bytes),
            exp,
        ));
    }

    /// [`Stop::consider_later`] over a segment read through `win`, which is
    /// read once, front to back, to the end of the file.
    pub async fn consider_later_window<W: Window>(
        &mut self,
        index: u64,
        path: &Path,
        win: &mut W,
        exp: &Expect,
    ) -> Result<(), W::Error> {
        self.dropped.push(path.to_path_buf());
        let head = head_of(win).await?;
        let damaged = damaged_header(head);
        let header = check_header(head, index, exp);
        if self.foreign.is_none() {
            self.foreign = foreign_log(&header).map(|c| (path.to_path_buf(), c));
        }
        let header = header.ok();
        let vouch = match &header {
            Some(h) => {
                let frames = vouch_scan(win, 0, h, exp).await?.0;
                frames.max(next_vouch(Some(self.index), index, h))
            }
            None => Seq(0),
        };
        let end = align_up(win.finish().await? as usize, BLOCK) as u64;
        if self.truncated.is_none()
            && let Some(cause) = header.as_ref().and_then(|h| truncation(h, win.file_len()))
        {
            self.truncated = Some((path.to_path_buf(), win.file_len(), cause));
        }
        self.cut_bytes += end;
        self.later_nonzero |= end > 0;
        self.later_valid_header |= header.is_some();
        if self.damaged_header.is_none() {
            self.damaged_header = damaged.map(|d| (path.to_path_buf(), d));
        }
        self.vouch = self.vouch.max(vouch);
        Ok(())
    }
}

/// Vouching after a stop at `stop` (0 for a stop at the header) in a segment
/// whose header `h` is valid and ours: the largest durable-next of any valid
/// frame at an aligned offset after `stop` (from the first record on),
/// trying every aligned offset, since frame boundaries after a damaged frame
/// are unknown. Also says whether any byte there is non-zero.
///
/// Offsets whose 40 bytes are all zero cannot hold a frame; runs of them are
/// skipped by searching for the next non-zero byte, so a zero tail costs a
/// memory scan, not a frame decode per 8 bytes.
async fn vouch_scan<W: Window>(
    win: &mut W,
    stop: u64,
    h: &SegmentHeader,
    exp: &Expect,
) -> Result<(Seq, bool), W::Error> {
    let frames = SegmentFrames::new(h, exp.max_payload);
    let lim = h.segment_size;
    let mut best = Seq(0);
    let mut nonzero = false;
    let mut pos = (stop + FRAME_ALIGN as u64).max(RECORDS_START as u64);
    let skip = |k: usize| (((k - FRAME_HEADER) / FRAME_ALIGN + 1) * FRAME_ALIGN) as u64;
    while pos < lim {
        let v = frames.head(win, pos).await?;
        match first_nonzero(v) {
            // Zeros to the end of the segment's records or of the file.
            None if v.len() < FRAME_HEADER => break,
            // Every offset whose header lies within these zeros is an end.
            None => pos += skip(v.len()),
            Some(q) if q >= FRAME_HEADER => {
                nonzero = true;
                pos += skip(q);
            }
            Some(_) => {
                nonzero = true;
                match frames.decode(win, pos).await? {
                    Decoded::Frame(f) => {
                        best = best.max(f.meta.durable_next);
                        pos += f.len as u64;
                    }
                    _ => pos += FRAME_ALIGN as u64,
                }
            }
        }
    }
    Ok((best, nonzero))
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
        segment_of(n, 20, false, vouch)
    }

    /// [`segment`] with payloads of `len` bytes, in a segment flagged
    /// `zeroed` or not.
    fn segment_of(
        n: u64,
        len: usize,
        zeroed: bool,
        vouch: impl Fn(u64) -> u64,
    ) -> (Vec<u8>, Vec<usize>) {
        let h = SegmentHeader {
            log_id: LOG,
            shard: ShardId(0),
            index: 0,
            first_seq: Seq(0),
            first_epoch: Epoch(1),
            nonce: 5,
            segment_size: 64 << 10,
            zeroed,
            sized: zeroed,
        };
        let mut b = vec![0u8; 64 << 10];
        h.encode_into(&mut b);
        let mut pos = RECORDS_START;
        let mut starts = Vec::new();
        for i in 0..n {
            let payload = vec![i as u8 | 0x80; len];
            let meta = FrameMeta {
                seq: Seq(i),
                epoch: Epoch(1),
                durable_next: Seq(vouch(i)),
                kind: RecordKind::Data,
            };
            starts.push(pos);
            b[pos..pos + 40].copy_from_slice(&encode_header(h.seed(), &meta, &payload));
            b[pos + 40..pos + 40 + len].copy_from_slice(&payload);
            pos += frame_len(len);
        }
        (b, starts)
    }

    #[test]
    fn a_flipped_bit_in_the_last_frame_of_a_zeroed_segment_is_damage_not_a_tear() {
        // Nothing vouches for the last record (every frame vouches only
        // for the ones before it), yet it landed whole: damage.
        let (b, starts) = segment_of(12, 700, true, |i| i);
        let last = *starts.last().unwrap();
        for bit in [
            0,
            4 * 8 + 30,
            9 * 8,
            20 * 8 + 1,
            33 * 8,
            40 * 8 + 5,
            600 * 8 + 7,
        ] {
            let mut d = b.clone();
            d[last + bit / 8] ^= 1 << (bit % 8);
            let c = run(&d).expect_err("a landed frame that fails is corruption");
            assert_eq!(c.offset, last as u64, "bit {bit}");
            assert!(
                matches!(c.cause, CorruptionCause::LandedFrameDamaged(_)),
                "bit {bit}: {:?}",
                c.cause
            );
        }
    }

    #[test]
    fn a_torn_last_frame_of_a_zeroed_segment_is_still_a_torn_tail() {
        // 700-byte payloads straddle sectors: a tear leaves some sector of
        // the last frame as it was, zero.
        let (b, starts) = segment_of(12, 700, true, |i| i);
        let last = *starts.last().unwrap();
        let end = last + frame_len(700);
        let mut sector = (last / 512 + 1) * 512;
        assert!(sector < end, "the frame spans a sector boundary");
        while sector < end {
            let mut d = b.clone();
            d[sector..(sector + 512).min(end)].fill(0);
            let out = run(&d).expect("a tear is not corruption");
            assert_eq!(out.next_seq, Seq(11));
            assert_eq!(out.torn.expect("torn").offset, last as u64);
            sector += 512;
        }
        // And the first sector's part missing, the rest there.
        let mut d = b.clone();
        d[last..(last / 512 + 1) * 512].fill(0);
        let out = run(&d).expect("a tear is not corruption");
        assert_eq!(out.next_seq, Seq(11));
    }

    #[test]
    fn a_segment_not_zeroed_before_use_keeps_the_vouching_rule() {
        let (b, starts) = segment_of(12, 700, false, |i| i);
        let last = *starts.last().unwrap();
        let mut d = b.clone();
        d[last + 100] ^= 4;
        let out = run(&d).expect("unvouched damage in a segment not zeroed is a torn tail");
        assert_eq!(out.next_seq, Seq(11));
        assert_eq!(out.torn.expect("torn").offset, last as u64);
    }

    fn exp() -> Expect {
        Expect {
            log_id: LOG,
            shard: ShardId(0),
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
        assert_eq!(o.next_seq, Seq(5));
        assert!(o.torn.is_some());
    }

    /// An empty segment `index` of size 64 KiB, starting at `first_seq`:
    /// its header and zeros, as the writer leaves it once it rolled onto it.
    fn header_only(index: u64, first_seq: u64) -> Vec<u8> {
        let h = SegmentHeader {
            log_id: LOG,
            shard: ShardId(0),
            index,
            first_seq: Seq(first_seq),
            first_epoch: Epoch(1),
            nonce: 6,
            segment_size: 64 << 10,
            zeroed: true,
            sized: true,
        };
        let mut b = vec![0u8; 64 << 10];
        h.encode_into(&mut b);
        b
    }

    /// Classify segments given as (index, bytes), optionally repairing.
    fn run_with(segs: &[(u64, &[u8])], repair: bool) -> Result<ScanOutcome, Corrupt> {
        let segs: Vec<SegmentBytes<'_>> = segs
            .iter()
            .map(|&(i, b)| SegmentBytes {
                index: i,
                path: format!("{i}.seg").into(),
                bytes: b,
            })
            .collect();
        let mut sc = Scanner::new(exp());
        for (i, seg) in segs.iter().enumerate() {
            let next = segs.get(i + 1).map(|n| n.bytes);
            if let Some(mut stop) = sc.feed(seg, next, |_, _, _| {}) {
                for later in &segs[i + 1..] {
                    stop.consider_later(later, &exp());
                }
                return sc.decide_with(stop, repair);
            }
        }
        Ok(sc.finish())
    }

    #[test]
    fn a_sized_segment_cut_short_is_refused_at_the_first_frame_not_in_the_file() {
        let (b, starts) = segment_of(12, 700, true, |i| i);
        let last = *starts.last().unwrap();
        let end = last + frame_len(700);
        // Inside the last frame (nothing vouches for it), after all the
        // frames (in the zeros after them: nothing lost, still damage), and
        // inside the header block, after the header's 84 bytes.
        for (len, at) in [
            (last + 100, last),
            (last + 41, last),
            (end, end),
            (end + 4096, end),
            (200, RECORDS_START),
            (RECORDS_START, RECORDS_START),
        ] {
            let c = run(&b[..len]).expect_err("a SIZED segment cut short is refused");
            assert_eq!(c.offset, at as u64, "cut to {len}");
            assert_eq!(
                c.cause,
                CorruptionCause::SegmentTruncated {
                    len: len as u64,
                    size: 64 << 10
                },
                "cut to {len}"
            );
        }
        // Whole, it is not.
        assert_eq!(run(&b).expect("whole").next_seq, Seq(12));
    }

    #[test]
    fn repair_cuts_a_truncated_segment_at_its_first_missing_frame() {
        let (b, starts) = segment_of(12, 700, true, |i| i);
        let last = *starts.last().unwrap();
        let out = run_with(&[(0, &b[..last + 100])], true).expect("repair cuts");
        assert_eq!(out.next_seq, Seq(11));
        let r = out.repaired.expect("reported as repaired");
        assert_eq!(r.offset, last as u64);
        assert!(matches!(r.cause, CorruptionCause::SegmentTruncated { .. }));
        assert!(out.torn.is_none());
    }

    #[test]
    fn a_segment_not_sized_cut_short_is_a_torn_tail() {
        // Prepared with `SegmentPrepare::Create`: the file grows as it is
        // written, and a crash may leave it shorter than its size.
        let (b, starts) = segment_of(12, 700, false, |i| i);
        let last = *starts.last().unwrap();
        let out = run(&b[..last + 100]).expect("a tear");
        assert_eq!(out.next_seq, Seq(11));
        assert_eq!(out.torn.expect("torn").offset, last as u64);
        let out = run(&b[..RECORDS_START]).expect("no records: a clean end");
        assert_eq!((out.next_seq, out.torn), (Seq(0), None));
    }

    #[test]
    fn a_header_cut_inside_its_84_bytes_is_damage_and_an_empty_file_is_blank() {
        let (b, _) = segment(10, |i| i);
        for len in [1, 8, 16, 40, 83] {
            let c = run(&b[..len]).expect_err("a partial header is damage");
            assert_eq!(c.offset, 0, "cut to {len}");
            assert_eq!(
                c.cause,
                CorruptionCause::DamagedSegmentHeader(HeaderFault::Truncated { len }),
                "cut to {len}"
            );
        }
        // What a crash right after the file's creation leaves.
        let out = run(&[]).expect("an empty segment is blank");
        assert_eq!((out.next_seq, out.torn), (Seq(0), None));
    }

    #[test]
    fn a_later_segment_header_vouches_for_every_record_before_its_first_seq() {
        // Ten records, none vouched for by a frame (each was built before
        // any sync returned), the header of the ninth zeroed: alone, a
        // torn tail.
        let (mut b, starts) = segment_of(10, 20, true, |_| 0);
        b[starts[8]..starts[8] + FRAME_HEADER].fill(0);
        let alone = run_with(&[(0, &b)], false).expect("a torn tail");
        assert_eq!(alone.next_seq, Seq(8));
        assert_eq!(alone.torn.expect("torn").offset, starts[8] as u64);
        // But the next segment's header says the log went on at seq 10: the
        // writer fdatasynced this segment before writing that header.
        let next = header_only(1, 10);
        let c = run_with(&[(0, &b), (1, &next)], false).expect_err("vouched by the header");
        assert_eq!(
            (c.path.clone(), c.offset),
            (PathBuf::from("0.seg"), starts[8] as u64)
        );
        assert!(
            matches!(
                c.cause,
                CorruptionCause::Vouched {
                    expected_seq: Seq(8),
                    ..
                }
            ),
            "{:?}",
            c.cause
        );
        // A next segment that starts where this one ends vouches for
        // nothing missing: the log just goes on.
        let (whole, _) = segment_of(10, 20, true, |_| 0);
        let out = run_with(&[(0, &whole), (1, &header_only(1, 10))], false).expect("continues");
        assert_eq!((out.next_seq, out.torn), (Seq(10), None));
        // Only the direct successor vouches: segment 2 after a missing 1
        // may have outlived the removal of 1 in an interrupted recovery.
        let later = header_only(2, 12);
        let out = run_with(&[(0, &b), (2, &later)], false).expect("not vouched");
        assert_eq!(out.next_seq, Seq(8));
        assert!(out.torn.is_some());
    }

    #[test]
    fn zeros_to_the_end_are_a_clean_end() {
        let (b, _) = segment(10, |i| i);
        let o = run(&b).unwrap();
        assert_eq!((o.next_seq, o.torn), (Seq(10), None));
    }
}
