//! The small files of a log directory: `LAYOUT` (`Layout::decode`, raw and
//! correctly framed around the fuzzer's payload, and the layout's methods
//! on whatever decodes), `LOG_ID` (`format::log_id::decode`, and
//! `log_dir::load` and `layout::read` over `SimStorage`) and the generic
//! metadata-file framing (`meta_file::decode` with a small payload bound).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use shardwal::format::log_id;
use shardwal::io::sim::SimImage;
use shardwal::layout::{self, LAYOUT_FILE, MAX_SHARDS};
use shardwal::log_dir::{self, LOG_ID_FILE};
use shardwal::meta_file::{self, Kind};
use shardwal::{Epoch, Layout, ShardId, SimStorage};
use shardwal_fuzz::{Src, block_on};

const LAYOUT: Kind = Kind {
    magic: b"SHRDLAYT",
    version: 1,
    max_payload: 1 << 20,
    name: "layout",
};

const SMALL: Kind = Kind {
    magic: b"TESTFILE",
    version: 3,
    max_payload: 64,
    name: "test",
};

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let which = src.u8();
    let rest = src.rest();
    let _ = log_id::decode(rest);
    let _ = meta_file::decode(SMALL, rest);
    let _ = meta_file::decode(LAYOUT, rest);
    let file = if which & 1 == 0 {
        rest.to_vec()
    } else {
        meta_file::encode(LAYOUT, rest)
    };
    if let Ok(l) = Layout::decode(&file) {
        exercise(&l);
        let again = l.encode().expect("re-encode a decoded layout");
        assert_eq!(Layout::decode(&again), Ok(l));
    }
    // The bytes as a log directory's LOG_ID and LAYOUT.
    let dir = Path::new("/log");
    let id_bytes = if which & 2 == 0 {
        log_id::encode([9; 16]).to_vec()
    } else {
        rest.get(..log_id::LOG_ID_LEN.min(rest.len()))
            .unwrap_or(&[])
            .to_vec()
    };
    let image = SimImage::default()
        .with_file(&dir.join(LOG_ID_FILE), &id_bytes)
        .with_file(&dir.join(LAYOUT_FILE), &file);
    let sim = SimStorage::from_image(&image);
    block_on(async {
        let id = log_dir::load(&sim, dir).await.unwrap_or([9; 16]);
        if let Ok(Some(l)) = layout::read(&sim, dir, id).await {
            exercise(&l);
        }
    });
});

/// The layout's methods, as recovery calls them on a decoded layout.
fn exercise(l: &Layout) {
    assert!(l.active() <= MAX_SHARDS);
    let shards = l.data_shards();
    for s in &shards {
        let _ = l.is_retired(*s);
        let _ = layout::replayer(*s, l.active());
    }
    let sealed = l.sealed(Epoch(0), |s| Epoch(u64::from(s.0)));
    for n in [0, 1, l.active(), MAX_SHARDS] {
        let _ = l.reshard(n, sealed);
    }
    let _ = Layout::implicit(l.log_id, &shards);
    let _ = layout::replayer(ShardId(u32::MAX), 0);
}
