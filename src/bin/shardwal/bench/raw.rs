//! The O_DIRECT baselines: what the device does with sequential 1 MiB
//! writes and reads, with no log in the way.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

use shardwal::io::AlignedBuf;

use super::measure::Measure;
use super::setup::err;
use crate::Fail;

/// O_DIRECT sequential write of `total` bytes (rounded up to 1 MiB blocks)
/// then fdatasync, and a sequential O_DIRECT read of the file; each timed
/// per 1 MiB block.
pub(super) fn direct_write_read(path: &Path, total: u64) -> Result<(Measure, Measure), Fail> {
    let w = direct_write(path, total)?;
    let r = direct_read(path, "raw_direct_read")?;
    Ok((w, r))
}

/// O_DIRECT sequential write of `total` bytes (rounded up to 1 MiB blocks)
/// then fdatasync, timed per 1 MiB block.
pub(super) fn direct_write(path: &Path, total: u64) -> Result<Measure, Fail> {
    const B: usize = 1 << 20;
    let blocks = total.div_ceil(B as u64).max(1);
    let mut buf = AlignedBuf::zeroed(B);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i * 13 + 1) as u8;
    }
    let mut w = Measure::new("raw_direct_write");
    {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .map_err(|e| err(path, e))?;
        let start = Instant::now();
        for k in 0..blocks {
            let t0 = Instant::now();
            f.write_all_at(&buf, k * B as u64)
                .map_err(|e| err(path, e))?;
            w.record(t0.elapsed());
        }
        f.sync_data().map_err(|e| err(path, e))?;
        w.elapsed = start.elapsed();
        w.ops = blocks;
        w.bytes = blocks * B as u64;
    }
    Ok(w)
}

/// Sequential O_DIRECT read of a file in 1 MiB blocks (one op per block).
fn direct_read(path: &Path, system: &'static str) -> Result<Measure, Fail> {
    let mut m = Measure::new(system);
    direct_read_into(path, &mut m)?;
    Ok(m)
}

/// Add a sequential O_DIRECT read of `path` in 1 MiB blocks to `m`.
pub(super) fn direct_read_into(path: &Path, m: &mut Measure) -> Result<(), Fail> {
    const B: usize = 1 << 20;
    let mut buf = AlignedBuf::zeroed(B);
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| err(path, e))?;
    let start = Instant::now();
    let mut off = 0u64;
    loop {
        let t0 = Instant::now();
        let n = f.read_at(&mut buf, off).map_err(|e| err(path, e))?;
        if n == 0 {
            break;
        }
        m.record(t0.elapsed());
        m.ops += 1;
        m.bytes += n as u64;
        off += n as u64;
        if n < B {
            break;
        }
    }
    m.elapsed += start.elapsed();
    Ok(())
}
