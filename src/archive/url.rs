//! [`ArchiveConfig::from_url`](super::ArchiveConfig::from_url): an object
//! store from a URL, through `object_store`'s own builders.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjPath;

use super::ArchiveConfig;
use crate::error::{Error, Result};

pub(super) fn parse(url: &str) -> Result<ArchiveConfig> {
    let bad = |why: String| Error::Config(format!("archive URL {url:?}: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected file:///path, memory:// or s3://bucket/prefix".into()))?;
    let (store, prefix): (Arc<dyn ObjectStore>, ObjPath) = match scheme {
        "file" => {
            if !rest.starts_with('/') {
                return Err(bad("a file URL needs an absolute path".into()));
            }
            std::fs::create_dir_all(rest).map_err(|e| Error::io("create directory", rest, e))?;
            // object_store's local backend renames a written temp file into
            // place but does not fsync it unless asked: an archived epoch
            // must survive a power loss of the archive's machine too.
            let fs = object_store::local::LocalFileSystem::new_with_prefix(rest)
                .map_err(|e| bad(e.to_string()))?
                .with_fsync(true);
            (Arc::new(fs), ObjPath::default())
        }
        "memory" => (
            Arc::new(object_store::memory::InMemory::new()),
            ObjPath::from(rest),
        ),
        "s3" => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket".into()));
            }
            (s3_store(bucket).map_err(bad)?, ObjPath::from(prefix))
        }
        other => return Err(bad(format!("unknown scheme {other:?}"))),
    };
    Ok(ArchiveConfig::new(store, prefix))
}

/// The S3 client for `bucket`, configured from the `AWS_*` environment.
#[cfg(feature = "s3")]
fn s3_store(bucket: &str) -> std::result::Result<Arc<dyn ObjectStore>, String> {
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(s3))
}

/// Without the `s3` feature there is no S3 client to build.
#[cfg(not(feature = "s3"))]
fn s3_store(_bucket: &str) -> std::result::Result<Arc<dyn ObjectStore>, String> {
    Err("this shardwal was built without S3 support: build it with the `s3` cargo feature".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        let d = tempfile::tempdir().unwrap();
        let url = format!("file://{}/a", d.path().display());
        assert!(parse(&url).is_ok());
        assert!(d.path().join("a").is_dir());
        assert_eq!(parse("memory://x/y").unwrap().prefix, ObjPath::from("x/y"));
        assert!(parse("file://relative").is_err());
        assert!(parse("ftp://x").is_err());
        assert!(parse("nothing").is_err());
        assert!(parse("s3:///x").is_err());
        #[cfg(not(feature = "s3"))]
        assert!(
            parse("s3://bucket/p")
                .unwrap_err()
                .to_string()
                .contains("`s3` cargo feature")
        );
    }
}
