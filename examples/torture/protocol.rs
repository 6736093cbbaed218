//! The lines a child writes to the parent, parsed.

/// A line the child wrote. Each is written (one `write(2)`) only once
/// what it says holds, so whatever the parent reads before the kill is
/// exactly what the child reported.
#[derive(Debug, Clone)]
pub(crate) enum Line {
    /// `BEGIN`: the child is about to call `Runtime::start` / `ShardLog::open`.
    Begin,
    /// `STARTED sealed`: `Runtime::start` returned.
    Started,
    /// `RESTORED s sealed from until checkpoint snap_count replayed offset`:
    /// what core `s` restored (its replay plan, its snapshot's count, the
    /// inputs it replayed, the offset it resumes its input at).
    Restored(Restored),
    /// `FAIL ...`: the child found something wrong itself.
    Fail(String),
    /// `COUNT s e first n`: written before `barrier(e)` is logged on shard
    /// `s`: epoch `e` holds its inputs `first..first + n`.
    Count { s: u32, e: u64, first: u64, n: u64 },
    /// `SEALED e`: the coordinator's sealed watermark reached `e`.
    Sealed(u64),
    /// `CKPT id e`: checkpoint `id` (at epoch `e`) has a durable manifest.
    Ckpt { id: u64, epoch: u64 },
    /// `SNAP_BEGIN s id`: shard `s` begins streaming its snapshot of `id`.
    SnapBegin { s: u32, id: u64 },
    /// `SNAP_END s id`: `SnapshotWriter::finish` returned (snapshot and
    /// marker durable).
    SnapEnd { s: u32, id: u64 },
    /// `SNAP_FAIL s id ...`: the snapshot failed.
    SnapFail { s: u32, id: u64 },
    /// `READY s next`: append workload, `ShardLog::open` of shard `s`
    /// returned, the log resumes at seq `next`.
    Ready { s: u32, next: u64 },
    /// `A s seq`: record `seq` appended to shard `s` (not yet written).
    Appended { s: u32, seq: u64 },
    /// `D s seq`: `wait_durable` of record `seq` of shard `s` resolved.
    Durable { s: u32, seq: u64 },
    /// Anything else (a line cut by the kill, or output not ours).
    Other,
}

/// What a runtime child's core restored, as it reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Restored {
    pub(crate) shard: u32,
    pub(crate) sealed: u64,
    pub(crate) from: u64,
    pub(crate) until: u64,
    pub(crate) checkpoint: u64,
    pub(crate) snap_count: u64,
    pub(crate) replayed: u64,
    pub(crate) offset: u64,
}

pub(crate) fn parse_line(l: &str) -> Line {
    let w: Vec<&str> = l.split_whitespace().collect();
    let n = |i: usize| w.get(i).and_then(|x| x.parse::<u64>().ok());
    let parsed = match w.first().copied() {
        Some("BEGIN") => Some(Line::Begin),
        Some("STARTED") => Some(Line::Started),
        Some("FAIL") => Some(Line::Fail(l.to_string())),
        Some("SNAP_FAIL") => (|| {
            Some(Line::SnapFail {
                s: n(1)? as u32,
                id: n(2)?,
            })
        })(),
        Some("RESTORED") => (|| {
            Some(Line::Restored(Restored {
                shard: n(1)? as u32,
                sealed: n(2)?,
                from: n(3)?,
                until: n(4)?,
                checkpoint: n(5)?,
                snap_count: n(6)?,
                replayed: n(7)?,
                offset: n(8)?,
            }))
        })(),
        Some("COUNT") => (|| {
            Some(Line::Count {
                s: n(1)? as u32,
                e: n(2)?,
                first: n(3)?,
                n: n(4)?,
            })
        })(),
        Some("SEALED") => n(1).map(Line::Sealed),
        Some("CKPT") => (|| {
            Some(Line::Ckpt {
                id: n(1)?,
                epoch: n(2)?,
            })
        })(),
        Some("SNAP_BEGIN") => (|| {
            Some(Line::SnapBegin {
                s: n(1)? as u32,
                id: n(2)?,
            })
        })(),
        Some("SNAP_END") => (|| {
            Some(Line::SnapEnd {
                s: n(1)? as u32,
                id: n(2)?,
            })
        })(),
        Some("READY") => (|| {
            Some(Line::Ready {
                s: n(1)? as u32,
                next: n(2)?,
            })
        })(),
        Some("A") => (|| {
            Some(Line::Appended {
                s: n(1)? as u32,
                seq: n(2)?,
            })
        })(),
        Some("D") => (|| {
            Some(Line::Durable {
                s: n(1)? as u32,
                seq: n(2)?,
            })
        })(),
        _ => None,
    };
    // A line cut by the kill does not parse: it reported nothing.
    parsed.unwrap_or(Line::Other)
}
