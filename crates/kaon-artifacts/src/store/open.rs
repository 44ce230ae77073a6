//! Opening a store from a URL: a local folder, S3 (and S3-compatible
//! servers), HDFS, or memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;

use super::ArtifactStore;
use crate::ArtifactError;

impl ArtifactStore {
    /// Opens the store a URL names:
    /// - `file:///abs/dir` or a plain path (relative to `base`), created if
    ///   missing;
    /// - `s3://bucket/prefix`, configured from the standard `AWS_*`
    ///   variables (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    ///   `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, ...);
    /// - `hdfs://namenode:port/prefix` when built with the `hdfs` feature;
    /// - `memory://` for tests (lives as long as the value).
    pub fn open(url: &str, base: &Path) -> Result<ArtifactStore, ArtifactError> {
        Self::open_with(url, base, &[])
    }

    /// [`ArtifactStore::open`] with backend settings given explicitly, as
    /// `object_store` configuration keys (`aws_endpoint`,
    /// `aws_access_key_id`, `aws_allow_http`, ...). They win over the
    /// environment.
    pub fn open_with(
        url: &str,
        base: &Path,
        options: &[(String, String)],
    ) -> Result<ArtifactStore, ArtifactError> {
        let bad = |reason: String| ArtifactError::BadUrl {
            url: url.to_string(),
            reason,
        };
        if url == "memory://" || url == "memory:" {
            return Ok(ArtifactStore {
                inner: Arc::new(InMemory::new()),
                root: ObjPath::default(),
                url: "memory://".into(),
                staged: true,
                skip: Arc::default(),
            });
        }
        if let Some((scheme, _)) = url.split_once("://")
            && scheme != "file"
        {
            let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
            let root =
                ObjPath::parse(parsed.path().trim_matches('/')).map_err(|e| bad(e.to_string()))?;
            let inner: Arc<dyn ObjectStore> = match scheme {
                "s3" | "s3a" => {
                    let mut b = AmazonS3Builder::from_env()
                        .with_url(format!("s3://{}", parsed.host_str().unwrap_or_default()));
                    // A custom endpoint (MinIO, Ceph, s3s) rarely serves
                    // virtual-hosted buckets.
                    for (k, v) in options {
                        let key: object_store::aws::AmazonS3ConfigKey = k
                            .parse()
                            .map_err(|e: object_store::Error| bad(e.to_string()))?;
                        b = b.with_config(key, v);
                    }
                    if std::env::var_os("AWS_ENDPOINT").is_some()
                        || std::env::var_os("AWS_ENDPOINT_URL").is_some()
                        || options.iter().any(|(k, _)| k.contains("endpoint"))
                    {
                        b = b.with_virtual_hosted_style_request(false);
                        if let Some(e) = std::env::var_os("AWS_ENDPOINT_URL")
                            && std::env::var_os("AWS_ENDPOINT").is_none()
                        {
                            b = b.with_endpoint(e.to_string_lossy());
                        }
                    }
                    Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
                }
                #[cfg(feature = "hdfs")]
                "hdfs" | "viewfs" => Arc::new(
                    hdfs_native_object_store::HdfsObjectStoreBuilder::new()
                        .with_url(url)
                        .build()
                        .map_err(|e| bad(e.to_string()))?,
                ),
                #[cfg(not(feature = "hdfs"))]
                "hdfs" | "viewfs" => {
                    return Err(bad(
                        "this kaon was built without HDFS support (cargo feature `hdfs`)".into(),
                    ));
                }
                other => {
                    return Err(bad(format!(
                        "unknown scheme `{other}` (use file://, s3://, hdfs:// or memory://)"
                    )));
                }
            };
            return Ok(ArtifactStore {
                inner,
                root,
                url: url.trim_end_matches('/').to_string(),
                staged: false,
                skip: Arc::default(),
            });
        }
        let dir = match url.strip_prefix("file://") {
            Some(p) => PathBuf::from(p),
            None => base.join(url),
        };
        std::fs::create_dir_all(&dir).map_err(ArtifactError::io(&dir))?;
        let dir = dir.canonicalize().map_err(ArtifactError::io(&dir))?;
        // No fsync: a blob that a power loss kept from the disk is found
        // missing or corrupt by the digest check on its next read, and the
        // step that made it runs again. Atomicity (link into place) is what
        // readers rely on, and it holds either way.
        let inner = LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(e.to_string()))?;
        Ok(ArtifactStore {
            inner: Arc::new(inner),
            root: ObjPath::default(),
            url: format!("file://{}", dir.display()),
            staged: true,
            skip: Arc::new(vec![dir.clone()]),
        })
    }

    /// Leaves `dir` (if it exists) out of every folder this store stores.
    pub fn skipping(mut self, dir: &Path) -> ArtifactStore {
        if let Ok(c) = std::fs::canonicalize(dir) {
            let mut skip = self.skip.as_ref().clone();
            if !skip.contains(&c) {
                skip.push(c);
            }
            self.skip = Arc::new(skip);
        }
        self
    }
}
