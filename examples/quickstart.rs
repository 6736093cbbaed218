//! Quick start: write records on one shard, close, reopen (recovering), and
//! read everything back.
//!
//! ```sh
//! cargo run --release --example quickstart
//! ```

use glommio::{LocalExecutorBuilder, Placement};
use shardwal::{DmaStorage, FsyncPolicy, Seq, ShardConfig, ShardId, ShardLog, ShardReader};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_path_buf();
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(2 << 20)
        .name("quickstart")
        .spawn(move || async move {
            let cfg = ShardConfig {
                fsync: FsyncPolicy::EveryAppend,
                segment_size: 4 << 20,
                ..ShardConfig::default()
            };
            let log = ShardLog::open(DmaStorage, &path, ShardId(0), cfg.clone()).await?;
            let mut last = None;
            for i in 0..100_000u32 {
                let lsn = log.append(format!("event {i}").as_bytes()).await?;
                last = Some(lsn);
            }
            if let Some(lsn) = last {
                log.wait_durable(lsn).await?;
                println!("wrote 100000 records, last LSN {lsn}, durable");
            }
            log.close().await?;

            let log = ShardLog::open(DmaStorage, &path, ShardId(0), cfg).await?;
            let r = log.recovery();
            println!(
                "reopened: {} records in {} segments recovered in {:?}; next seq {}",
                r.records, r.segments, r.elapsed, r.next_seq.0
            );
            log.close().await?;

            let mut reader = ShardReader::open(DmaStorage, &path, ShardId(0), Seq(99_998)).await?;
            while let Some(rec) = reader.next().await? {
                println!(
                    "{} {:?} {:?}",
                    rec.lsn,
                    rec.kind,
                    String::from_utf8_lossy(rec.payload)
                );
            }
            Ok::<(), shardwal::Error>(())
        })?;
    handle.join()??;
    Ok(())
}
