//! What the children write: data payloads that say where they belong, and
//! snapshots that say what they hold, each checkable byte for byte.

use shardwal::rng::SplitMix;

/// Bytes derived from `seed`.
pub(crate) fn fill(seed: u64, out: &mut Vec<u8>, len: usize) {
    let mut rng = SplitMix(seed);
    while out.len() < len {
        let x = rng.next_u64().to_le_bytes();
        let k = (len - out.len()).min(8);
        out.extend_from_slice(&x[..k]);
    }
}

/// Size of the fixed part of a runtime data payload.
pub(crate) const INPUT_HEADER: usize = 4 + 8 + 8;

/// A runtime data record: input `input` of shard `shard`, logged in `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Input {
    pub(crate) shard: u32,
    pub(crate) epoch: u64,
    pub(crate) input: u64,
}

pub(crate) fn input_seed(d: Input) -> u64 {
    (u64::from(d.shard) << 48) ^ d.epoch.wrapping_mul(0x9E37_79B9) ^ d.input.rotate_left(17)
}

/// The payload of `d`: its fields, then up to 200 bytes derived from them.
pub(crate) fn input_payload(d: Input) -> Vec<u8> {
    let pad = (SplitMix(d.input ^ 0xabcd).next_u64() % 201) as usize;
    let mut v = Vec::with_capacity(INPUT_HEADER + pad);
    v.extend_from_slice(&d.shard.to_le_bytes());
    v.extend_from_slice(&d.epoch.to_le_bytes());
    v.extend_from_slice(&d.input.to_le_bytes());
    fill(input_seed(d), &mut v, INPUT_HEADER + pad);
    v
}

/// Decode a payload made by [`input_payload`], checking every byte.
pub(crate) fn parse_input(p: &[u8]) -> Result<Input, String> {
    if p.len() < INPUT_HEADER {
        return Err(format!("a data payload of {} bytes", p.len()));
    }
    let u64_at = |i: usize| u64::from_le_bytes(p[i..i + 8].try_into().expect("8 bytes"));
    let d = Input {
        shard: u32::from_le_bytes(p[0..4].try_into().expect("4 bytes")),
        epoch: u64_at(4),
        input: u64_at(12),
    };
    if input_payload(d) != p {
        return Err(format!("the payload of {d:?} is not the one appended"));
    }
    Ok(d)
}

/// The payload of record `seq` of shard `shard` in the append workload.
pub(crate) fn append_payload(shard: u32, seq: u64) -> Vec<u8> {
    let len = 12 + (SplitMix(seq ^ 0x5eed).next_u64() % 189) as usize;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&shard.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    fill(
        (u64::from(shard) << 56) ^ seq.wrapping_mul(0x2545_F491),
        &mut v,
        len,
    );
    v
}

/// Magic of a torture snapshot.
pub(crate) const SNAP_MAGIC: &[u8; 8] = b"TORTSNAP";
/// Size of a snapshot's fixed part: magic, shard, checkpoint, count.
pub(crate) const SNAP_HEADER: usize = 8 + 4 + 8 + 8;

/// The snapshot of shard `shard` at checkpoint `id` with `count` inputs
/// consumed, `len` bytes long.
pub(crate) fn snapshot_bytes(shard: u32, id: u64, count: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len.max(SNAP_HEADER));
    v.extend_from_slice(SNAP_MAGIC);
    v.extend_from_slice(&shard.to_le_bytes());
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&count.to_le_bytes());
    fill(
        count ^ (id << 20) ^ u64::from(shard),
        &mut v,
        len.max(SNAP_HEADER),
    );
    v
}

/// The input count a snapshot holds, checking every byte of it.
pub(crate) fn parse_snapshot(shard: u32, id: u64, b: &[u8]) -> Result<u64, String> {
    if b.len() < SNAP_HEADER || &b[..8] != SNAP_MAGIC {
        return Err(format!(
            "shard {shard}: snapshot {id} has no torture header"
        ));
    }
    let count = u64::from_le_bytes(b[20..28].try_into().expect("8 bytes"));
    if snapshot_bytes(shard, id, count, b.len()) != b {
        return Err(format!(
            "shard {shard}: snapshot {id} ({} bytes, count {count}) holds other bytes",
            b.len()
        ));
    }
    Ok(count)
}

/// Name of shard `s`'s input source in commit records.
pub(crate) fn source(s: u32) -> String {
    format!("input-{s}")
}
