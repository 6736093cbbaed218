//! Segment files on disk: naming, listing, and the shard directory layout.
//!
//! A shard's directory is `<log>/shard-NNNN/`; its segments are named
//! `IIIIIIIIIIIIIIIIIIII.seg` with the zero-padded 20-digit segment index, so
//! lexical order is log order.

use std::path::{Path, PathBuf};

use crate::ids::ShardId;

/// File name extension of segment files.
pub const SEGMENT_EXT: &str = ".seg";

/// The directory that holds one shard's segments.
pub fn shard_dir(log_dir: &Path, shard: ShardId) -> PathBuf {
    log_dir.join(format!("shard-{:04}", shard.0))
}

/// The shard id of a shard directory's name (`shard-NNNN`), if it is one.
pub fn parse_shard_dir_name(name: &str) -> Option<ShardId> {
    let d = name.strip_prefix("shard-")?;
    (!d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .then(|| d.parse().ok().map(ShardId))
        .flatten()
}

/// The file name of segment `index`.
pub fn segment_name(index: u64) -> String {
    format!("{index:020}{SEGMENT_EXT}")
}

/// Parse a segment file name back into its index.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXT)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments among `names`, as (index, name), in log order.
pub fn segments_in(names: &[String]) -> Vec<(u64, String)> {
    let mut v: Vec<(u64, String)> = names
        .iter()
        .filter_map(|n| parse_segment_name(n).map(|i| (i, n.clone())))
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_log_order_and_round_trip() {
        let a = segment_name(9);
        let b = segment_name(10);
        assert!(a < b);
        assert_eq!(parse_segment_name(&b), Some(10));
        assert_eq!(parse_segment_name("10.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000001x.seg"), None);
    }
}
