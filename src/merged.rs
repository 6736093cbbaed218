//! One iterator over several shards' records in (epoch, shard, seq) order, for
//! a single consumer. It streams: each shard's reader holds one segment, so
//! memory is bounded by `shards x segment size`, whatever the log's length.

use std::path::Path;

use crate::error::Result;
use crate::ids::{Seq, ShardId};
use crate::io::Storage;
use crate::reader::{Record, ShardReader};

/// Merged reader over a set of shards.
pub struct MergedReader<S: Storage> {
    /// In ascending shard order.
    readers: Vec<ShardReader<S>>,
    epoch: Option<u64>,
    shard: usize,
}

impl<S: Storage> MergedReader<S> {
    /// Read shards `0..ranges.len()` of the log at `log_dir`; shard `i`
    /// from `ranges[i].0` up to (excluding) `ranges[i].1`.
    pub async fn open(storage: S, log_dir: &Path, ranges: &[(Seq, Seq)]) -> Result<Self> {
        let shards: Vec<(ShardId, Seq, Seq)> = ranges
            .iter()
            .enumerate()
            .map(|(i, (from, until))| (ShardId(i as u32), *from, *until))
            .collect();
        Self::open_shards(storage, log_dir, &shards).await
    }

    /// Read the given shards of the log at `log_dir`, each from its `from`
    /// up to (excluding) its `until`, in (epoch, shard, seq) order whatever
    /// order they are listed in.
    pub async fn open_shards(
        storage: S,
        log_dir: &Path,
        shards: &[(ShardId, Seq, Seq)],
    ) -> Result<Self> {
        let mut sorted = shards.to_vec();
        sorted.sort_by_key(|(s, _, _)| *s);
        let mut readers = Vec::with_capacity(sorted.len());
        for (shard, from, until) in sorted {
            readers
                .push(ShardReader::open_range(storage.clone(), log_dir, shard, from, until).await?);
        }
        Ok(MergedReader {
            readers,
            epoch: None,
            shard: 0,
        })
    }

    /// The next record in (epoch, shard, seq) order.
    pub async fn next(&mut self) -> Result<Option<Record<'_>>> {
        let i = loop {
            let Some(e) = self.epoch else {
                let mut min = None;
                for r in &mut self.readers {
                    if let Some(l) = r.peek().await? {
                        min = Some(min.map_or(l.epoch.0, |m: u64| m.min(l.epoch.0)));
                    }
                }
                match min {
                    None => return Ok(None),
                    Some(m) => {
                        self.epoch = Some(m);
                        self.shard = 0;
                        continue;
                    }
                }
            };
            if self.shard >= self.readers.len() {
                self.epoch = None;
                continue;
            }
            match self.readers[self.shard].peek().await? {
                Some(l) if l.epoch.0 == e => break self.shard,
                _ => self.shard += 1,
            }
        };
        self.readers[i].next().await
    }
}
