//! How the CLI prints: tables ([`table`], comfy-table), `--json`
//! ([`json`], serde_json), the progress bar ([`progress`], indicatif) and
//! human-readable units ([`units`]). The commands decide what to print;
//! this module only decides how it looks.

pub mod json;
pub mod progress;
pub mod table;
pub mod units;
