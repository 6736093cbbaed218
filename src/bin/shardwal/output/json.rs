//! `--json` output: serde_json over small `Serialize` structs, one per
//! shape. Field order is the order of the keys in the output (the tests
//! and scripts rely on it, e.g. `{"shard":N,...}`, `"ok":..,"status":..`);
//! `Option` fields print as `null` unless marked to be left out. This
//! module holds the shapes several commands share and the printing.

use std::io::Write;

use serde::{Serialize, Serializer};

use crate::{EXIT_ERROR, Fail};

/// Print `v` as one line of JSON on stdout.
pub fn print(v: &impl Serialize) -> Result<(), Fail> {
    let s = serde_json::to_string(v)
        .map_err(|e| Fail::new(EXIT_ERROR, format!("cannot encode JSON output: {e}")))?;
    println!("{s}");
    Ok(())
}

/// Write `v` as one line of JSON to `out`.
pub fn write_line(out: &mut impl Write, v: &impl Serialize) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"\n").map_err(serde_json::Error::io)
}

/// `x` rounded to six decimals: enough for a measurement, and printed
/// without binary noise (`0.677631`, not `0.6776310000000001`).
pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// A path as the display string the text output shows.
pub fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Serialize `(key, value)` pairs as an object, keeping their order.
pub fn ordered_map<S: Serializer, V: Serialize>(
    pairs: &[(String, V)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

/// A source offset: `{"source", "offset"}`.
#[derive(Serialize)]
pub struct Offset {
    /// The source's name.
    pub source: String,
    /// Its offset.
    pub offset: u64,
}

/// Source offsets as `[{"source", "offset"}]`.
pub fn offsets(offsets: &[shardwal::SourceOffset]) -> Vec<Offset> {
    offsets
        .iter()
        .map(|o| Offset {
            source: o.source.clone(),
            offset: o.offset,
        })
        .collect()
}

/// A commit record: `{"epoch", "watermark", "offsets"}`.
#[derive(Serialize)]
pub struct Commit {
    /// The epoch it commits.
    pub epoch: u64,
    /// The engine's watermark.
    pub watermark: u64,
    /// The source offsets as of the epoch.
    pub offsets: Vec<Offset>,
}

impl From<&shardwal::CommitRecord> for Commit {
    fn from(c: &shardwal::CommitRecord) -> Commit {
        Commit {
            epoch: c.epoch,
            watermark: c.watermark,
            offsets: offsets(&c.offsets),
        }
    }
}

/// A snapshot reference: `{"file", "len", "crc"}`, the CRC as `0x%08x`.
#[derive(Serialize)]
pub struct SnapshotRef {
    /// The snapshot's file name.
    pub file: String,
    /// Its length.
    pub len: u64,
    /// Its CRC, as hex text.
    pub crc: String,
}

impl From<&shardwal::checkpoint::SnapshotRef> for SnapshotRef {
    fn from(s: &shardwal::checkpoint::SnapshotRef) -> SnapshotRef {
        SnapshotRef {
            file: s.file.clone(),
            len: s.len,
            crc: format!("{:#010x}", s.crc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Sample {
        a: &'static str,
        n: u64,
        f: f64,
        nan: f64,
        none: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        left_out: Option<u64>,
        #[serde(serialize_with = "ordered_map")]
        m: Vec<(String, u32)>,
    }

    #[test]
    fn keys_in_field_order_exact_integers_escaped_strings() {
        let s = Sample {
            a: "q\"\\\n\u{1}é",
            n: u64::MAX,
            f: 1.5,
            nan: f64::NAN,
            none: None,
            left_out: None,
            m: vec![("z".into(), 1), ("a".into(), 2)],
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"a":"q\"\\\n\u0001é","n":18446744073709551615,"f":1.5,"nan":null,"none":null,"m":{"z":1,"a":2}}"#
        );
    }
}
