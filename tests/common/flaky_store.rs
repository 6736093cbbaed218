//! [`FlakyStore`]: an `ObjectStore` wrapper that injects faults, chosen
//! deterministically from a seed, into the calls it forwards to the store
//! it wraps.
//!
//! Every knob is an atomic, so a test can change it while uploads run.
//! Rates are in parts per million of the calls of one kind; whether call
//! number `n` of a kind is hit depends only on the seed, the kind and `n`,
//! so a run with the same seed and the same call order injects the same
//! faults. Knobs:
//!
//! - [`FlakyStore::set_enabled`]: the master switch. Off, every call is
//!   forwarded untouched (and no call numbers are drawn).
//! - [`FlakyStore::set_put_fail_ppm`]: `put_opts` calls that fail at once
//!   with `Error::Generic` ("503 Service Unavailable"), without reaching
//!   the inner store.
//! - [`FlakyStore::set_put_timeout`]: `put_opts` calls that sleep for the
//!   given delay and then fail with `Error::Generic` ("timed out"), without
//!   reaching the inner store: a request that timed out before the server
//!   took it.
//! - [`FlakyStore::set_multipart_fail`]: multipart uploads (drawn when the
//!   upload is created) that forward their first `parts_ok` parts, fail
//!   every later part, and whose `complete` aborts the inner upload and
//!   fails, so no object is left.
//! - [`FlakyStore::set_get_fail_ppm`]: `get_opts` calls (so also `get`,
//!   `get_range` and `head`) that fail with `Error::Generic`.
//!
//! [`FlakyStore::counts`] tells how many faults of each kind were injected.
//! list, delete and copy are always forwarded untouched.
#![allow(dead_code)]

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_lite::future::FutureExt;
use futures_lite::stream::Stream;
use object_store::path::Path;
use object_store::{
    CopyOptions, Error, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

type BoxStream<T> = std::pin::Pin<Box<dyn Stream<Item = T> + Send>>;

/// The name `FlakyStore` gives itself in the errors it injects.
const STORE: &str = "FlakyStore";

/// One part per million: a rate of `PPM` is "every call".
pub const PPM: u32 = 1_000_000;

/// The kinds of call that draw a number, each from its own sequence.
#[derive(Clone, Copy)]
enum Kind {
    Put = 0,
    PutTimeout = 1,
    Multipart = 2,
    Get = 3,
}

/// How many faults a [`FlakyStore`] injected, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// `put_opts` calls failed at once with a 5xx-like error.
    pub put_failed: u64,
    /// `put_opts` calls delayed and then failed as timed out.
    pub put_timed_out: u64,
    /// Multipart uploads made to fail (counted when the upload is created).
    pub multipart_failed: u64,
    /// Parts of those uploads that were failed instead of forwarded.
    pub parts_failed: u64,
    /// `get_opts` calls failed.
    pub get_failed: u64,
}

impl FaultCounts {
    /// All faults injected, of every kind (parts not counted separately
    /// from their uploads).
    pub fn total(&self) -> u64 {
        self.put_failed + self.put_timed_out + self.multipart_failed + self.get_failed
    }
}

#[derive(Default)]
struct Knobs {
    enabled: AtomicBool,
    put_fail_ppm: AtomicU32,
    put_timeout_ppm: AtomicU32,
    put_timeout_ms: AtomicU64,
    multipart_fail_ppm: AtomicU32,
    multipart_parts_ok: AtomicU64,
    get_fail_ppm: AtomicU32,
    // Next call number of each `Kind`.
    draws: [AtomicU64; 4],
    put_failed: AtomicU64,
    put_timed_out: AtomicU64,
    multipart_failed: AtomicU64,
    parts_failed: AtomicU64,
    get_failed: AtomicU64,
}

/// An `ObjectStore` over `inner` that injects faults as set by its knobs
/// (see the module documentation). It starts enabled with every rate at 0,
/// that is injecting nothing.
pub struct FlakyStore {
    inner: Arc<dyn ObjectStore>,
    seed: u64,
    knobs: Arc<Knobs>,
}

/// SplitMix64's output function.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn injected(what: &str, location: &Path) -> Error {
    Error::Generic {
        store: STORE,
        source: format!("injected fault: {what} ({location})").into(),
    }
}

impl FlakyStore {
    /// Wrap `inner`; faults are drawn from `seed`.
    pub fn new(inner: Arc<dyn ObjectStore>, seed: u64) -> FlakyStore {
        let knobs = Knobs::default();
        knobs.enabled.store(true, Ordering::Relaxed);
        FlakyStore {
            inner,
            seed,
            knobs: Arc::new(knobs),
        }
    }

    /// The store this one forwards to.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Turn fault injection on or off as a whole. Off, every call goes
    /// straight to the inner store; the rates are kept for when it is
    /// turned on again.
    pub fn set_enabled(&self, on: bool) {
        self.knobs.enabled.store(on, Ordering::SeqCst);
    }

    /// Fail `ppm` parts per million of `put_opts` calls with a 5xx-like
    /// `Error::Generic`, before they reach the inner store.
    pub fn set_put_fail_ppm(&self, ppm: u32) {
        self.knobs
            .put_fail_ppm
            .store(ppm.min(PPM), Ordering::SeqCst);
    }

    /// Make `ppm` parts per million of `put_opts` calls (among those not
    /// already failed by [`FlakyStore::set_put_fail_ppm`]) sleep for `delay`
    /// and then fail as timed out, before they reach the inner store.
    pub fn set_put_timeout(&self, ppm: u32, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.knobs.put_timeout_ms.store(ms, Ordering::SeqCst);
        self.knobs
            .put_timeout_ppm
            .store(ppm.min(PPM), Ordering::SeqCst);
    }

    /// Make `ppm` parts per million of multipart uploads fail partway: each
    /// such upload forwards its first `parts_ok` parts to the inner upload,
    /// fails the later ones, and its `complete` aborts the inner upload and
    /// fails, leaving no object. Drawn when the upload is created.
    pub fn set_multipart_fail(&self, ppm: u32, parts_ok: u64) {
        self.knobs
            .multipart_parts_ok
            .store(parts_ok, Ordering::SeqCst);
        self.knobs
            .multipart_fail_ppm
            .store(ppm.min(PPM), Ordering::SeqCst);
    }

    /// Fail `ppm` parts per million of `get_opts` calls (`get`, `get_range`
    /// and `head` included) with `Error::Generic`.
    pub fn set_get_fail_ppm(&self, ppm: u32) {
        self.knobs
            .get_fail_ppm
            .store(ppm.min(PPM), Ordering::SeqCst);
    }

    /// How many faults were injected so far.
    pub fn counts(&self) -> FaultCounts {
        let k = &self.knobs;
        FaultCounts {
            put_failed: k.put_failed.load(Ordering::SeqCst),
            put_timed_out: k.put_timed_out.load(Ordering::SeqCst),
            multipart_failed: k.multipart_failed.load(Ordering::SeqCst),
            parts_failed: k.parts_failed.load(Ordering::SeqCst),
            get_failed: k.get_failed.load(Ordering::SeqCst),
        }
    }

    /// Whether the next call of `kind` is hit at `ppm`. Draws a call
    /// number only when injection is enabled and the rate is not 0.
    fn hit(&self, kind: Kind, ppm: u32) -> bool {
        if !self.knobs.enabled.load(Ordering::SeqCst) || ppm == 0 {
            return false;
        }
        let n = self.knobs.draws[kind as usize].fetch_add(1, Ordering::SeqCst);
        let r = mix64(self.seed ^ mix64(((kind as u64) << 56) ^ n));
        (r % u64::from(PPM)) < u64::from(ppm)
    }
}

impl fmt::Debug for FlakyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlakyStore")
            .field("inner", &self.inner)
            .field("seed", &self.seed)
            .field("counts", &self.counts())
            .finish()
    }
}

impl fmt::Display for FlakyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlakyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FlakyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let k = &self.knobs;
        if self.hit(Kind::Put, k.put_fail_ppm.load(Ordering::SeqCst)) {
            k.put_failed.fetch_add(1, Ordering::SeqCst);
            return Err(injected("put: 503 Service Unavailable", location));
        }
        if self.hit(Kind::PutTimeout, k.put_timeout_ppm.load(Ordering::SeqCst)) {
            let ms = k.put_timeout_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            k.put_timed_out.fetch_add(1, Ordering::SeqCst);
            return Err(injected("put: timed out", location));
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let k = &self.knobs;
        let fail = self.hit(Kind::Multipart, k.multipart_fail_ppm.load(Ordering::SeqCst));
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        if !fail {
            return Ok(inner);
        }
        k.multipart_failed.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FailingUpload {
            inner,
            location: location.clone(),
            parts_ok: k.multipart_parts_ok.load(Ordering::SeqCst),
            parts: 0,
            knobs: Arc::clone(&self.knobs),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let k = &self.knobs;
        if self.hit(Kind::Get, k.get_fail_ppm.load(Ordering::SeqCst)) {
            k.get_failed.fetch_add(1, Ordering::SeqCst);
            return Err(injected("get: 500 Internal Server Error", location));
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<Result<Path>>) -> BoxStream<Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A multipart upload chosen to fail: forwards `parts_ok` parts, fails the
/// rest, and aborts the inner upload on `complete`.
struct FailingUpload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
    parts_ok: u64,
    parts: u64,
    knobs: Arc<Knobs>,
}

impl fmt::Debug for FailingUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailingUpload")
            .field("location", &self.location)
            .field("parts_ok", &self.parts_ok)
            .field("parts", &self.parts)
            .finish()
    }
}

#[async_trait]
impl MultipartUpload for FailingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.parts += 1;
        if self.parts <= self.parts_ok {
            return self.inner.put_part(data);
        }
        self.knobs.parts_failed.fetch_add(1, Ordering::SeqCst);
        let e = injected("upload part: 503 Service Unavailable", &self.location);
        async move { Err(e) }.boxed()
    }

    async fn complete(&mut self) -> Result<PutResult> {
        // Whatever the abort says, the upload did not complete.
        let _ = self.inner.abort().await;
        Err(injected(
            "complete multipart upload: 500 Internal Server Error",
            &self.location,
        ))
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}
