//! The device's sequential limits, measured in the same run: an O_DIRECT
//! writer (aligned 1 MiB blocks, sequential positional writes with
//! `queue_depth` in flight from helper threads pinned to the same core,
//! one fdatasync at the end) for `buffered` and `large`, and an O_DIRECT
//! reader of the file it wrote for `recover`. These are not logs: no
//! framing, no verification; rows marked "device limit".

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::system::{Gate, Res, Role, System, ThreadOutcome, ctx};
use crate::workload::{WorkloadKind, WriteSpec};

const BLOCK: usize = 1 << 20;
const ALIGN: usize = 4096;
const FILE: &str = "odirect.bin";

/// The O_DIRECT sequential writer and reader.
pub struct ODirect {
    /// Blocks in flight per thread.
    pub queue_depth: usize,
    /// The CPU each thread (and its helpers) is pinned to.
    pub cpus: Vec<usize>,
}

/// A 4 KiB-aligned buffer without `unsafe`: an over-allocated `Vec` and the
/// aligned window inside it.
struct Aligned {
    v: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let v = vec![0u8; len + ALIGN];
        let off = v.as_ptr().align_offset(ALIGN);
        Aligned { v, off, len }
    }
    fn bytes(&self) -> &[u8] {
        &self.v[self.off..self.off + self.len]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.v[self.off..self.off + self.len]
    }
}

impl ODirect {
    fn pin(&self, thread: usize) {
        let cpu = self.cpus[thread % self.cpus.len()];
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }

    /// Run `job(block_index)` for every block, `queue_depth` at a time.
    fn parallel(
        &self,
        thread: usize,
        blocks: u64,
        job: &(dyn Fn(u64, &mut Aligned) -> Res<()> + Sync),
    ) -> Res<()> {
        let next = AtomicU64::new(0);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..self.queue_depth.max(1))
                .map(|_| {
                    s.spawn(|| {
                        self.pin(thread);
                        let mut buf = Aligned::new(BLOCK);
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= blocks {
                                return Ok(());
                            }
                            job(i, &mut buf)?;
                        }
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .map_err(|_| "O_DIRECT worker panicked".to_string())?
            })
        })
    }
}

impl System for ODirect {
    fn name(&self) -> &'static str {
        "o_direct"
    }

    fn role(&self) -> Role {
        Role::DeviceLimit
    }

    fn sync_note(&self) -> &'static str {
        "device limit, not a log: O_DIRECT pwrite of 1 MiB aligned blocks (queue depth from --odirect-qd), one fdatasync at the end; reads are O_DIRECT preads of the same blocks"
    }

    fn supports(&self, kind: WorkloadKind) -> bool {
        matches!(
            kind,
            WorkloadKind::Buffered | WorkloadKind::Large | WorkloadKind::Recover
        )
    }

    fn run_write(
        &self,
        spec: &WriteSpec,
        dir: &Path,
        thread: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome> {
        let blocks = spec.payload_total().div_ceil(BLOCK as u64);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(dir.join(FILE))
            .map_err(ctx("open O_DIRECT"))?;
        // The same incompressible bytes in every block: the device's limit,
        // not the cost of making payloads.
        let mut pattern = Aligned::new(BLOCK);
        crate::workload::fill(pattern.bytes_mut(), thread, u64::MAX);
        let pattern = pattern;
        start.wait();
        let t0 = Instant::now();
        self.parallel(thread, blocks, &|i, _buf| {
            file.write_all_at(pattern.bytes(), i * BLOCK as u64)
                .map_err(ctx("O_DIRECT write"))
        })?;
        file.sync_data().map_err(ctx("fdatasync"))?;
        let elapsed = t0.elapsed();
        Ok(ThreadOutcome::timed(
            spec.records,
            blocks * BLOCK as u64,
            elapsed,
        ))
    }

    fn run_recover(
        &self,
        dir: &Path,
        thread: usize,
        records: u64,
        _payload_bytes: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome> {
        start.wait();
        let t0 = Instant::now();
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(dir.join(FILE))
            .map_err(ctx("open O_DIRECT"))?;
        let opened = t0.elapsed();
        let len = file.metadata().map_err(ctx("stat"))?.len();
        let blocks = len.div_ceil(BLOCK as u64);
        let read = AtomicU64::new(0);
        self.parallel(thread, blocks, &|i, buf| {
            let n = read_block(&file, i * BLOCK as u64, buf.bytes_mut())?;
            read.fetch_add(n as u64, Ordering::Relaxed);
            Ok(())
        })?;
        let elapsed = t0.elapsed();
        Ok(ThreadOutcome {
            open: Some(opened),
            ..ThreadOutcome::timed(records, read.into_inner(), elapsed)
        })
    }

    fn run_open(&self, _dir: &Path, _thread: usize, _start: &Gate) -> Res<ThreadOutcome> {
        Err("o_direct has no open workload".into())
    }
}

fn read_block(file: &File, off: u64, buf: &mut [u8]) -> Res<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("O_DIRECT read: {e}")),
        }
    }
    Ok(done)
}
