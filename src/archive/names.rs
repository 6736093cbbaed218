//! Object names in the archive: the one owner of the archive's layout.
//!
//! Under a user's prefix, a log's objects live below `<prefix>/<log id>/`
//! (32 lowercase hex digits), so that two logs can share a bucket and a
//! prefix:
//!
//! - `lease/<generation>`: one per archiving writer, created with
//!   `PutMode::Create` (see `upload.rs`);
//! - `index/<generation>-<epoch>.json`: the archive's commit points (see
//!   `index.rs`), created with `PutMode::Create`;
//! - `data/<path>.<offset>-<len>.<crc>`: `len` bytes of the local file
//!   `<path>` (relative to the log directory) from byte `offset`, with their
//!   CRC32C in 8 hex digits. A name says exactly what its bytes are, so an
//!   object is never overwritten with different bytes, a restore checks
//!   every byte it downloads, and an upload retried after a failure is
//!   harmless.
//!
//! Numbers are zero-padded to 20 digits (generations to 10), so that
//! lexical order is numeric order.

use object_store::path::Path as ObjPath;

/// The log's root: `<prefix>/<log id hex>`.
pub(crate) fn log_root(prefix: &ObjPath, log_id: [u8; 16]) -> ObjPath {
    prefix.clone().join(log_id_hex(log_id))
}

/// A log id as 32 lowercase hex digits.
pub(crate) fn log_id_hex(log_id: [u8; 16]) -> String {
    log_id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse 32 hex digits back into a log id.
pub(crate) fn parse_log_id_hex(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

/// The directory of leases.
pub(crate) fn lease_dir(root: &ObjPath) -> ObjPath {
    root.clone().join("lease")
}

/// The lease of writer generation `g`.
pub(crate) fn lease(root: &ObjPath, g: u64) -> ObjPath {
    lease_dir(root).join(format!("{g:010}"))
}

/// Parse a lease's last path part.
pub(crate) fn parse_lease(name: &str) -> Option<u64> {
    (name.len() == 10 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

/// The directory of indexes.
pub(crate) fn index_dir(root: &ObjPath) -> ObjPath {
    root.clone().join("index")
}

/// The index written by generation `g` at archived epoch `epoch`.
pub(crate) fn index(root: &ObjPath, g: u64, epoch: u64) -> ObjPath {
    index_dir(root).join(format!("{g:010}-{epoch:020}.json"))
}

/// Parse an index's last path part into (generation, epoch).
pub(crate) fn parse_index(name: &str) -> Option<(u64, u64)> {
    let s = name.strip_suffix(".json")?;
    let (g, e) = s.split_once('-')?;
    if g.len() != 10 || e.len() != 20 {
        return None;
    }
    if !g.bytes().chain(e.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((g.parse().ok()?, e.parse().ok()?))
}

/// The name, relative to the log's root, of the object holding `len`
/// bytes of local file `path` from `offset`.
pub(crate) fn data(path: &str, offset: u64, len: u64, crc: u32) -> String {
    format!("data/{path}.{offset:020}-{len:020}.{crc:08x}")
}

/// The full path of `rel` (a name relative to the log's root).
pub(crate) fn under(root: &ObjPath, rel: &str) -> ObjPath {
    ObjPath::from(format!("{root}/{rel}"))
}

/// Whether `path` (relative to a log directory, as an index names it) is
/// one of the files a log directory holds: `LOG_ID`, `LAYOUT`,
/// `checkpoints/<manifest>`, or `shard-NNNN/<segment or snapshot>`. A
/// restore writes nothing else, so an index cannot make it write outside
/// the directory.
pub(crate) fn is_log_file(path: &str) -> bool {
    use crate::checkpoint::{manifest, snapshot};
    match path.split_once('/') {
        None => path == crate::log_dir::LOG_ID_FILE || path == crate::layout::LAYOUT_FILE,
        Some((dir, name)) => {
            if dir == manifest::CHECKPOINT_DIR {
                manifest::parse_manifest_name(name).is_some()
            } else {
                crate::segment::parse_shard_dir_name(dir).is_some()
                    && (crate::segment::parse_segment_name(name).is_some()
                        || snapshot::parse_snapshot_name(name).is_some())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_numerically() {
        let id = [0xab; 16];
        assert_eq!(parse_log_id_hex(&log_id_hex(id)), Some(id));
        assert_eq!(parse_log_id_hex("zz"), None);
        let root = log_root(&ObjPath::from("a/b"), id);
        let i = index(&root, 3, 42);
        assert_eq!(parse_index(i.filename().unwrap()), Some((3, 42)));
        assert!(index(&root, 3, 9).as_ref() < index(&root, 3, 10).as_ref());
        assert_eq!(parse_lease(lease(&root, 7).filename().unwrap()), Some(7));
        let d = under(
            &root,
            &data("shard-0001/00000000000000000002.seg", 4096, 10, 0xdead),
        );
        assert_eq!(
            d.as_ref(),
            format!(
                "a/b/{}/data/shard-0001/00000000000000000002.seg.{:020}-{:020}.0000dead",
                log_id_hex(id),
                4096,
                10
            )
        );
    }

    #[test]
    fn only_log_files_are_restorable_paths() {
        assert!(is_log_file("LOG_ID"));
        assert!(is_log_file("LAYOUT"));
        assert!(is_log_file("shard-0003/00000000000000000001.seg"));
        assert!(is_log_file(
            "checkpoints/manifest-00000000000000000001.ckpt"
        ));
        assert!(!is_log_file("../etc/passwd"));
        assert!(!is_log_file("shard-0003/../../x"));
        assert!(!is_log_file("/LOG_ID"));
        assert!(!is_log_file("shard-0003/sub/00000000000000000001.seg"));
    }
}
