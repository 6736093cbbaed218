//! Read-only access to a log directory, shared by the subcommands: the log
//! id, the shard directories, the manifests, and the scan of one shard.
//! The scan is the library's own ([`shardwal::recovery::shard::scan`], the
//! streaming recovery scan with its table of cases) run on
//! [`ReadOnlyStorage`]; this module only gathers per-file statistics for
//! display. It holds no recovery rule of its own: the sealed epoch, the
//! cut and the manifest in use come from [`shardwal::recovery::plan`].
//!
//! Nothing here writes: every file is read through [`ReadOnlyStorage`],
//! which refuses any change.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use futures_lite::future::block_on;
use shardwal::checkpoint::Manifest;
use shardwal::checkpoint::manifest::{self, CHECKPOINT_DIR};
use shardwal::format::frame::Frame;
use shardwal::format::segment_header::{HeaderError, SegmentHeader};
use shardwal::format::{BLOCK, MAX_RECORD_HARD};
use shardwal::io::std_fs::pread_buf;
use shardwal::log_dir::LOG_ID_FILE;
use shardwal::recovery::plan::{self, Manifests, Scope};
use shardwal::recovery::shard::{self as shard_scan, ScanOptions, Scanned};
use shardwal::recovery::{Corrupt, Expect, ScanOutcome};
use shardwal::segment::{parse_segment_name, shard_dir};
use shardwal::{Error, Layout, ReadOnlyStorage, RecordKind, Seq, ShardId, Storage};

use crate::output::progress::Progress;
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
    /// What a runtime of the log's own shard count would recover (the
    /// planner's first step).
    pub scope: Scope,
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
        let (s, e) = (f.meta.seq.0, f.meta.epoch.0);
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
    /// The library's scan (what the planner takes), unless it failed.
    pub scanned: Option<Scanned>,
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

fn list(dir: &Path) -> io::Result<Vec<String>> {
    block_on(ReadOnlyStorage.list(dir))
}

/// The first block of a segment file, for display (the header's fields).
fn read_head(path: &Path) -> Result<Vec<u8>, Fail> {
    let f = std::fs::File::open(path).map_err(|e| io_fail("cannot open", path, e))?;
    let b = pread_buf(&f, 0, BLOCK).map_err(|e| io_fail("cannot read", path, e))?;
    Ok(b.to_vec())
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
        let log_id = block_on(shardwal::log_dir::load(&ReadOnlyStorage, path)).map_err(|e| {
            Fail::new(
                EXIT_ERROR,
                match e {
                    Error::NotALog { detail, .. } if !path.join(LOG_ID_FILE).exists() => {
                        format!("{} is not a shardwal log: {detail}", path.display())
                    }
                    Error::NotALog { detail, .. } => {
                        format!("{} is not a usable shardwal log: {detail}", path.display())
                    }
                    other => other.to_string(),
                },
            )
        })?;
        let names = list(path).map_err(|e| io_fail("cannot list", path, e))?;
        let mut shards: Vec<u32> = names
            .iter()
            .filter_map(|n| shardwal::segment::parse_shard_dir_name(n))
            .filter(|i| shard_dir(path, *i).is_dir())
            .map(|i| i.0)
            .collect();
        shards.sort_unstable();
        shards.dedup();
        let loaded = block_on(shardwal::layout::read(&ReadOnlyStorage, path, log_id))
            .map_err(|e| Fail::new(EXIT_ERROR, format!("{}: {e}", path.display())))?;
        let ids: Vec<ShardId> = shards.iter().copied().map(ShardId).collect();
        let scope = plan::own_scope(log_id, loaded, &ids)
            .map_err(|e| Fail::new(EXIT_ERROR, format!("{}: {e}", path.display())))?;
        let layout = scope.old.clone();
        Ok(LogDir {
            path: path.to_path_buf(),
            log_id,
            shards,
            layout,
            scope,
        })
    }

    /// The number of shards the log is written by (its layout's written
    /// shards; without a `LAYOUT` file, one past the highest shard
    /// directory). Opening it with another number re-shards it.
    pub fn shard_count(&self) -> usize {
        self.layout.active() as usize
    }

    /// The directory of shard `s`.
    pub fn shard_dir(&self, s: u32) -> PathBuf {
        shard_dir(&self.path, ShardId(s))
    }

    /// Every manifest file, ascending by id, each read and validated, and
    /// the library's sorting of them ([`Manifests`]: the one in use, the
    /// ones skipped). An entry is valid exactly when recovery would retain it.
    pub fn manifests(&self) -> Result<(Vec<ManifestEntry>, Manifests), Fail> {
        let ids = block_on(manifest::list(&ReadOnlyStorage, &self.path))
            .map_err(|e| Fail::new(EXIT_ERROR, e.to_string()))?;
        let found = ids.into_iter().map(|id| {
            (
                id,
                block_on(manifest::read(&ReadOnlyStorage, &self.path, id)),
            )
        });
        let set = Manifests::from_found(self.log_id, found);
        let mut entries: Vec<ManifestEntry> = set
            .retained
            .iter()
            .map(|m| (m.checkpoint, Ok(m.clone())))
            .chain(set.failed.iter().map(|(id, e)| (id.0, Err(e.clone()))))
            .map(|(id, result)| ManifestEntry {
                id,
                path: self
                    .path
                    .join(CHECKPOINT_DIR)
                    .join(manifest::manifest_name(id)),
                result,
            })
            .collect();
        entries.sort_by_key(|e| e.id);
        Ok((entries, set))
    }

    /// The segment files of shard `s`, in index order.
    pub fn segment_files(&self, s: u32) -> Result<Vec<SegFile>, Fail> {
        let dir = self.shard_dir(s);
        let names = match list(&dir) {
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

    /// Scan shard `s` read-only with the library's recovery scan.
    ///
    /// With `from_seq`, leading segments are skipped exactly as the runtime
    /// skips them when it recovers from a checkpoint; with `None`, every
    /// segment is read (a full CRC scan). `on_frame` sees every valid frame
    /// in log order with its segment index and offset; returning `false`
    /// stops the scan after the current segment ([`Verdict::Stopped`]).
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
            shard: ShardId(s),
            max_payload: MAX_RECORD_HARD,
        };
        let mut headers = Vec::with_capacity(files.len());
        for f in &files {
            headers.push(SegmentHeader::decode(&read_head(&f.path)?));
        }
        let mut stats = vec![SegStats::default(); files.len()];
        let progress_base = progress.done();
        let opts = ScanOptions {
            from_seq: from_seq.map(Seq),
            repair: false,
        };
        let scanned = block_on(shard_scan::scan(
            &ReadOnlyStorage,
            &dir,
            exp,
            opts,
            |f, index, offset| {
                if let Some(k) = files.iter().position(|x| x.index == index) {
                    stats[k].scanned = true;
                    stats[k].observe(f, offset);
                }
                progress.add(f.len as u64);
                on_frame(f, index, offset)
            },
        ));
        // The shard's files are done, whatever part of them held frames.
        progress.set(progress_base + files.iter().map(|f| f.len).sum::<u64>());
        let (verdict, skipped, scan) = match scanned {
            Ok(sc) => {
                let v = if sc.stopped {
                    Verdict::Stopped
                } else if sc.outcome.torn.is_some() {
                    Verdict::Torn(sc.outcome.clone())
                } else {
                    Verdict::Clean(sc.outcome.clone())
                };
                (v, sc.skipped.len(), Some(sc))
            }
            Err(Error::Corruption {
                segment,
                offset,
                cause,
                ..
            }) => {
                // Every file up to the damaged one was read.
                if let Some(k) = files.iter().position(|f| f.path == segment) {
                    for st in &mut stats[..=k] {
                        st.scanned = true;
                    }
                }
                let c = Corrupt {
                    path: segment,
                    offset,
                    cause,
                };
                (Verdict::Corrupt(c), 0, None)
            }
            Err(e) => return Err(Fail::new(EXIT_ERROR, e.to_string())),
        };
        if let Some(sc) = &scan {
            for (k, f) in files.iter().enumerate() {
                if !sc.skipped.iter().any(|x| x.index == f.index) && !sc.stopped {
                    stats[k].scanned = true;
                }
            }
        }
        Ok(ShardScan {
            shard: s,
            dir,
            files,
            headers,
            stats,
            skipped,
            verdict,
            scanned: scan,
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
