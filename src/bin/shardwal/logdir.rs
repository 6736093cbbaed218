//! Read-only access to a log directory, shared by the subcommands: the log
//! id, the shard directories, the manifests, and a scan of one shard that
//! drives the library's recovery [`Scanner`] over the segment files exactly
//! as `recovery::shard::scan` does (same skipping of leading segments, same
//! table of cases), without repairing anything.
//!
//! Nothing here writes: files are read with `std::fs` opened read-only, and
//! the library's manifest and snapshot readers run on [`ReadOnly`] storage.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use futures_lite::future::block_on;
use shardwal::checkpoint::Manifest;
use shardwal::checkpoint::manifest::{self, CHECKPOINT_DIR};
use shardwal::format::frame::Frame;
use shardwal::format::segment_header::{HeaderError, MAX_SEGMENT_SIZE, SegmentHeader};
use shardwal::format::{BLOCK, MAX_RECORD_HARD, log_id};
use shardwal::log_dir::LOG_ID_FILE;
use shardwal::recovery::{Corrupt, Expect, ScanOutcome, Scanner, SegmentBytes};
use shardwal::segment::{parse_segment_name, shard_dir};
use shardwal::{Layout, RecordKind, ShardId};

use crate::progress::Progress;
use crate::ro::{self, ReadOnly};
use crate::{EXIT_ERROR, Fail};

/// A log directory opened for reading.
pub struct LogDir {
    /// The directory.
    pub path: PathBuf,
    /// Its log id, from `LOG_ID`.
    pub log_id: [u8; 16],
    /// The shard ids that have a directory, ascending.
    pub shards: Vec<u32>,
    /// The shard layout: from `LAYOUT`, or implied by the directories.
    pub layout: Layout,
}

/// One manifest file and what reading it gave.
pub struct ManifestEntry {
    /// Checkpoint id from the file name.
    pub id: u64,
    /// The file.
    pub path: PathBuf,
    /// The decoded manifest, or why it does not validate (including a
    /// manifest of another log).
    pub result: Result<Manifest, String>,
}

/// A segment file in a shard directory.
#[derive(Debug, Clone)]
pub struct SegFile {
    /// Index from the file name.
    pub index: u64,
    /// File name.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// Length in bytes.
    pub len: u64,
    /// Bytes allocated on disk.
    pub allocated: u64,
}

/// What the scan saw in one segment file.
#[derive(Debug, Clone, Default)]
pub struct SegStats {
    /// Whether the scanner read this file's frames (leading segments skipped
    /// before a replay position, and files after the stop, are not).
    pub scanned: bool,
    /// Valid frames.
    pub records: u64,
    /// Bytes of valid frames.
    pub bytes: u64,
    /// First and last seq of the valid frames.
    pub seq: Option<(u64, u64)>,
    /// Lowest and highest epoch of the valid frames.
    pub epoch: Option<(u64, u64)>,
    /// Offset just past the last valid frame.
    pub valid_end: Option<u64>,
}

impl SegStats {
    fn observe(&mut self, f: &Frame<'_>, offset: usize) {
        let (s, e) = (f.meta.seq, f.meta.epoch);
        self.records += 1;
        self.bytes += f.len as u64;
        self.seq = Some(self.seq.map_or((s, s), |(a, _)| (a, s)));
        self.epoch = Some(self.epoch.map_or((e, e), |(a, b)| (a.min(e), b.max(e))));
        self.valid_end = Some((offset + f.len) as u64);
    }
}

/// How a shard's log ends, by the recovery table of cases.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The log ends cleanly (blank trailing segments are fine).
    Clean(ScanOutcome),
    /// The log ends in a torn tail that recovery would cut.
    Torn(ScanOutcome),
    /// Mid-log corruption: recovery would refuse.
    Corrupt(Corrupt),
    /// The caller stopped the scan early.
    Stopped,
}

/// The scan of one shard.
pub struct ShardScan {
    /// The shard.
    pub shard: u32,
    /// Its directory.
    pub dir: PathBuf,
    /// Every segment file, in index order.
    pub files: Vec<SegFile>,
    /// Each file's header, as decoded from its first block (identity not checked).
    pub headers: Vec<Result<SegmentHeader, HeaderError>>,
    /// Per file, what the scan saw.
    pub stats: Vec<SegStats>,
    /// Leading files skipped without being read (before the replay position).
    pub skipped: usize,
    /// How the log ends.
    pub verdict: Verdict,
}

impl ShardScan {
    /// The outcome of the scan, when the log is usable.
    pub fn outcome(&self) -> Option<&ScanOutcome> {
        match &self.verdict {
            Verdict::Clean(o) | Verdict::Torn(o) => Some(o),
            _ => None,
        }
    }

    /// Valid records seen.
    pub fn records(&self) -> u64 {
        self.stats.iter().map(|s| s.records).sum()
    }

    /// First and last valid seq seen.
    pub fn seq_range(&self) -> Option<(u64, u64)> {
        let first = self.stats.iter().find_map(|s| s.seq)?.0;
        let last = self.stats.iter().rev().find_map(|s| s.seq)?.1;
        Some((first, last))
    }

    /// Lowest and highest epoch seen.
    pub fn epoch_range(&self) -> Option<(u64, u64)> {
        self.stats
            .iter()
            .filter_map(|s| s.epoch)
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
    }
}

/// A short lowercase name for a record kind.
pub fn kind_name(k: RecordKind) -> &'static str {
    match k {
        RecordKind::Data => "data",
        RecordKind::Barrier => "barrier",
        RecordKind::Checkpoint => "checkpoint",
        RecordKind::Commit => "commit",
        RecordKind::Close => "close",
        _ => "other",
    }
}

/// Hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn io_fail(what: &str, path: &Path, e: io::Error) -> Fail {
    Fail::new(EXIT_ERROR, format!("{what} {}: {e}", path.display()))
}

/// Read at most `limit` bytes from the start of `path`.
pub fn read_prefix(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let f = File::open(path)?;
    let len = f.metadata()?.len().min(limit);
    let mut v = Vec::with_capacity(len as usize);
    f.take(len).read_to_end(&mut v)?;
    Ok(v)
}

/// Read a segment file: its bytes up to the largest segment size a header
/// can declare (what recovery reads).
pub fn read_segment(path: &Path) -> Result<Vec<u8>, Fail> {
    read_prefix(path, MAX_SEGMENT_SIZE).map_err(|e| io_fail("cannot read", path, e))
}

fn read_head(path: &Path) -> Result<Vec<u8>, Fail> {
    read_prefix(path, BLOCK as u64).map_err(|e| io_fail("cannot read", path, e))
}

impl LogDir {
    /// Open `path` for reading. Fails with exit status 2 if it is not a
    /// shardwal log (no readable, valid `LOG_ID`). Never creates anything.
    pub fn open(path: &Path) -> Result<LogDir, Fail> {
        if !path.is_dir() {
            return Err(Fail::new(
                EXIT_ERROR,
                format!("{} is not a directory", path.display()),
            ));
        }
        let id_path = path.join(LOG_ID_FILE);
        let bytes = match read_prefix(&id_path, log_id::LOG_ID_LEN as u64) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Fail::new(
                    EXIT_ERROR,
                    format!(
                        "{} is not a shardwal log: it has no {LOG_ID_FILE} file",
                        path.display()
                    ),
                ));
            }
            Err(e) => return Err(io_fail("cannot read", &id_path, e)),
        };
        let log_id = log_id::decode(&bytes).map_err(|d| {
            Fail::new(
                EXIT_ERROR,
                format!("{} is not a usable shardwal log: {d}", path.display()),
            )
        })?;
        let names = ro::list(path).map_err(|e| io_fail("cannot list", path, e))?;
        let mut shards: Vec<u32> = names
            .iter()
            .filter_map(|n| shardwal::segment::parse_shard_dir_name(n))
            .filter(|i| shard_dir(path, ShardId(*i)).is_dir())
            .collect();
        shards.sort_unstable();
        shards.dedup();
        let layout = block_on(shardwal::layout::read(&ReadOnly, path, log_id))
            .map_err(|e| Fail::new(EXIT_ERROR, format!("{}: {e}", path.display())))?
            .unwrap_or_else(|| Layout::implicit(log_id, &shards));
        Ok(LogDir {
            path: path.to_path_buf(),
            log_id,
            shards,
            layout,
        })
    }

    /// The number of shards the log is written by (its layout's written
    /// shards; without a `LAYOUT` file, one past the highest shard
    /// directory). Opening it with another number re-shards it.
    pub fn shard_count(&self) -> usize {
        self.layout.active() as usize
    }

    /// The sealed epoch recovery would compute from each shard's
    /// `last_barrier` (retired shards do not count; see
    /// `shardwal::layout`), at least `floor`.
    pub fn sealed_epoch(&self, floor: u64, last_barrier: impl Fn(u32) -> Option<u64>) -> u64 {
        self.layout
            .sealed(floor, |s| last_barrier(s).unwrap_or(floor).max(floor))
    }

    /// The directory of shard `s`.
    pub fn shard_dir(&self, s: u32) -> PathBuf {
        shard_dir(&self.path, ShardId(s))
    }

    /// Every manifest file, ascending by id, each read and validated (the
    /// runtime's rules: CRC, rkyv, id matches the name, log id matches).
    pub fn manifests(&self) -> Result<Vec<ManifestEntry>, Fail> {
        let ids = block_on(manifest::list(&ReadOnly, &self.path))
            .map_err(|e| Fail::new(EXIT_ERROR, e.to_string()))?;
        Ok(ids
            .into_iter()
            .map(|id| {
                let result = block_on(manifest::read(&ReadOnly, &self.path, id))
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        if m.log_id == self.log_id {
                            Ok(m)
                        } else {
                            Err("manifest belongs to another log".to_string())
                        }
                    });
                ManifestEntry {
                    id,
                    path: self
                        .path
                        .join(CHECKPOINT_DIR)
                        .join(manifest::manifest_name(id)),
                    result,
                }
            })
            .collect())
    }

    /// The segment files of shard `s`, in index order.
    pub fn segment_files(&self, s: u32) -> Result<Vec<SegFile>, Fail> {
        let dir = self.shard_dir(s);
        let names = match ro::list(&dir) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_fail("cannot list", &dir, e)),
        };
        let mut v = Vec::new();
        for name in names {
            let Some(index) = parse_segment_name(&name) else {
                continue;
            };
            let path = dir.join(&name);
            let md = std::fs::metadata(&path).map_err(|e| io_fail("cannot stat", &path, e))?;
            v.push(SegFile {
                index,
                name,
                path,
                len: md.len(),
                allocated: md.blocks() * 512,
            });
        }
        v.sort_by_key(|f| f.index);
        Ok(v)
    }

    /// Scan shard `s` read-only with the recovery scanner.
    ///
    /// With `from_seq`, leading segments are skipped exactly as the runtime
    /// skips them when it recovers from a checkpoint (while the next
    /// segment's header is ours and starts at or before `from_seq`); with
    /// `None`, every segment is read (a full CRC scan). `on_frame` sees
    /// every valid frame in log order with its segment index and offset;
    /// returning `false` stops the scan after the current segment
    /// ([`Verdict::Stopped`]).
    pub fn scan_shard(
        &self,
        s: u32,
        from_seq: Option<u64>,
        progress: &mut Progress,
        mut on_frame: impl FnMut(&Frame<'_>, u64, usize) -> bool,
    ) -> Result<ShardScan, Fail> {
        let dir = self.shard_dir(s);
        let files = self.segment_files(s)?;
        let exp = Expect {
            log_id: self.log_id,
            shard: s,
            max_payload: MAX_RECORD_HARD,
        };
        let mut headers = Vec::with_capacity(files.len());
        for f in &files {
            headers.push(SegmentHeader::decode(&read_head(&f.path)?));
        }
        let ours = |h: &Result<SegmentHeader, HeaderError>| {
            h.as_ref()
                .ok()
                .filter(|h| h.log_id == self.log_id && h.shard == s)
                .copied()
        };
        let mut skip = 0;
        if let Some(from) = from_seq {
            while skip + 1 < files.len() {
                match ours(&headers[skip + 1]) {
                    Some(h) if h.first_seq <= from => skip += 1,
                    _ => break,
                }
            }
        }
        let mut stats = vec![SegStats::default(); files.len()];
        for f in &files[..skip] {
            progress.add(f.len);
        }
        let mut scanner = Scanner::new(exp);
        let mut verdict = None;
        let mut halted = false;
        for k in skip..files.len() {
            let bytes = read_segment(&files[k].path)?;
            let next_head = match files.get(k + 1) {
                Some(n) => Some(read_head(&n.path)?),
                None => None,
            };
            let seg = SegmentBytes {
                index: files[k].index,
                path: files[k].path.clone(),
                bytes: &bytes,
            };
            let cur = &mut stats[k];
            cur.scanned = true;
            let stop = scanner.feed(&seg, next_head.as_deref(), |f, index, offset| {
                cur.observe(f, offset);
                if !halted && !on_frame(f, index, offset) {
                    halted = true;
                }
            });
            progress.add(files[k].len);
            drop(bytes);
            if let Some(mut stop) = stop {
                if halted {
                    verdict = Some(Verdict::Stopped);
                    break;
                }
                for later in &files[k + 1..] {
                    let lb = read_segment(&later.path)?;
                    stop.consider_later(
                        &SegmentBytes {
                            index: later.index,
                            path: later.path.clone(),
                            bytes: &lb,
                        },
                        &exp,
                    );
                    progress.add(later.len);
                }
                verdict = Some(match scanner.decide(stop) {
                    Ok(o) if o.torn.is_some() => Verdict::Torn(o),
                    Ok(o) => Verdict::Clean(o),
                    Err(c) => Verdict::Corrupt(c),
                });
                break;
            }
            if halted {
                verdict = Some(Verdict::Stopped);
                break;
            }
        }
        let verdict = verdict.unwrap_or_else(|| Verdict::Clean(scanner.finish()));
        Ok(ShardScan {
            shard: s,
            dir,
            files,
            headers,
            stats,
            skipped: skip,
            verdict,
        })
    }

    /// Bytes of every file under the log directory: (apparent size,
    /// allocated on disk, number of files).
    pub fn disk_usage(&self) -> (u64, u64, u64) {
        fn walk(p: &Path, acc: &mut (u64, u64, u64)) {
            let Ok(rd) = std::fs::read_dir(p) else {
                return;
            };
            for e in rd.flatten() {
                let Ok(md) = e.metadata() else { continue };
                if md.is_dir() {
                    walk(&e.path(), acc);
                } else {
                    acc.0 += md.len();
                    acc.1 += md.blocks() * 512;
                    acc.2 += 1;
                }
            }
        }
        let mut acc = (0, 0, 0);
        walk(&self.path, &mut acc);
        acc
    }

    /// Total length of every segment file of the given shards (for progress).
    pub fn segment_bytes(&self, shards: &[u32]) -> u64 {
        shards
            .iter()
            .filter_map(|s| self.segment_files(*s).ok())
            .flatten()
            .map(|f| f.len)
            .sum()
    }
}
