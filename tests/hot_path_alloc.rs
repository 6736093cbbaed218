//! The append hot path allocates nothing: in steady state, `try_append`
//! makes zero heap allocations over 100,000 appends on the production
//! Direct I/O backend, including the appends that seal a full buffer and
//! take the next one from the free list. A counting global allocator sees
//! every allocation made on the appending thread while `try_append` runs.
//!
//! A second test holds appends that roll to the next (already prepared)
//! segment to the same standard: the preparation task wraps the file in its
//! `Rc` and makes room in the live-segments list before handing it over.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use common::run;
use shardwal::{DmaStorage, Error, FsyncPolicy, ShardConfig, ShardId, ShardLog};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread-locals may be gone while a thread exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every method forwards to the system allocator unchanged; the
// counting touches only const-initialised thread-locals, which never
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made on this thread while `f` runs.
fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, ALLOCATIONS.with(Cell::get) - before)
}

const WARM_UP: u64 = 20_000;
const MEASURED: u64 = 100_000;

/// Allocations made inside `try_append` over `MEASURED` appends of 128
/// bytes after a warm-up, with a yield every 1000 appends (or at
/// back-pressure). Checks that buffers were sealed and replaced while
/// measuring, and that segments rolled iff `segment_size` is small.
fn allocations_in_try_append(segment_size: u64) -> u64 {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run("hot-path-alloc", move || async move {
        let cfg = ShardConfig {
            segment_size,
            buffer_size: 256 << 10,
            write_behind: 4,
            max_record_size: 64 << 10,
            fsync: FsyncPolicy::Never,
            ..ShardConfig::default()
        };
        let log = ShardLog::open(DmaStorage, &dir, ShardId(0), cfg)
            .await
            .expect("open");
        let payload = [0x5Au8; 128];
        let mut appended = 0u64;
        let mut allocations = 0u64;
        let mut stats_at_start = None;
        while appended < WARM_UP + MEASURED {
            // A burst of appends between yields, as an engine's event loop
            // would do; the yield lets the write task recycle buffers.
            for _ in 0..1000 {
                if appended == WARM_UP && stats_at_start.is_none() {
                    stats_at_start = Some(log.stats());
                }
                let (r, n) = counted(|| log.try_append(&payload));
                if appended >= WARM_UP {
                    allocations += n;
                }
                match r {
                    Ok(lsn) => {
                        assert_eq!(lsn.seq.0, appended);
                        appended += 1;
                    }
                    Err(Error::Backpressure) => break,
                    Err(e) => panic!("try_append: {e}"),
                }
            }
            glommio::timer::sleep(Duration::from_micros(50)).await;
        }
        let start = stats_at_start.expect("warm-up done");
        let end = log.stats();
        assert!(
            end.writes - start.writes >= 20,
            "buffers were sealed and replaced while measuring ({} writes)",
            end.writes - start.writes
        );
        let rolled = end.rolls > start.rolls;
        assert_eq!(
            rolled,
            segment_size < 64 << 20,
            "segment rolls while measuring"
        );
        log.close().await.expect("close");
        allocations
    })
}

#[test]
fn try_append_makes_no_heap_allocation_in_steady_state() {
    // The counter itself works.
    let (v, n) = counted(|| vec![1u8; 10]);
    assert_eq!((v.len(), n), (10, 1));

    let allocations = allocations_in_try_append(64 << 20);
    assert_eq!(
        allocations, 0,
        "try_append allocated {allocations} times over {MEASURED} appends"
    );
}

#[test]
fn a_segment_roll_inside_try_append_makes_no_heap_allocation() {
    let allocations = allocations_in_try_append(4 << 20);
    assert_eq!(
        allocations, 0,
        "try_append allocated {allocations} times over {MEASURED} appends that rolled segments"
    );
}
