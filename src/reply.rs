//! Sends whose receiver may already be gone.
//!
//! Every channel inside the crate carries a reply, an acknowledgement or a
//! notice to one waiter: a caller blocked on a ticket, the coordinator
//! thread, or the runtime's start-up and shutdown. A waiter that has gone
//! has given up on purpose (its ticket was dropped, its deadline passed,
//! or it has already failed with a better error), so a failed send carries
//! no information: there is nobody left to tell. This module owns that
//! rule, so that no call site ignores a `Result` on its own.

use crossbeam_channel::Sender;

/// Deliver `value` to `tx`'s receiver if it is still there.
pub(crate) fn send_or_gone<T>(tx: &Sender<T>, value: T) {
    if tx.send(value).is_err() {
        tracing::trace!("a reply's receiver had already gone");
    }
}
