//! Round trip: a million records of varying length, written through the
//! production Direct I/O backend across many segment rolls, all come back
//! byte for byte after reopening, in order, and sequence numbers continue
//! where they stopped — across a second reopen too.

use crate::common;

use common::{fill_payload, payload, payload_len, run};
use shardwal::{
    DmaStorage, FsyncPolicy, RecordKind, Seq, ShardConfig, ShardId, ShardLog, ShardReader,
};

const RECORDS: u64 = 1_000_000;
const MAX_LEN: usize = 200;
const TAG: u64 = 0xA11CE;

fn config() -> ShardConfig {
    ShardConfig {
        segment_size: 4 << 20,
        buffer_size: 256 << 10,
        max_record_size: 64 << 10,
        fsync: FsyncPolicy::Never,
        ..ShardConfig::default()
    }
}

/// Read every record from `from` on and check it against the generator.
/// Returns the number of data records and the kinds of the others.
async fn verify_from(
    dir: &std::path::Path,
    from: u64,
    data_below: u64,
) -> (u64, Vec<(u64, RecordKind)>) {
    let mut reader = ShardReader::open(DmaStorage, dir, ShardId(0), Seq(from))
        .await
        .expect("open reader");
    let mut expect = from;
    let mut data = 0;
    let mut other = Vec::new();
    let mut scratch = [0u8; MAX_LEN];
    while let Some(rec) = reader.next().await.expect("read") {
        assert_eq!(
            rec.lsn.seq.0, expect,
            "records come back dense and in order"
        );
        assert_eq!(rec.lsn.shard, ShardId(0));
        assert_eq!(
            rec.payload.as_ptr() as usize % 8,
            0,
            "payload is 8-byte aligned"
        );
        if rec.lsn.seq.0 < data_below {
            assert_eq!(rec.kind, RecordKind::Data, "seq {}", rec.lsn.seq.0);
            let n = payload_len(TAG, expect, MAX_LEN);
            fill_payload(TAG, expect, &mut scratch[..n]);
            assert_eq!(rec.payload, &scratch[..n], "payload of seq {expect}");
            data += 1;
        } else {
            other.push((rec.lsn.seq.0, rec.kind));
        }
        expect += 1;
    }
    (data, other)
}

#[test]
fn a_million_records_survive_reopen_byte_for_byte_and_seq_continues() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    // Each session runs on its own executor, like a process of its own:
    // `close` does not wait for the shard's segment-preparation task (see
    // tests/recovery/close_quiesces_io.rs), which would race with the next open.
    let d = dir.clone();
    run("round-trip-write", move || async move {
        let dir = d;
        // Write: mostly single appends, some batches, some try_append.
        let log = ShardLog::open(DmaStorage, &dir, ShardId(0), config())
            .await
            .expect("open new log");
        assert_eq!(log.next_seq(), Seq(0));
        let mut seq = 0u64;
        while seq < RECORDS {
            match seq % 3 {
                0 => {
                    let lsn = log
                        .append(&payload(TAG, seq, MAX_LEN))
                        .await
                        .expect("append");
                    assert_eq!(lsn.seq, Seq(seq));
                    seq += 1;
                }
                1 => {
                    let n = 16.min(RECORDS - seq);
                    let owned: Vec<Vec<u8>> =
                        (seq..seq + n).map(|s| payload(TAG, s, MAX_LEN)).collect();
                    let batch: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
                    let lsns = log
                        .append_batch(&batch)
                        .await
                        .expect("append batch")
                        .expect("non-empty");
                    assert_eq!(
                        (lsns.first.seq, lsns.last.seq),
                        (Seq(seq), Seq(seq + n - 1))
                    );
                    seq += n;
                }
                _ => match log.try_append(&payload(TAG, seq, MAX_LEN)) {
                    Ok(lsn) => {
                        assert_eq!(lsn.seq, Seq(seq));
                        seq += 1;
                    }
                    Err(shardwal::Error::Backpressure) => {
                        let lsn = log
                            .append(&payload(TAG, seq, MAX_LEN))
                            .await
                            .expect("append");
                        assert_eq!(lsn.seq, Seq(seq));
                        seq += 1;
                    }
                    Err(e) => panic!("try_append: {e}"),
                },
            }
        }
        let stats = log.stats();
        assert_eq!(stats.records, RECORDS);
        assert!(
            stats.rolls >= 20,
            "expected many segment rolls, got {}",
            stats.rolls
        );
        log.close().await.expect("close");
        // The close record takes seq RECORDS.
    });
    let segments = common::segment_paths(&dir, ShardId(0)).len();
    assert!(segments >= 20, "{segments} segment files");

    let d = dir.clone();
    run("round-trip-reopen", move || async move {
        let dir = d;
        // Reopen: recovery finds everything, cuts nothing.
        let log = ShardLog::open(DmaStorage, &dir, ShardId(0), config())
            .await
            .expect("reopen");
        let rec = log.recovery().clone();
        assert_eq!(
            rec.records,
            RECORDS + 1,
            "every record plus the close record"
        );
        assert_eq!(rec.next_seq, Seq(RECORDS + 1));
        assert!(
            rec.torn.is_none(),
            "a clean close leaves no torn tail: {:?}",
            rec.torn
        );
        assert_eq!(log.next_seq(), Seq(RECORDS + 1));

        // Everything back, byte for byte.
        let (data, other) = verify_from(&dir, 0, RECORDS).await;
        assert_eq!(data, RECORDS);
        assert_eq!(other, vec![(RECORDS, RecordKind::Close)]);

        // Reading from the middle starts exactly there, even mid-segment.
        let (data, _) = verify_from(&dir, 654_321, RECORDS).await;
        assert_eq!(data, RECORDS - 654_321);

        // Sequence numbers continue after the close record.
        let p = payload(TAG, RECORDS + 1, MAX_LEN);
        let lsn = log.append(&p).await.expect("append after reopen");
        assert_eq!(lsn.seq, Seq(RECORDS + 1));
        log.close().await.expect("close again");
    });

    run("round-trip-reopen-twice", move || async move {
        let log = ShardLog::open(DmaStorage, &dir, ShardId(0), config())
            .await
            .expect("reopen twice");
        assert_eq!(log.next_seq(), Seq(RECORDS + 3));
        let mut reader = ShardReader::open(DmaStorage, &dir, ShardId(0), Seq(RECORDS))
            .await
            .expect("reader");
        let mut tail = Vec::new();
        while let Some(r) = reader.next().await.expect("read tail") {
            tail.push((r.lsn.seq.0, r.kind, r.payload.to_vec()));
        }
        assert_eq!(
            tail,
            vec![
                (RECORDS, RecordKind::Close, vec![]),
                (
                    RECORDS + 1,
                    RecordKind::Data,
                    payload(TAG, RECORDS + 1, MAX_LEN)
                ),
                (RECORDS + 2, RecordKind::Close, vec![]),
            ]
        );
        log.close().await.expect("final close");
    });
}
