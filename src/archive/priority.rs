//! The archiver's threads run in the background: a lower CPU priority and
//! the idle I/O class, so that on a machine whose cores and disk the shards
//! keep busy, their appends, writes and fdatasyncs come first and the
//! archive takes what is left.
//!
//! Both are per-thread on Linux: `setpriority(PRIO_PROCESS, 0, ..)` and
//! `ioprio_set(IOPRIO_WHO_PROCESS, 0, ..)` apply to the calling thread
//! only. The I/O class is honoured by the `mq-deadline` and `bfq`
//! schedulers; `mq-deadline` still serves idle-class requests that have
//! waited `prio_aging_expire` (10 s by default), so the archive slows down
//! under a saturated disk but does not stop.

/// The nice value of the archiver's threads (0 is the default, 19 the
/// lowest).
const NICE: libc::c_int = 10;
/// `IOPRIO_CLASS_IDLE` (linux/ioprio.h).
const IOPRIO_CLASS_IDLE: libc::c_long = 3;
/// `IOPRIO_CLASS_SHIFT` (linux/ioprio.h).
const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
/// `IOPRIO_WHO_PROCESS` (linux/ioprio.h): with `who` 0, the calling thread.
const IOPRIO_WHO_PROCESS: libc::c_long = 1;

/// Put the calling thread in the background. Failures are only lost
/// hints, logged once per thread.
pub(super) fn background_thread() {
    // SAFETY: setpriority only reads its integer arguments.
    let nice = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) };
    // SAFETY: ioprio_set only reads its integer arguments; who 0 names the
    // calling thread.
    let io = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
    if nice != 0 || io != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "the archiver could not lower its thread's priority"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowers_only_the_calling_thread() {
        // SAFETY: ioprio_get only reads its integer arguments.
        let get = || unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0) };
        let before = get();
        let inside = std::thread::spawn(move || {
            background_thread();
            // SAFETY: getpriority only reads its integer arguments.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            (get(), nice)
        })
        .join()
        .unwrap();
        assert_eq!(inside.0 >> IOPRIO_CLASS_SHIFT, IOPRIO_CLASS_IDLE);
        assert_eq!(inside.1, NICE);
        assert_eq!(get(), before, "the test thread's class is unchanged");
    }
}
