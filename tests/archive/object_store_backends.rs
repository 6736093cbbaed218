//! The archive's test harness, tested: a real S3-protocol server (moto, see
//! `common::s3_server`) reached through `object_store`'s `AmazonS3`, and
//! `common::flaky_store::FlakyStore` over `object_store::memory::InMemory`.
//!
//! The S3 tests need the `s3` cargo feature (`cargo test --release
//! --features s3 --test archive s3`), and skip (with a
//! "skipping: ..." line) where `moto_server` is not installed; `.ci/run`
//! installs it and runs them.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::flaky_store::{FlakyStore, PPM};
#[cfg(feature = "s3")]
use common::s3_server::S3Server;
use futures_lite::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{Error, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// Run `fut` to completion on a current-thread tokio runtime.
fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(fut)
}

/// Deterministic bytes, `len` long, different for each `tag`.
fn bytes(tag: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill(tag, &mut v);
    v
}

fn fill(tag: u64, out: &mut [u8]) {
    let mut x = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

async fn list_paths(store: &dyn ObjectStore, prefix: Option<&Path>) -> Vec<String> {
    let mut s = store.list(prefix);
    let mut out = Vec::new();
    while let Some(m) = s.next().await {
        out.push(m.expect("list entry").location.to_string());
    }
    out.sort();
    out
}

async fn read(store: &dyn ObjectStore, p: &Path) -> Vec<u8> {
    store
        .get(p)
        .await
        .unwrap_or_else(|e| panic!("get {p}: {e}"))
        .bytes()
        .await
        .expect("get body")
        .to_vec()
}

async fn absent(store: &dyn ObjectStore, p: &Path) -> bool {
    match store.head(p).await {
        Err(Error::NotFound { .. }) => true,
        Ok(_) => false,
        Err(e) => panic!("head {p}: unexpected error {e}"),
    }
}

/// Upload `data` to `p` as a multipart upload of `part`-byte parts.
async fn multipart(
    store: &dyn ObjectStore,
    p: &Path,
    data: &[u8],
    part: usize,
) -> object_store::Result<()> {
    let mut up = store.put_multipart(p).await?;
    let parts: Vec<_> = data
        .chunks(part)
        .map(|c| up.put_part(PutPayload::from(c.to_vec())))
        .collect();
    for f in parts {
        if let Err(e) = f.await {
            let _ = up.abort().await;
            return Err(e);
        }
    }
    up.complete().await.map(|_| ())
}

#[cfg(feature = "s3")]
fn s3() -> Option<S3Server> {
    S3Server::start()
}

#[cfg(feature = "s3")]
#[test]
fn s3_put_get_head_round_trip() {
    let Some(server) = s3() else { return };
    let store = server.store();
    block_on(async {
        let p = Path::from("log/shard-0/seg-000001");
        let data = bytes(1, 100_000);
        store
            .put(&p, PutPayload::from(data.clone()))
            .await
            .expect("put");
        assert_eq!(read(&*store, &p).await, data);
        let meta = store.head(&p).await.expect("head");
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(meta.location, p);
        // Overwrite (the default mode) replaces the object.
        let data2 = bytes(2, 10);
        store
            .put(&p, PutPayload::from(data2.clone()))
            .await
            .expect("overwrite");
        assert_eq!(read(&*store, &p).await, data2);
        assert!(
            matches!(
                store.get(&Path::from("log/missing")).await,
                Err(Error::NotFound { .. })
            ),
            "get of a missing object is NotFound"
        );
    });
}

#[cfg(feature = "s3")]
#[test]
fn s3_list_under_a_prefix() {
    let Some(server) = s3() else { return };
    let store = server.store();
    block_on(async {
        for name in ["a/1", "a/2", "a/sub/3", "b/1", "ab/1"] {
            store
                .put(
                    &Path::from(name),
                    PutPayload::from(name.as_bytes().to_vec()),
                )
                .await
                .expect("put");
        }
        assert_eq!(
            list_paths(&*store, Some(&Path::from("a"))).await,
            ["a/1", "a/2", "a/sub/3"],
            "a prefix lists whole path segments only (not ab/)"
        );
        let r = store
            .list_with_delimiter(Some(&Path::from("a")))
            .await
            .expect("list_with_delimiter");
        let mut objs: Vec<_> = r.objects.iter().map(|m| m.location.to_string()).collect();
        objs.sort();
        assert_eq!(objs, ["a/1", "a/2"]);
        assert_eq!(r.common_prefixes, [Path::from("a/sub")]);
        assert_eq!(list_paths(&*store, None).await.len(), 5);
    });
}

#[cfg(feature = "s3")]
#[test]
fn s3_multipart_upload_of_12_mib() {
    let Some(server) = s3() else { return };
    let store = server.store();
    block_on(async {
        let p = Path::from("log/big");
        let data = bytes(3, 12 << 20);
        // S3 requires every part but the last to be at least 5 MiB:
        // 5 + 5 + 2 MiB.
        let t = Instant::now();
        multipart(&*store, &p, &data, 5 << 20)
            .await
            .expect("multipart upload");
        eprintln!("multipart upload of 12 MiB: {:?}", t.elapsed());
        let meta = store.head(&p).await.expect("head");
        assert_eq!(meta.size, data.len() as u64);
        assert!(read(&*store, &p).await == data, "multipart object content");
        // A part of the middle, read by range.
        let r = store
            .get_range(&p, (6 << 20)..(6 << 20) + 4096)
            .await
            .expect("get_range");
        assert_eq!(&r[..], &data[6 << 20..(6 << 20) + 4096]);
    });
}

#[cfg(feature = "s3")]
#[test]
fn s3_create_conflict_is_already_exists() {
    let Some(server) = s3() else { return };
    let store = server.store();
    block_on(async {
        let p = Path::from("log/manifest");
        let create = PutOptions::from(PutMode::Create);
        store
            .put_opts(&p, PutPayload::from_static(b"first"), create.clone())
            .await
            .expect("create of a new object succeeds");
        let e = store
            .put_opts(&p, PutPayload::from_static(b"second"), create)
            .await
            .expect_err("create of an existing object fails");
        assert!(
            matches!(e, Error::AlreadyExists { .. }),
            "expected AlreadyExists, got {e:?}"
        );
        assert_eq!(read(&*store, &p).await, b"first", "the first write stays");
    });
}

#[cfg(feature = "s3")]
#[test]
fn s3_delete() {
    let Some(server) = s3() else { return };
    let store = server.store();
    block_on(async {
        let keep = Path::from("d/keep");
        let gone = Path::from("d/gone");
        for p in [&keep, &gone] {
            store
                .put(p, PutPayload::from_static(b"x"))
                .await
                .expect("put");
        }
        store.delete(&gone).await.expect("delete");
        assert!(absent(&*store, &gone).await, "deleted object is gone");
        assert!(!absent(&*store, &keep).await, "the other object stays");
        assert_eq!(
            list_paths(&*store, Some(&Path::from("d"))).await,
            ["d/keep"]
        );
        // S3 deletes are idempotent: deleting a missing key succeeds.
        store.delete(&gone).await.expect("delete of a missing key");
    });
}

fn flaky(seed: u64) -> (Arc<FlakyStore>, Arc<dyn ObjectStore>) {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    (Arc::new(FlakyStore::new(Arc::clone(&mem), seed)), mem)
}

#[test]
fn flaky_failed_put_leaves_no_object() {
    let (f, mem) = flaky(7);
    f.set_put_fail_ppm(PPM / 2);
    block_on(async {
        let (mut ok, mut failed) = (0, 0);
        for i in 0..200u64 {
            let p = Path::from(format!("p/{i}"));
            match f.put(&p, PutPayload::from(bytes(i, 64))).await {
                Ok(_) => {
                    ok += 1;
                    assert_eq!(read(&*mem, &p).await, bytes(i, 64));
                }
                Err(Error::Generic { .. }) => {
                    failed += 1;
                    assert!(absent(&*mem, &p).await, "failed put {p} left an object");
                }
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        assert_eq!(f.counts().put_failed, failed);
        assert!(
            (60..=140).contains(&failed),
            "about half of 200 puts fail at 50%: {failed} failed, {ok} ok"
        );
        assert_eq!(list_paths(&*mem, None).await.len(), ok);
    });
}

#[test]
fn flaky_faults_are_deterministic_from_the_seed() {
    let outcomes = |seed: u64| -> Vec<bool> {
        let (f, _mem) = flaky(seed);
        f.set_put_fail_ppm(PPM / 3);
        block_on(async {
            let mut v = Vec::new();
            for i in 0..100u64 {
                let r = f
                    .put(&Path::from(format!("k/{i}")), PutPayload::from_static(b"x"))
                    .await;
                v.push(r.is_ok());
            }
            v
        })
    };
    assert_eq!(outcomes(42), outcomes(42), "same seed, same faults");
    assert_ne!(outcomes(42), outcomes(43), "another seed, other faults");
}

#[test]
fn flaky_put_timeout_delays_then_fails() {
    let (f, mem) = flaky(1);
    f.set_put_timeout(PPM, Duration::from_millis(200));
    block_on(async {
        let p = Path::from("t/1");
        let t = Instant::now();
        let e = f
            .put(&p, PutPayload::from_static(b"x"))
            .await
            .expect_err("timed-out put fails");
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "the put was delayed"
        );
        assert!(matches!(e, Error::Generic { .. }), "{e:?}");
        assert!(absent(&*mem, &p).await);
        assert_eq!(f.counts().put_timed_out, 1);
    });
}

#[test]
fn flaky_failed_multipart_leaves_no_object() {
    let (f, mem) = flaky(3);
    f.set_multipart_fail(PPM, 2);
    block_on(async {
        let p = Path::from("m/big");
        let data = bytes(9, 12 << 20);
        // 4 parts of 3 MiB: 2 forwarded, 2 failed.
        let e = multipart(&*f, &p, &data, 3 << 20)
            .await
            .expect_err("upload fails partway");
        assert!(matches!(e, Error::Generic { .. }), "{e:?}");
        assert!(absent(&*mem, &p).await, "failed multipart left an object");
        // All parts forwarded, then `complete` fails: still no object.
        f.set_multipart_fail(PPM, u64::MAX);
        let e = multipart(&*f, &p, &data, 3 << 20)
            .await
            .expect_err("complete fails");
        assert!(matches!(e, Error::Generic { .. }), "{e:?}");
        assert!(absent(&*mem, &p).await, "failed complete left an object");
        let c = f.counts();
        assert_eq!((c.multipart_failed, c.parts_failed), (2, 2));
        assert!(list_paths(&*mem, None).await.is_empty());
    });
}

#[test]
fn flaky_get_faults() {
    let (f, _mem) = flaky(5);
    block_on(async {
        let p = Path::from("g/1");
        f.put(&p, PutPayload::from_static(b"data"))
            .await
            .expect("put");
        f.set_get_fail_ppm(PPM);
        assert!(matches!(f.get(&p).await, Err(Error::Generic { .. })));
        assert!(matches!(f.head(&p).await, Err(Error::Generic { .. })));
        assert_eq!(f.counts().get_failed, 2);
        f.set_get_fail_ppm(0);
        assert_eq!(read(&*f, &p).await, b"data");
    });
}

#[test]
fn flaky_with_faults_off_everything_passes() {
    let (f, mem) = flaky(11);
    f.set_put_fail_ppm(PPM);
    f.set_put_timeout(PPM, Duration::from_secs(60));
    f.set_multipart_fail(PPM, 0);
    f.set_get_fail_ppm(PPM);
    f.set_enabled(false);
    block_on(async {
        for i in 0..20u64 {
            let p = Path::from(format!("o/{i}"));
            f.put(&p, PutPayload::from(bytes(i, 1000)))
                .await
                .expect("put");
            assert_eq!(read(&*f, &p).await, bytes(i, 1000));
        }
        let big = bytes(100, 7 << 20);
        multipart(&*f, &Path::from("o/big"), &big, 5 << 20)
            .await
            .expect("multipart");
        assert_eq!(read(&*mem, &Path::from("o/big")).await, big);
        let create = PutOptions::from(PutMode::Create);
        let e = f
            .put_opts(&Path::from("o/0"), PutPayload::from_static(b"y"), create)
            .await
            .expect_err("create conflict");
        assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
        f.delete(&Path::from("o/0")).await.expect("delete");
        assert_eq!(list_paths(&*f, Some(&Path::from("o"))).await.len(), 20);
        assert_eq!(f.counts().total(), 0, "nothing injected while off");
    });
}
