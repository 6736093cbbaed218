//! The workloads, their per-thread counts, and the payloads every system
//! writes and verifies.
//!
//! Every system writes exactly the same payload bytes: record `seq` of
//! thread `t` starts with `seq` (8 bytes, little-endian) and continues with
//! pseudo-random bytes derived from `(t, seq)`. The bytes are incompressible,
//! so a peer that compresses batches (raft-engine does above 8 KiB by
//! default) gains nothing from a repeating pattern, and the recover pass can
//! check every byte of every record without keeping a copy.

use std::fmt;

use serde::Serialize;

/// One of the compared workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// Many small records, one sync at the end.
    Buffered,
    /// 4 KiB records, one sync at the end.
    Large,
    /// Small records, durable every `group` records (latency per group).
    Group,
    /// Each record durable before the next (latency per record).
    Sync,
    /// Reopen the buffered log with a cold page cache, read and verify it.
    Recover,
    /// Open a fresh, empty log and append one record.
    Open,
}

impl WorkloadKind {
    /// Every workload, in the order a repetition runs them. `recover` comes
    /// after `buffered`, whose logs it reads.
    pub const ALL: [WorkloadKind; 6] = [
        WorkloadKind::Buffered,
        WorkloadKind::Large,
        WorkloadKind::Group,
        WorkloadKind::Sync,
        WorkloadKind::Recover,
        WorkloadKind::Open,
    ];

    /// The name used in tables, JSON and file names.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Buffered => "buffered",
            WorkloadKind::Large => "large",
            WorkloadKind::Group => "group",
            WorkloadKind::Sync => "sync",
            WorkloadKind::Recover => "recover",
            WorkloadKind::Open => "open",
        }
    }

    /// Whether the workload records a latency per durable point.
    pub fn has_latency(self) -> bool {
        matches!(self, WorkloadKind::Group | WorkloadKind::Sync)
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A write workload as a thread runs it: `records` payloads of
/// `payload_bytes`, made durable every `group` records (and after the last).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WriteSpec {
    /// Which workload this is.
    pub kind: WorkloadKind,
    /// Records per thread.
    pub records: u64,
    /// Bytes per payload (at least 8: the sequence number).
    pub payload_bytes: usize,
    /// Records per durable point; `records` means one sync at the end.
    pub group: u64,
}

impl WriteSpec {
    /// Whether each durable point's latency is recorded.
    pub fn records_latency(&self) -> bool {
        self.kind.has_latency()
    }

    /// Payload bytes per thread.
    pub fn payload_total(&self) -> u64 {
        self.records * self.payload_bytes as u64
    }
}

/// The per-thread counts of every workload.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// `buffered`: records of 128 B.
    pub buffered_records: u64,
    /// `large`: records of 4 KiB.
    pub large_records: u64,
    /// `group`: records of 128 B.
    pub group_records: u64,
    /// `group`: records per durable point.
    pub group_size: u64,
    /// `sync`: records of 1 KiB.
    pub sync_records: u64,
}

/// Payload size of `buffered` and `group` (and so of the recovered log).
pub const SMALL: usize = 128;
/// Payload size of `large`.
pub const LARGE: usize = 4096;
/// Payload size of `sync`.
pub const SYNC: usize = 1024;

impl Counts {
    /// The write spec of a write workload, `None` for `recover` and `open`.
    pub fn spec(&self, kind: WorkloadKind) -> Option<WriteSpec> {
        let (records, payload_bytes, group) = match kind {
            WorkloadKind::Buffered => (self.buffered_records, SMALL, self.buffered_records),
            WorkloadKind::Large => (self.large_records, LARGE, self.large_records),
            WorkloadKind::Group => (self.group_records, SMALL, self.group_size),
            WorkloadKind::Sync => (self.sync_records, SYNC, 1),
            WorkloadKind::Recover | WorkloadKind::Open => return None,
        };
        Some(WriteSpec {
            kind,
            records,
            payload_bytes,
            group: group.max(1),
        })
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn word(thread: usize, seq: u64, i: usize) -> u64 {
    splitmix((thread as u64) << 56 ^ seq.wrapping_mul(0x1_0000_0001) ^ (i as u64) << 40)
}

/// Fill `buf` with the payload of record `seq` of `thread`.
pub fn fill(buf: &mut [u8], thread: usize, seq: u64) {
    debug_assert!(buf.len() >= 8);
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, chunk) in buf[8..].chunks_mut(8).enumerate() {
        let w = word(thread, seq, i).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// The sequence number a payload carries, if it has one.
pub fn seq_of(payload: &[u8]) -> Option<u64> {
    payload
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// Check that `payload` is record `expected` of `thread`, `len` bytes long.
pub fn verify(payload: &[u8], thread: usize, expected: u64, len: usize) -> Result<(), String> {
    if payload.len() != len {
        return Err(format!(
            "record {expected}: length {} instead of {len}",
            payload.len()
        ));
    }
    match seq_of(payload) {
        Some(s) if s == expected => {}
        other => return Err(format!("record {expected}: carries sequence {other:?}")),
    }
    for (i, chunk) in payload[8..].chunks(8).enumerate() {
        let w = word(thread, expected, i).to_le_bytes();
        if chunk != &w[..chunk.len()] {
            return Err(format!(
                "record {expected}: payload differs at byte {}",
                8 + i * 8
            ));
        }
    }
    Ok(())
}

/// Counts records as a recover pass reads them, in order, and checks each.
#[derive(Debug)]
pub struct Verifier {
    thread: usize,
    len: usize,
    /// Records checked so far (the next expected sequence number).
    pub next: u64,
}

impl Verifier {
    /// A verifier of `thread`'s records of `len` bytes, from sequence 0.
    pub fn new(thread: usize, len: usize) -> Self {
        Verifier {
            thread,
            len,
            next: 0,
        }
    }

    /// Check the next record.
    pub fn check(&mut self, payload: &[u8]) -> Result<(), String> {
        verify(payload, self.thread, self.next, self.len)?;
        self.next += 1;
        Ok(())
    }

    /// Fail unless exactly `expected` records were checked.
    pub fn finish(&self, expected: u64) -> Result<u64, String> {
        if self.next == expected {
            Ok(self.next)
        } else {
            Err(format!(
                "thread {}: read {} records, expected {expected}",
                self.thread, self.next
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_payload_verifies_and_a_flipped_byte_does_not() {
        let mut b = vec![0u8; 131];
        fill(&mut b, 1, 42);
        assert_eq!(seq_of(&b), Some(42));
        verify(&b, 1, 42, 131).unwrap();
        assert!(verify(&b, 0, 42, 131).is_err(), "another thread's record");
        assert!(verify(&b, 1, 43, 131).is_err(), "another sequence number");
        b[100] ^= 1;
        assert!(verify(&b, 1, 42, 131).is_err(), "a flipped byte");
    }

    #[test]
    fn payloads_differ_between_records() {
        let (mut a, mut b) = (vec![0u8; 128], vec![0u8; 128]);
        fill(&mut a, 0, 1);
        fill(&mut b, 0, 2);
        assert_ne!(a[8..], b[8..]);
    }
}
