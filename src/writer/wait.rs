//! Single-threaded wake-up primitives for the shard's tasks. They are
//! `RefCell`s, not locks: everything here lives on one executor.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A set of tasks waiting for a condition to change.
#[derive(Default)]
pub(crate) struct WakeList {
    wakers: RefCell<Vec<Waker>>,
}

impl WakeList {
    pub(crate) fn with_capacity(n: usize) -> WakeList {
        WakeList {
            wakers: RefCell::new(Vec::with_capacity(n)),
        }
    }

    /// Register the current task.
    pub(crate) fn register(&self, w: &Waker) {
        let mut v = self.wakers.borrow_mut();
        if !v.iter().any(|x| x.will_wake(w)) {
            v.push(w.clone());
        }
    }

    /// Wake every registered task (keeping the list's capacity).
    pub(crate) fn wake_all(&self) {
        let mut v = self.wakers.borrow_mut();
        for w in v.drain(..) {
            w.wake();
        }
    }
}

/// A wake-up slot for one background task.
#[derive(Default)]
pub(crate) struct Signal {
    waker: RefCell<Option<Waker>>,
    pending: Cell<bool>,
}

impl Signal {
    /// Wake the task (or remember to not sleep on its next wait).
    pub(crate) fn notify(&self) {
        self.pending.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Wait until `notify` is called (returns at once if it was called since
    /// the last wait).
    pub(crate) fn wait(&self) -> SignalWait<'_> {
        SignalWait { s: self }
    }
}

pub(crate) struct SignalWait<'a> {
    s: &'a Signal,
}

impl Future for SignalWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.s.pending.replace(false) {
            return Poll::Ready(());
        }
        *self.s.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Yield to the executor once.
pub(crate) async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
