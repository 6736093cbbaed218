//! The hand-written baseline: one file per thread, each record framed as
//! `len: u32 LE | crc32c(len ‖ payload): u32 LE | payload`, written through
//! a default `BufWriter<File>`; a durable point is `flush` + `File::sync_data`
//! (fdatasync). The recover pass reads the file through a `BufReader`,
//! checks each frame's CRC and bounds its length, and verifies the payload,
//! so that its work is comparable to a WAL's.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::Path;
use std::time::Instant;

use crate::system::{Gate, Res, Role, Sink, System, ThreadOutcome, ctx, drive, drive_open};
use crate::workload::{Verifier, WriteSpec};

const FILE: &str = "raw.log";
/// Largest payload the reader accepts (a length read from disk is bounded).
const MAX_PAYLOAD: usize = 64 << 20;

/// The raw `BufWriter` + `fdatasync` baseline.
pub struct Raw;

struct RawSink {
    w: BufWriter<File>,
}

fn frame_crc(len: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload)
}

impl Sink for RawSink {
    fn append(&mut self, payload: &[u8]) -> Res<()> {
        let len = payload.len() as u32;
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&len.to_le_bytes());
        head[4..].copy_from_slice(&frame_crc(len, payload).to_le_bytes());
        self.w.write_all(&head).map_err(ctx("write"))?;
        self.w.write_all(payload).map_err(ctx("write"))
    }

    fn durable(&mut self) -> Res<()> {
        self.w.flush().map_err(ctx("flush"))?;
        self.w.get_ref().sync_data().map_err(ctx("fdatasync"))
    }
}

fn create(dir: &Path) -> Res<RawSink> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(FILE))
        .map_err(ctx("create"))?;
    // The new file's directory entry must be durable too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ctx("fsync dir"))?;
    Ok(RawSink {
        w: BufWriter::new(f),
    })
}

impl System for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }

    fn role(&self) -> Role {
        Role::Raw
    }

    fn sync_note(&self) -> &'static str {
        "BufWriter::flush + File::sync_data (fdatasync) on an appended file; the directory is fsynced once after creating the file"
    }

    fn run_write(
        &self,
        spec: &WriteSpec,
        dir: &Path,
        thread: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome> {
        let mut sink = create(dir)?;
        drive(spec, thread, start, &mut sink)
    }

    fn run_recover(
        &self,
        dir: &Path,
        thread: usize,
        records: u64,
        payload_bytes: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome> {
        let mut v = Verifier::new(thread, payload_bytes);
        let mut buf = vec![0u8; payload_bytes];
        start.wait();
        let t0 = Instant::now();
        let f = File::open(dir.join(FILE)).map_err(ctx("open"))?;
        let opened = t0.elapsed();
        let mut r = BufReader::new(f);
        let mut head = [0u8; 8];
        loop {
            match r.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(format!("read: {e}")),
            }
            let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
            let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
            if len as usize > MAX_PAYLOAD {
                return Err(format!("record {}: length {len} out of bounds", v.next));
            }
            buf.resize(len as usize, 0);
            match r.read_exact(&mut buf) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => break, // torn tail
                Err(e) => return Err(format!("read: {e}")),
            }
            if frame_crc(len, &buf) != crc {
                return Err(format!("record {}: CRC mismatch", v.next));
            }
            v.check(&buf)?;
        }
        let elapsed = t0.elapsed();
        let n = v.finish(records)?;
        Ok(ThreadOutcome {
            open: Some(opened),
            ..ThreadOutcome::timed(n, n * payload_bytes as u64, elapsed)
        })
    }

    fn run_open(&self, dir: &Path, thread: usize, start: &Gate) -> Res<ThreadOutcome> {
        drive_open(
            thread,
            start,
            || create(dir),
            |s, p| s.append(p),
            |mut s| s.durable(),
        )
    }
}
