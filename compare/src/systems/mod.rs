//! The compared systems, one module each. Peers are cargo features (all on
//! by default), so one that fails to build can be left out.

pub mod odirect;
pub mod raw;
pub mod shardwal;

#[cfg(feature = "ironwal")]
pub mod ironwal;
#[cfg(feature = "laminar")]
pub mod laminar;
#[cfg(feature = "okaywal")]
pub mod okaywal;
#[cfg(feature = "raft-engine")]
pub mod raft_engine;

use crate::system::System;

/// Every system this build has, in table order.
pub fn all(cpus: &[usize], odirect_qd: usize) -> Vec<Box<dyn System>> {
    let mut v: Vec<Box<dyn System>> = vec![
        Box::new(shardwal::Shardwal {
            cpus: cpus.to_vec(),
        }),
        Box::new(raw::Raw),
        Box::new(odirect::ODirect {
            queue_depth: odirect_qd,
            cpus: cpus.to_vec(),
        }),
    ];
    #[cfg(feature = "okaywal")]
    v.push(Box::new(okaywal::OkayWal));
    #[cfg(feature = "raft-engine")]
    v.push(Box::new(raft_engine::RaftEngine));
    #[cfg(feature = "laminar")]
    v.push(Box::new(laminar::Laminar));
    #[cfg(feature = "ironwal")]
    v.push(Box::new(ironwal::IronWal));
    v
}
