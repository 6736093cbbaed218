//! What `verify` found, and how it is printed: one line per note, warning
//! and corruption and a verdict, or one JSON object.

use std::path::Path;

use serde::Serialize;

use crate::output::json;
use crate::{CmdResult, EXIT_CORRUPT, EXIT_OK};

/// What a finding is about.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Damage in a shard's log that recovery refuses.
    Corruption,
    /// A torn tail that recovery cuts (a warning).
    TornTail,
    /// A commit record or checkpoint marker whose payload does not decode.
    InvalidPayload,
    /// A manifest that does not validate.
    Manifest,
    /// A snapshot that does not validate against its manifest.
    Snapshot,
    /// A checkpoint whose replay position is not in the log.
    ReplayPosition,
    /// An unused manifest whose snapshot truncation removed (a warning).
    StaleManifest,
}

impl Kind {
    /// The kind in words: `torn tail`, `replay position`, ...
    fn words(self) -> &'static str {
        match self {
            Kind::Corruption => "corruption",
            Kind::TornTail => "torn tail",
            Kind::InvalidPayload => "invalid payload",
            Kind::Manifest => "manifest",
            Kind::Snapshot => "snapshot",
            Kind::ReplayPosition => "replay position",
            Kind::StaleManifest => "stale manifest",
        }
    }
}

/// One problem: a corruption or a warning.
#[derive(Serialize)]
pub struct Finding {
    /// What it is about.
    pub kind: Kind,
    /// The shard it concerns, if one.
    pub shard: Option<u32>,
    /// The file (a segment, a manifest, a snapshot, a shard directory).
    pub file: String,
    /// The byte offset in the file, if known.
    pub offset: Option<u64>,
    /// What is wrong.
    pub detail: String,
}

impl Finding {
    /// One line: `CORRUPTION in shard 0, segment F, offset N: detail`,
    /// `WARNING: torn tail in shard 1, segment F, offset N: detail`, ...
    fn line(&self, level: &str) -> String {
        let mut s = match (level, self.kind) {
            ("CORRUPTION", Kind::Corruption) => "CORRUPTION".to_string(),
            (l, k) => format!("{l}: {}", k.words()),
        };
        if let Some(sh) = self.shard {
            s += &format!(" in shard {sh}");
        }
        let what = if self.file.ends_with(shardwal::segment::SEGMENT_EXT) {
            "segment"
        } else {
            "file"
        };
        s += &format!(", {what} {}", self.file);
        if let Some(o) = self.offset {
            s += &format!(", offset {o}");
        }
        s + &format!(": {}", self.detail)
    }
}

/// A shard's scan in the JSON report.
#[derive(Serialize)]
pub struct ShardJson {
    /// The shard.
    pub shard: u32,
    /// `clean`, `torn_tail` or `corrupt`.
    pub status: &'static str,
    /// Segment files.
    pub segments: usize,
    /// Valid records.
    pub records: u64,
    /// Bytes of valid frames.
    pub bytes: u64,
}

/// A manifest in the JSON report.
#[derive(Serialize)]
pub struct ManifestJson {
    /// Its checkpoint id.
    pub id: u64,
    /// Whether it validates.
    pub valid: bool,
    /// Its epoch, when valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Why it does not validate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A snapshot in the JSON report.
#[derive(Serialize)]
pub struct SnapshotJson {
    /// The checkpoint that refers to it.
    pub checkpoint: u64,
    /// Its shard.
    pub shard: u32,
    /// Its path.
    pub file: String,
    /// Whether it validates.
    pub ok: bool,
}

/// Everything `verify` found, in the order it was found.
#[derive(Default)]
pub struct Report {
    /// Corruption: exit status 1.
    pub errors: Vec<Finding>,
    /// Warnings: exit status 0.
    pub warnings: Vec<Finding>,
    /// One line per shard, manifest and snapshot checked (text output).
    pub notes: Vec<String>,
    /// Per shard (JSON output).
    pub shards: Vec<ShardJson>,
    /// Per manifest (JSON output).
    pub manifests: Vec<ManifestJson>,
    /// Per snapshot (JSON output).
    pub snapshots: Vec<SnapshotJson>,
}

/// `verify --json`.
#[derive(Serialize)]
struct VerifyJson<'a> {
    dir: String,
    ok: bool,
    status: &'static str,
    errors: &'a [Finding],
    warnings: &'a [Finding],
    shards: &'a [ShardJson],
    manifests: &'a [ManifestJson],
    snapshots: &'a [SnapshotJson],
}

impl Report {
    /// `corrupt`, `torn_tail` or `clean`.
    fn status(&self) -> &'static str {
        if !self.errors.is_empty() {
            "corrupt"
        } else if self.warnings.iter().any(|w| w.kind == Kind::TornTail) {
            "torn_tail"
        } else {
            "clean"
        }
    }

    /// Print the report on stdout and return the exit status: 1 if
    /// anything is corrupt, else 0.
    pub fn print(&self, dir: &Path, json: bool) -> CmdResult {
        let code = if self.errors.is_empty() {
            EXIT_OK
        } else {
            EXIT_CORRUPT
        };
        if json {
            json::print(&VerifyJson {
                dir: json::path(dir),
                ok: self.errors.is_empty(),
                status: self.status(),
                errors: &self.errors,
                warnings: &self.warnings,
                shards: &self.shards,
                manifests: &self.manifests,
                snapshots: &self.snapshots,
            })?;
            return Ok(code);
        }
        for n in &self.notes {
            println!("{n}");
        }
        for w in &self.warnings {
            println!("{}", w.line("WARNING"));
        }
        for e in &self.errors {
            println!("{}", e.line("CORRUPTION"));
        }
        match (self.errors.len(), self.warnings.len()) {
            (0, 0) => println!("verify: OK"),
            (0, w) => println!("verify: OK with {w} warning(s)"),
            (e, _) => println!("verify: FAILED, {e} problem(s) found"),
        }
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_shard_file_and_offset() {
        let f = Finding {
            kind: Kind::TornTail,
            shard: Some(1),
            file: "d/shard-0001/00000000000000000006.seg".into(),
            offset: Some(31136),
            detail: "short frame".into(),
        };
        assert_eq!(
            f.line("WARNING"),
            "WARNING: torn tail in shard 1, segment d/shard-0001/00000000000000000006.seg, \
             offset 31136: short frame"
        );
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"kind":"torn_tail","shard":1,"file":"d/shard-0001/00000000000000000006.seg","offset":31136,"detail":"short frame"}"#
        );
    }
}
