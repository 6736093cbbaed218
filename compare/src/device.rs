//! The machine and the device, measured in the same run: fio calibration
//! jobs (when fio is installed), dropping the page cache, and what the
//! machine is.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// The three calibration jobs of BRIEF §6, as fio measured them.
#[derive(Debug, Clone, Serialize)]
pub struct Fio {
    /// O_DIRECT sequential write, 1 MiB blocks, queue depth 4 (io_uring), end fsync.
    pub seq_write_mib_s: f64,
    /// O_DIRECT sequential read, 1 MiB blocks, queue depth 8 (io_uring).
    pub seq_read_mib_s: f64,
    /// 4 KiB O_DIRECT write + fdatasync, overwriting an already written file: ops/s.
    pub write_fdatasync_4k_ops_s: f64,
    /// The same, microseconds per operation (write + fdatasync).
    pub write_fdatasync_4k_us: f64,
    /// The same, fdatasync latency p50 in microseconds.
    pub fdatasync_p50_us: Option<f64>,
}

/// Whether fio is on the PATH.
pub fn fio_available() -> bool {
    Command::new("sh")
        .args(["-c", "command -v fio"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn fio_json(args: &[String]) -> Result<serde_json::Value, String> {
    let out = Command::new("fio")
        .args(args)
        .arg("--output-format=json")
        .output()
        .map_err(|e| format!("fio: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "fio {}: {}",
            args.first().map_or("", |s| s.as_str()),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // fio may print notes before the JSON document.
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find('{').ok_or("fio printed no JSON")?;
    serde_json::from_str(&text[start..]).map_err(|e| format!("fio JSON: {e}"))
}

fn job(v: &serde_json::Value) -> Result<&serde_json::Value, String> {
    v.get("jobs")
        .and_then(|j| j.get(0))
        .ok_or_else(|| "fio JSON without jobs".to_string())
}

fn num(v: &serde_json::Value, path: &[&str]) -> Result<f64, String> {
    let mut cur = v;
    for p in path {
        cur = cur
            .get(p)
            .ok_or_else(|| format!("fio JSON without {}", path.join(".")))?;
    }
    cur.as_f64()
        .ok_or_else(|| format!("fio JSON {} is not a number", path.join(".")))
}

/// Run the three calibration jobs in `dir` on a file of `size_mib` MiB,
/// each bounded to `runtime_s` seconds, and remove the file.
pub fn run_fio(dir: &Path, size_mib: u64, runtime_s: u64) -> Result<Fio, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let file = dir.join("fio.bin");
    let common = |name: &str| {
        vec![
            format!("--name={name}"),
            format!("--filename={}", file.display()),
            "--direct=1".to_string(),
            format!("--size={size_mib}M"),
            format!("--runtime={runtime_s}"),
        ]
    };
    let mut w = common("seq-write");
    w.extend(
        [
            "--rw=write",
            "--bs=1M",
            "--iodepth=4",
            "--ioengine=io_uring",
            "--end_fsync=1",
        ]
        .map(String::from),
    );
    let wj = fio_json(&w)?;
    let mut r = common("seq-read");
    r.extend(["--rw=read", "--bs=1M", "--iodepth=8", "--ioengine=io_uring"].map(String::from));
    let rj = fio_json(&r)?;
    // Overwrite the file the write job laid out: fdatasync flushes data only.
    let mut s = common("write-fdatasync-4k");
    s.extend(["--rw=write", "--bs=4k", "--ioengine=sync", "--fdatasync=1"].map(String::from));
    let sj = fio_json(&s)?;
    let _ = std::fs::remove_file(&file);
    let mib = (1u64 << 20) as f64;
    let ops = num(job(&sj)?, &["write", "iops"])?;
    Ok(Fio {
        seq_write_mib_s: num(job(&wj)?, &["write", "bw_bytes"])? / mib,
        seq_read_mib_s: num(job(&rj)?, &["read", "bw_bytes"])? / mib,
        write_fdatasync_4k_ops_s: ops,
        write_fdatasync_4k_us: if ops > 0.0 { 1e6 / ops } else { 0.0 },
        fdatasync_p50_us: num(job(&sj)?, &["sync", "lat_ns", "percentile", "50.000000"])
            .ok()
            .map(|ns| ns / 1e3),
    })
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`. Needs root.
pub fn drop_caches() -> Result<(), String> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").map_err(|e| format!("drop_caches: {e}"))
}

/// What the machine is, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `uname -r`.
    pub kernel: String,
    /// lscpu's model name.
    pub cpu: String,
    /// CPUs the threads are pinned to.
    pub cpus_used: Vec<usize>,
    /// Online CPUs.
    pub cpus_online: usize,
    /// `df` of the data directory: the device and filesystem.
    pub data_fs: String,
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Read the machine's description.
pub fn machine(dir: &Path, cpus_used: &[usize]) -> Machine {
    Machine {
        kernel: sh("uname -r"),
        cpu: sh("lscpu | sed -n 's/^Model name: *//p' | head -1"),
        cpus_used: cpus_used.to_vec(),
        cpus_online: std::thread::available_parallelism().map_or(0, |n| n.get()),
        data_fs: sh(&format!(
            "df -T '{}' | tail -1 | awk '{{print $1\" \"$2}}'",
            dir.display()
        )),
    }
}
