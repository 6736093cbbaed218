//! Spawning a child and killing it with SIGKILL as planned.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// When the parent kills the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillPlan {
    /// At a random time within the usual start-up (and recovery) time.
    Startup(Duration),
    /// At a random time after the first snapshot begins.
    Snapshot(Duration),
    /// At a random time after the spawn.
    Any(Duration),
}

/// A child, killed: what it reported, and when.
pub(crate) struct Killed {
    pub(crate) lines: Vec<Line>,
    /// From the spawn to the `STARTED` / `READY` line, if seen.
    pub(crate) start_time: Option<Duration>,
    /// Snapshot durations seen (begin to end).
    pub(crate) snap_times: Vec<Duration>,
    /// Snapshot in progress at the kill (begun, neither ended nor failed).
    pub(crate) snap_in_flight: bool,
    /// The plan waited for a snapshot that never began.
    pub(crate) no_snapshot: bool,
    pub(crate) stderr: String,
}
use crate::protocol::{Line, parse_line};
use crate::{ChildKind, Options};

pub(crate) fn spawn_child(
    kind: ChildKind,
    dir: &Path,
    o: &Options,
    seed: u64,
) -> std::io::Result<Child> {
    let mut c = Command::new(std::env::current_exe()?);
    c.arg("--child")
        .arg(match kind {
            ChildKind::Runtime => "runtime",
            ChildKind::Append => "append",
        })
        .arg("--dir")
        .arg(dir)
        .arg("--shards")
        .arg(o.shards.to_string())
        .arg("--seed")
        .arg(seed.to_string());
    if o.unpinned {
        c.arg("--unpinned");
    }
    if let Some(l) = o.lie {
        c.arg("--lie").arg(format!("{l:?}").to_lowercase());
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

/// Run a child on `dir` and SIGKILL it as `plan` says.
pub(crate) fn run_and_kill(
    kind: ChildKind,
    dir: &Path,
    o: &Options,
    seed: u64,
    plan: KillPlan,
) -> Result<Killed, String> {
    let t0 = Instant::now();
    let mut child = spawn_child(kind, dir, o, seed).map_err(|e| format!("spawn the child: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel::<(Instant, Line)>();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send((Instant::now(), parse_line(&l))).is_err() {
                break;
            }
        }
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut lines = Vec::new();
    let mut start_time = None;
    let mut snap_began: HashMap<(u32, u64), Instant> = HashMap::new();
    let mut snap_times = Vec::new();
    let mut note = |at: Instant, l: &Line, start_time: &mut Option<Duration>| match l {
        Line::Started | Line::Ready { .. } => {
            start_time.get_or_insert(at - t0);
        }
        Line::SnapBegin { s, id } => {
            snap_began.insert((*s, *id), at);
        }
        Line::SnapEnd { s, id } => {
            if let Some(b) = snap_began.remove(&(*s, *id)) {
                snap_times.push(at - b);
            }
        }
        Line::SnapFail { s, id } => {
            snap_began.remove(&(*s, *id));
        }
        _ => {}
    };
    let (mut deadline, mut wait_snapshot) = match plan {
        KillPlan::Startup(d) | KillPlan::Any(d) => (t0 + d, None),
        KillPlan::Snapshot(d) => (t0 + Duration::from_secs(5), Some(d)),
    };
    let mut no_snapshot = false;
    let mut ended = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            no_snapshot = wait_snapshot.is_some();
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok((at, l)) => {
                note(at, &l, &mut start_time);
                if let (Some(d), Line::SnapBegin { .. }) = (wait_snapshot, &l) {
                    deadline = at + d;
                    wait_snapshot = None;
                }
                lines.push(l);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                ended = true;
                break;
            }
        }
    }
    let running = child
        .try_wait()
        .map_err(|e| format!("poll the child: {e}"))?
        .is_none();
    child
        .kill()
        .map_err(|e| format!("SIGKILL the child: {e}"))?;
    let status = child.wait().map_err(|e| format!("reap the child: {e}"))?;
    // Everything written before the kill is in the pipe.
    for (at, l) in rx {
        note(at, &l, &mut start_time);
        lines.push(l);
    }
    let _ = reader.join();
    let stderr = err.join().unwrap_or_default();
    if ended || !running || status.signal() != Some(libc::SIGKILL) {
        let fails: Vec<&str> = lines
            .iter()
            .filter_map(|l| match l {
                Line::Fail(f) => Some(f.as_str()),
                _ => None,
            })
            .collect();
        return Err(format!(
            "the child ended on its own ({status}) instead of being killed; it reported {fails:?}; its stderr:\n{stderr}"
        ));
    }
    Ok(Killed {
        lines,
        start_time,
        snap_times,
        snap_in_flight: !snap_began.is_empty(),
        no_snapshot,
        stderr,
    })
}
