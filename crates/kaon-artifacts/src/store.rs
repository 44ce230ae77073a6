use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::proto::{Manifest, ManifestEntry, Reference, ReferenceEntry};
use crate::{ArtifactError, Digest};

/// Chunk size for reads, hashing and multipart parts: S3 needs parts of at
/// least 5 MiB, and 8 MiB keeps two in flight well under memory limits.
const PART: usize = 8 << 20;
/// Parts in flight per upload.
const CONCURRENCY: usize = 2;

/// What an artifact's digest names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// A file: the digest is its content's.
    File,
    /// A folder: the digest is its manifest's.
    Dir,
    /// Files left in place: the digest is the reference record's.
    Reference,
}

impl ArtifactKind {
    /// `file`, `dir` or `reference`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::File => "file",
            ArtifactKind::Dir => "dir",
            ArtifactKind::Reference => "reference",
        }
    }
}

impl std::str::FromStr for ArtifactKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "file" => Ok(ArtifactKind::File),
            "dir" => Ok(ArtifactKind::Dir),
            "reference" => Ok(ArtifactKind::Reference),
            other => Err(format!("unknown artifact kind `{other}`")),
        }
    }
}

/// What a put stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The digest the artifact is known by.
    pub digest: Digest,
    /// Bytes of content (the sum over a folder's files).
    pub size: u64,
    /// File, folder or reference.
    pub kind: ArtifactKind,
    /// Number of files (1 for a file).
    pub files: u64,
}

/// What [`ArtifactStore::materialize`] does with a file that is already at
/// one of the artifact's paths with other content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Fail before writing anything (`kaon artifacts get`).
    Refuse,
    /// Replace it (a memo restore at the step's own declared output, which
    /// running the step would have overwritten too; `get --force`).
    Replace,
}

/// A content-addressed blob store over an [`ObjectStore`].
///
/// Contract:
/// - `put_*` returns the digest of what was stored; storing content that is
///   already there gives the same result and leaves one blob. On a local
///   store that put replaces the blob atomically with the copy it just
///   checked (so a blob that went bad is repaired); on a remote store a
///   blob of the wrong size is replaced, others are kept. A blob becomes visible
///   under its digest only when complete: an interrupted put leaves nothing
///   under `blobs/` (at most an unreferenced object under `tmp/`, which
///   [`ArtifactStore::clean_tmp`] removes).
/// - Every read checks the content against the digest and fails with
///   [`ArtifactError::Corrupt`] naming the blob instead of returning bad
///   bytes; a local destination is written to a temporary name and renamed
///   only after the check.
/// - Files are streamed in [`PART`]-sized chunks, never read whole.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
    root: ObjPath,
    url: String,
    /// Local-like stores (file, memory) take one pass: stream to `tmp/`
    /// while hashing, then link into place if absent. Remote stores hash
    /// first so content already there is never uploaded again.
    staged: bool,
    /// Folders never stored as part of a folder output (canonical paths):
    /// a local store's own root, and what [`ArtifactStore::skipping`] adds
    /// (kaon's data directory), so that an output folder that holds them
    /// does not take in the database, the secret and every blob.
    skip: Arc<Vec<PathBuf>>,
}

/// Test hook: `KAON_FAILPOINT=<name>` makes the process die (SIGABRT, no
/// clean-up, like a SIGKILL) at the named point, so tests can check what
/// a crash there leaves behind. Shared by kaon's crates (the Spark
/// executor has its own points).
#[doc(hidden)]
pub fn failpoint(name: &str) {
    if std::env::var("KAON_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("kaon: failpoint {name}: aborting");
        std::process::abort();
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{nanos:x}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

fn is_exists(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

fn is_unsupported(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }
    )
}

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

    /// The store's URL (a `file://` URL with an absolute path for local stores).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn at(&self, parts: &[&str]) -> ObjPath {
        let mut p = self.root.clone();
        for part in parts {
            p = p.clone().join(*part);
        }
        p
    }

    /// Where a blob lives: `blobs/<first two hex digits>/<hex>`.
    pub fn blob_path(&self, d: &Digest) -> String {
        let hex = d.hex();
        self.at(&["blobs", &hex[..2], &hex]).to_string()
    }

    fn blob(&self, d: &Digest) -> ObjPath {
        let hex = d.hex();
        self.at(&["blobs", &hex[..2], &hex])
    }

    fn err(&self) -> impl FnOnce(object_store::Error) -> ArtifactError + '_ {
        move |source| ArtifactError::Store {
            store: self.url.clone(),
            source,
        }
    }

    /// True when the blob exists.
    pub async fn contains(&self, d: &Digest) -> Result<bool, ArtifactError> {
        match self.inner.head(&self.blob(d)).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.err()(e)),
        }
    }

    /// Whether the remote object at `at` (a blob) is there with the size
    /// its content has: reading back every object would cost a download
    /// per put, so `kaon artifacts verify` checks remote content. Missing
    /// is not sound.
    async fn sound_at(&self, at: &ObjPath, size: u64) -> Result<bool, ArtifactError> {
        match self.inner.head(at).await {
            Ok(m) => Ok(m.size == size),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.err()(e)),
        }
    }

    /// Reads every blob through and returns those whose content does not
    /// hash to their name, with what it hashes to.
    pub async fn check_all(&self) -> Result<Vec<(Digest, Digest)>, ArtifactError> {
        let mut bad = Vec::new();
        for (d, _, _) in self.blobs().await? {
            match self.verify(&d).await {
                Ok(_) | Err(ArtifactError::Missing { .. }) => {}
                Err(ArtifactError::Corrupt { actual, .. }) => bad.push((d, actual)),
                Err(e) => return Err(e),
            }
        }
        Ok(bad)
    }

    /// Moves a blob out of `blobs/` into `corrupt/` (kept for inspection,
    /// never deleted): the blob is then missing, so nothing reuses it and
    /// the next put of its content writes it anew.
    pub async fn quarantine(&self, d: &Digest) -> Result<String, ArtifactError> {
        let to = self.at(&["corrupt", &format!("{}-{}", d.hex(), unique())]);
        self.inner
            .rename(&self.blob(d), &to)
            .await
            .map_err(self.err())?;
        Ok(to.to_string())
    }

    /// Stores bytes held in memory (manifests, small values).
    pub async fn put_bytes(&self, bytes: Bytes) -> Result<Digest, ArtifactError> {
        let d = Digest::of(&bytes);
        if !self.staged && self.sound_at(&self.blob(&d), bytes.len() as u64).await? {
            return Ok(d);
        }
        self.create(&self.blob(&d), bytes).await?;
        Ok(d)
    }

    /// A put-if-absent of a whole object; an existing object is success
    /// (same name, same content).
    async fn create(&self, at: &ObjPath, bytes: Bytes) -> Result<(), ArtifactError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(at, PutPayload::from_bytes(bytes.clone()), opts)
            .await
        {
            Ok(_) => Ok(()),
            // Same name: the same content unless the blob went bad, in
            // which case this put is the repair. Locally, writing it again
            // is cheaper than reading it back; remotely the size is asked.
            Err(e) if is_exists(&e) => {
                if !self.staged && self.sound_at(at, bytes.len() as u64).await? {
                    Ok(())
                } else {
                    self.inner
                        .put(at, PutPayload::from_bytes(bytes))
                        .await
                        .map(|_| ())
                        .map_err(self.err())
                }
            }
            // Stores without conditional writes: a plain put of identical
            // content is atomic and harmless.
            Err(e) if is_unsupported(&e) => self
                .inner
                .put(at, PutPayload::from_bytes(bytes))
                .await
                .map(|_| ())
                .map_err(self.err()),
            Err(e) => Err(self.err()(e)),
        }
    }

    /// Stores a file or a folder.
    pub async fn put_path(&self, path: &Path) -> Result<Stored, ArtifactError> {
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(ArtifactError::io(path))?;
        if meta.is_dir() {
            self.put_dir(path).await
        } else if meta.is_file() {
            self.put_file(path).await
        } else {
            Err(ArtifactError::NotFileOrDir {
                path: path.to_path_buf(),
            })
        }
    }

    /// Stores one file, streaming it.
    pub async fn put_file(&self, path: &Path) -> Result<Stored, ArtifactError> {
        let (digest, size) = if self.staged {
            self.put_staged(path).await?
        } else {
            self.put_hash_first(path).await?
        };
        Ok(Stored {
            digest,
            size,
            kind: ArtifactKind::File,
            files: 1,
        })
    }

    /// Streams `path` into a multipart upload at `to`, hashing on the way;
    /// returns the upload unfinished so the caller decides on its fate.
    async fn stream(
        &self,
        path: &Path,
        to: &ObjPath,
    ) -> Result<(WriteMultipart, Digest, u64), ArtifactError> {
        let upload = self.inner.put_multipart(to).await.map_err(self.err())?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let (mut rx, reader) = read_chunks(path.to_path_buf());
        let mut size = 0u64;
        while let Some(chunk) = rx.recv().await {
            if let Err(e) = w.wait_for_capacity(CONCURRENCY).await {
                let _ = w.abort().await;
                return Err(self.err()(e));
            }
            size += chunk.len() as u64;
            w.put(chunk);
        }
        match reader.await {
            Ok(Ok(hash)) => Ok((w, hash, size)),
            Ok(Err(e)) => {
                let _ = w.abort().await;
                Err(e)
            }
            Err(e) => {
                let _ = w.abort().await;
                Err(ArtifactError::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::other(e),
                })
            }
        }
    }

    async fn put_staged(&self, path: &Path) -> Result<(Digest, u64), ArtifactError> {
        let tmp = self.at(&["tmp", &unique()]);
        let (w, digest, size) = self.stream(path, &tmp).await?;
        w.finish().await.map_err(self.err())?;
        failpoint("artifact-put");
        let blob = self.blob(&digest);
        let result = match self.inner.copy_if_not_exists(&tmp, &blob).await {
            Ok(()) => Ok(()),
            // The blob exists. What was just streamed to `tmp/` hashes to
            // its name, so putting it in place (link, then rename: atomic,
            // no bytes copied) costs less than reading the blob back to
            // check it, and replaces a blob that went bad.
            Err(e) if is_exists(&e) => self.inner.copy(&tmp, &blob).await.map_err(self.err()),
            Err(e) if is_unsupported(&e) => self
                .inner
                .copy(&tmp, &self.blob(&digest))
                .await
                .map_err(self.err()),
            Err(e) => Err(self.err()(e)),
        };
        let _ = self.inner.delete(&tmp).await;
        result.map(|()| (digest, size))
    }

    async fn put_hash_first(&self, path: &Path) -> Result<(Digest, u64), ArtifactError> {
        let (mut rx, reader) = read_chunks(path.to_path_buf());
        let mut size = 0u64;
        let mut small: Vec<Bytes> = Vec::new();
        while let Some(chunk) = rx.recv().await {
            size += chunk.len() as u64;
            if size <= PART as u64 {
                small.push(chunk);
            } else {
                small.clear();
            }
        }
        let digest = reader.await.map_err(|e| ArtifactError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })??;
        if self.sound_at(&self.blob(&digest), size).await? {
            return Ok((digest, size));
        }
        if size <= PART as u64 {
            let bytes: Bytes = small.concat().into();
            self.create(&self.blob(&digest), bytes).await?;
            return Ok((digest, size));
        }
        // The object appears under its digest only when the multipart
        // upload completes, and it completes only if what was sent hashes
        // to the digest computed above.
        let (w, again, _) = self.stream(path, &self.blob(&digest)).await?;
        if again != digest {
            let _ = w.abort().await;
            return Err(ArtifactError::Changed {
                path: path.to_path_buf(),
            });
        }
        w.finish().await.map_err(self.err())?;
        Ok((digest, size))
    }

    /// Stores a folder: each file, then its manifest.
    pub async fn put_dir(&self, path: &Path) -> Result<Stored, ArtifactError> {
        let files = walk(path, Links::Inside, &self.skip)?;
        let mut entries = Vec::with_capacity(files.len());
        let mut total = 0u64;
        let stored = futures::stream::iter(files.into_iter().map(|(rel, abs, exec)| async move {
            self.put_file(&abs).await.map(|s| (rel, s, exec))
        }))
        .buffered(4)
        .collect::<Vec<_>>()
        .await;
        for r in stored {
            let (rel, s, executable) = r?;
            total += s.size;
            entries.push(ManifestEntry {
                path: rel,
                digest: s.digest.to_string(),
                size: s.size,
                executable,
            });
        }
        let n = entries.len() as u64;
        let digest = self
            .put_bytes(Manifest { entries }.encode_to_vec().into())
            .await?;
        Ok(Stored {
            digest,
            size: total,
            kind: ArtifactKind::Dir,
            files: n,
        })
    }

    /// Opens a blob for reading; a missing one is [`ArtifactError::Missing`].
    async fn fetch(&self, d: &Digest) -> Result<object_store::GetResult, ArtifactError> {
        match self.inner.get(&self.blob(d)).await {
            Ok(g) => Ok(g),
            Err(e) if is_not_found(&e) => Err(ArtifactError::Missing {
                digest: *d,
                store: self.url.clone(),
            }),
            Err(e) => Err(self.err()(e)),
        }
    }

    /// A whole blob, checked. Meant for small blobs (manifests).
    pub async fn read_bytes(&self, d: &Digest) -> Result<Bytes, ArtifactError> {
        let got = self.fetch(d).await?;
        let bytes = got.bytes().await.map_err(self.err())?;
        let actual = Digest::of(&bytes);
        if actual != *d {
            return Err(ArtifactError::Corrupt {
                digest: *d,
                actual,
                store: self.url.clone(),
            });
        }
        Ok(bytes)
    }

    /// A folder's manifest.
    pub async fn manifest(&self, d: &Digest) -> Result<Manifest, ArtifactError> {
        let bytes = self.read_bytes(d).await?;
        Manifest::decode(bytes).map_err(|e| ArtifactError::BadRecord {
            digest: *d,
            what: "manifest",
            reason: e.to_string(),
        })
    }

    /// A reference record.
    pub async fn reference(&self, d: &Digest) -> Result<Reference, ArtifactError> {
        let bytes = self.read_bytes(d).await?;
        Reference::decode(bytes).map_err(|e| ArtifactError::BadRecord {
            digest: *d,
            what: "reference",
            reason: e.to_string(),
        })
    }

    /// Streams a blob to a local file: written beside `dest` under a
    /// temporary name, renamed into place only when its digest checks.
    pub async fn get_file(&self, d: &Digest, dest: &Path) -> Result<u64, ArtifactError> {
        let got = self.fetch(d).await?;
        if let Some(parent) = dest.parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(ArtifactError::io(parent))?;
        }
        let tmp = temp_beside(dest);
        let result = async {
            let (actual, size) = self.copy_out(got, Some(&tmp)).await?;
            if actual != *d {
                return Err(ArtifactError::Corrupt {
                    digest: *d,
                    actual,
                    store: self.url.clone(),
                });
            }
            tokio::fs::rename(&tmp, dest)
                .await
                .map_err(ArtifactError::io(dest))?;
            Ok(size)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Puts an artifact at `dest`, merging into what is there: files the
    /// artifact holds are written (each to a temporary name beside it,
    /// renamed once its digest checks), files already identical are left
    /// as they are, and nothing else under `dest` is touched or removed.
    /// A file (or link) at one of the artifact's paths with other content
    /// is replaced only with [`Existing::Replace`]; with
    /// [`Existing::Refuse`] the call fails before writing anything. A
    /// folder or a file standing where the artifact needs the other is an
    /// error, never removed, and no link at or under `dest` is written
    /// through. Returns how many files were written.
    pub async fn materialize(
        &self,
        kind: ArtifactKind,
        d: &Digest,
        dest: &Path,
        existing: Existing,
    ) -> Result<u64, ArtifactError> {
        let plan = self.plan_restore(kind, d, dest, existing).await?;
        self.apply(plan).await
    }

    /// What [`ArtifactStore::materialize`] would write, decided without
    /// writing anything: the checks happen here, so a caller can choose
    /// something else when the destination refuses the artifact
    /// ([`ArtifactError::is_in_the_way`]).
    pub async fn plan_restore(
        &self,
        kind: ArtifactKind,
        d: &Digest,
        dest: &Path,
        existing: Existing,
    ) -> Result<RestorePlan, ArtifactError> {
        let entries: Vec<(PathBuf, Digest, bool)> = match kind {
            ArtifactKind::File => vec![(PathBuf::new(), *d, false)],
            ArtifactKind::Dir => {
                let manifest = self.manifest(d).await?;
                let mut out = Vec::with_capacity(manifest.entries.len());
                for e in &manifest.entries {
                    let rel = safe_relative(&e.path).ok_or_else(|| ArtifactError::BadRecord {
                        digest: *d,
                        what: "manifest",
                        reason: format!("entry path `{}` leaves the folder", e.path),
                    })?;
                    let fd = e.digest.parse().map_err(|err: crate::BadDigest| {
                        ArtifactError::BadRecord {
                            digest: *d,
                            what: "manifest",
                            reason: err.to_string(),
                        }
                    })?;
                    out.push((rel, fd, e.executable));
                }
                out
            }
            // A reference is never copied: its files are where they are.
            ArtifactKind::Reference => return Ok(RestorePlan::default()),
        };
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || plan_writes(kind, &dest, entries, existing))
            .await
            .map_err(|e| ArtifactError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            })?
    }

    /// Carries out a plan from [`ArtifactStore::plan_restore`]; returns
    /// how many files were written.
    pub async fn apply(&self, plan: RestorePlan) -> Result<u64, ArtifactError> {
        if let Some(dir) = &plan.folder {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(ArtifactError::io(dir))?;
        }
        let mut written = 0;
        for (target, fd, executable) in plan.writes {
            self.get_file(&fd, &target).await?;
            if executable {
                set_executable(&target)?;
            }
            written += 1;
            failpoint("artifact-restore");
        }
        for p in plan.chmods {
            set_executable(&p)?;
        }
        Ok(written)
    }

    /// Reads a blob through and checks it.
    pub async fn verify(&self, d: &Digest) -> Result<u64, ArtifactError> {
        let got = self.fetch(d).await?;
        let (actual, size) = self.copy_out(got, None).await?;
        if actual != *d {
            return Err(ArtifactError::Corrupt {
                digest: *d,
                actual,
                store: self.url.clone(),
            });
        }
        Ok(size)
    }

    /// Hashes a blob's content, writing it to `to` when given. A local
    /// blob is read in [`PART`]-sized blocks on a blocking thread (the
    /// backend's own stream reads 8 KiB at a time); a remote one is
    /// streamed through a large write buffer.
    async fn copy_out(
        &self,
        got: object_store::GetResult,
        to: Option<&Path>,
    ) -> Result<(Digest, u64), ArtifactError> {
        use std::io::Write;
        let to = to.map(Path::to_path_buf);
        if let object_store::GetResultPayload::File(mut file, path) = got.payload {
            return tokio::task::spawn_blocking(move || {
                // Reading and hashing here, writing on a second thread: the
                // two overlap, as in a put.
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
                let writer = match &to {
                    Some(p) => {
                        let mut out = std::fs::File::create(p).map_err(ArtifactError::io(p))?;
                        let p = p.clone();
                        Some(std::thread::spawn(move || -> Result<(), ArtifactError> {
                            for block in rx {
                                out.write_all(&block).map_err(ArtifactError::io(&p))?;
                            }
                            Ok(())
                        }))
                    }
                    None => None,
                };
                let mut hasher = blake3::Hasher::new();
                let mut size = 0u64;
                let mut failed = None;
                loop {
                    let mut buf = vec![0u8; PART];
                    let n = match file.read(&mut buf) {
                        Ok(n) => n,
                        Err(e) => {
                            failed = Some(ArtifactError::io(&path)(e));
                            break;
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    buf.truncate(n);
                    hasher.update(&buf);
                    size += n as u64;
                    if writer.is_some() && tx.send(buf).is_err() {
                        break;
                    }
                }
                drop(tx);
                if let Some(w) = writer {
                    match w.join() {
                        Ok(r) => r?,
                        Err(_) => {
                            return Err(ArtifactError::Io {
                                path: path.clone(),
                                source: std::io::Error::other("the writer thread panicked"),
                            });
                        }
                    }
                }
                if let Some(e) = failed {
                    return Err(e);
                }
                Ok((Digest::from(hasher.finalize()), size))
            })
            .await
            .map_err(|e| ArtifactError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            })?;
        }
        let mut out = match &to {
            Some(p) => Some(tokio::io::BufWriter::with_capacity(
                PART,
                tokio::fs::File::create(p)
                    .await
                    .map_err(ArtifactError::io(p))?,
            )),
            None => None,
        };
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(self.err())?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            if let (Some(o), Some(p)) = (out.as_mut(), to.as_ref()) {
                o.write_all(&chunk).await.map_err(ArtifactError::io(p))?;
            }
        }
        if let (Some(o), Some(p)) = (out.as_mut(), to.as_ref()) {
            o.flush().await.map_err(ArtifactError::io(p))?;
        }
        Ok((Digest::from(hasher.finalize()), size))
    }

    /// Every blob: digest, size and when it was written. Objects under
    /// `blobs/` whose names are not digests are left out.
    pub async fn blobs(&self) -> Result<Vec<(Digest, u64, SystemTime)>, ArtifactError> {
        let prefix = self.at(&["blobs"]);
        let mut out = Vec::new();
        let mut list = self.inner.list(Some(&prefix));
        while let Some(m) = list.next().await {
            let m = m.map_err(self.err())?;
            if let Some(name) = m.location.filename()
                && let Ok(d) = name.parse::<Digest>()
            {
                out.push((d, m.size, SystemTime::from(m.last_modified)));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes a blob (garbage collection). Deleting a missing blob is fine.
    pub async fn delete(&self, d: &Digest) -> Result<(), ArtifactError> {
        match self.inner.delete(&self.blob(d)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.err()(e)),
        }
    }

    /// Removes leftovers of interrupted puts older than `age`; returns how
    /// many.
    pub async fn clean_tmp(&self, age: std::time::Duration) -> Result<usize, ArtifactError> {
        let prefix = self.at(&["tmp"]);
        let cutoff = SystemTime::now() - age;
        let mut n = 0;
        let mut list = self.inner.list(Some(&prefix));
        let mut old = Vec::new();
        while let Some(m) = list.next().await {
            let m = m.map_err(self.err())?;
            if SystemTime::from(m.last_modified) < cutoff {
                old.push(m.location);
            }
        }
        for p in old {
            if self.inner.delete(&p).await.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Reads a file in [`PART`] chunks on a blocking thread, hashing as it
/// goes; chunks arrive on the channel (two at most wait, so memory stays
/// bounded), the digest comes from the task.
fn read_chunks(
    path: PathBuf,
) -> (
    mpsc::Receiver<Bytes>,
    tokio::task::JoinHandle<Result<Digest, ArtifactError>>,
) {
    let (tx, rx) = mpsc::channel(CONCURRENCY);
    let task = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).map_err(ArtifactError::io(&path))?;
        let mut hasher = blake3::Hasher::new();
        loop {
            let mut buf = vec![0u8; PART];
            let mut filled = 0;
            while filled < PART {
                let n = file
                    .read(&mut buf[filled..])
                    .map_err(ArtifactError::io(&path))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            hasher.update(&buf);
            if tx.blocking_send(Bytes::from(buf)).is_err() {
                break;
            }
            if filled < PART {
                break;
            }
        }
        Ok(Digest::from(hasher.finalize()))
    });
    (rx, task)
}

/// Which symbolic links [`walk`] follows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Links {
    /// Only those that stay inside the root (what is stored).
    Inside,
    /// All (code that is only read and hashed, e.g. a `lib -> ../shared`).
    All,
}

/// The files under `root`: (relative "/"-path, absolute path, executable),
/// sorted by relative path. A symbolic link is followed when it leads to a
/// file or folder inside `root` and, with [`Links::Inside`], is an error
/// when it leads out of it: an output stores what its step wrote, never
/// `/etc/passwd` by way of a link. A link back to a folder it is in is an
/// error either way (the walk would never end).
fn walk(
    root: &Path,
    links: Links,
    skip: &[PathBuf],
) -> Result<Vec<(String, PathBuf, bool)>, ArtifactError> {
    let croot = std::fs::canonicalize(root).map_err(ArtifactError::io(root))?;
    let mut out = Vec::new();
    // Each folder with the canonical folders that lead to it: a link to
    // one of them is a loop.
    let mut stack = vec![(root.to_path_buf(), String::new(), vec![croot.clone()])];
    while let Some((dir, rel, chain)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(ArtifactError::io(&dir))?;
        for entry in rd {
            let entry = entry.map_err(ArtifactError::io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temp_name(&name) {
                continue;
            }
            let path = entry.path();
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let link = entry
                .file_type()
                .map_err(ArtifactError::io(&path))?
                .is_symlink();
            let canonical = if link {
                let target = std::fs::canonicalize(&path).map_err(ArtifactError::io(&path))?;
                if links == Links::Inside && !target.starts_with(&croot) {
                    return Err(ArtifactError::LinkOutside {
                        link: path,
                        target,
                        root: root.to_path_buf(),
                    });
                }
                target
            } else {
                chain.last().map(|c| c.join(&name)).unwrap_or_default()
            };
            let meta = std::fs::metadata(&path).map_err(ArtifactError::io(&path))?;
            if meta.is_dir() {
                if skip.contains(&canonical) {
                    continue;
                }
                if chain.contains(&canonical) {
                    return Err(ArtifactError::LinkLoop {
                        link: path,
                        target: canonical,
                    });
                }
                let mut next = chain.clone();
                next.push(canonical);
                stack.push((path, child, next));
            } else if meta.is_file() {
                out.push((child, path, is_executable(&meta)));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The temporary name of a file kaon is putting in place (see
/// [`temp_beside`]): one left by a crash is not part of an output.
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".kaon-")
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

#[cfg(unix)]
fn set_executable(p: &Path) -> Result<(), ArtifactError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p).map_err(ArtifactError::io(p))?;
    let mut perm = meta.permissions();
    perm.set_mode(perm.mode() | 0o111);
    std::fs::set_permissions(p, perm).map_err(ArtifactError::io(p))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<(), ArtifactError> {
    Ok(())
}

fn safe_relative(p: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in p.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return None;
        }
        out.push(part);
    }
    Some(out)
}

fn temp_beside(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "artifact".into());
    dest.with_file_name(format!(".{name}.kaon-{}", unique()))
}

/// Fails when a component of `path` below `root` (or `path` itself) is a
/// symbolic link, or a file where a folder is needed. Components that do
/// not exist yet are fine: they are created as folders.
pub fn no_link_below(root: &Path, path: &Path) -> Result<(), ArtifactError> {
    let Ok(rel) = path.strip_prefix(root) else {
        return Err(ArtifactError::Outside {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
        });
    };
    let mut at = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, c) in parts.iter().enumerate() {
        match c {
            std::path::Component::Normal(n) => at.push(n),
            std::path::Component::CurDir => continue,
            _ => {
                return Err(ArtifactError::Outside {
                    path: path.to_path_buf(),
                    root: root.to_path_buf(),
                });
            }
        }
        match std::fs::symlink_metadata(&at) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ArtifactError::io(&at)(e)),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ArtifactError::LinkInTheWay { path: at });
            }
            Ok(m) if !m.is_dir() && i + 1 < parts.len() => {
                return Err(ArtifactError::InTheWay {
                    path: at,
                    what: "a file",
                });
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Fails unless `path`, with every link resolved, lies inside `root`
/// (also resolved): what an output names must not be a link out of the
/// step's folder.
pub fn inside(path: &Path, root: &Path) -> Result<(), ArtifactError> {
    let croot = std::fs::canonicalize(root).map_err(ArtifactError::io(root))?;
    let target = std::fs::canonicalize(path).map_err(ArtifactError::io(path))?;
    if target.starts_with(&croot) {
        Ok(())
    } else {
        Err(ArtifactError::LinkOutside {
            link: path.to_path_buf(),
            target,
            root: root.to_path_buf(),
        })
    }
}

/// What putting an artifact in place writes: see
/// [`ArtifactStore::plan_restore`].
#[derive(Debug, Default)]
pub struct RestorePlan {
    /// The folder to create (a folder artifact's destination).
    folder: Option<PathBuf>,
    /// (target, digest, executable) of each file to write.
    writes: Vec<(PathBuf, Digest, bool)>,
    /// Files already right but for their executable bit.
    chmods: Vec<PathBuf>,
}

impl RestorePlan {
    /// True when everything is in place already.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.chmods.is_empty()
    }
}

/// Decides what [`ArtifactStore::apply`] writes, after checking that
/// nothing is in the way.
fn plan_writes(
    kind: ArtifactKind,
    dest: &Path,
    entries: Vec<(PathBuf, Digest, bool)>,
    existing: Existing,
) -> Result<RestorePlan, ArtifactError> {
    let mut plan = RestorePlan::default();
    match std::fs::symlink_metadata(dest) {
        // Files are written under a folder: never through a link to one.
        Ok(m) if kind == ArtifactKind::Dir && m.file_type().is_symlink() => {
            return Err(ArtifactError::LinkInTheWay {
                path: dest.to_path_buf(),
            });
        }
        Ok(m) if kind == ArtifactKind::Dir && !m.is_dir() => {
            return Err(ArtifactError::InTheWay {
                path: dest.to_path_buf(),
                what: "a file",
            });
        }
        Ok(m) if kind == ArtifactKind::File && m.is_dir() => {
            return Err(ArtifactError::InTheWay {
                path: dest.to_path_buf(),
                what: "a folder",
            });
        }
        Err(_) if kind == ArtifactKind::Dir => plan.folder = Some(dest.to_path_buf()),
        _ => {}
    }
    let mut conflicts = Vec::new();
    for (rel, d, executable) in entries {
        let target = if rel.as_os_str().is_empty() {
            dest.to_path_buf()
        } else {
            if let Some(parent) = rel.parent() {
                no_link_below(dest, &dest.join(parent))?;
            }
            dest.join(&rel)
        };
        match std::fs::symlink_metadata(&target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                plan.writes.push((target, d, executable))
            }
            Err(e) => return Err(ArtifactError::io(&target)(e)),
            Ok(m) if m.is_dir() => {
                return Err(ArtifactError::InTheWay {
                    path: target,
                    what: "a folder",
                });
            }
            // The rename that puts a file in place replaces a link (never
            // writes through it), but the link is the user's: it differs.
            Ok(m) if m.file_type().is_symlink() => {
                if existing == Existing::Refuse {
                    conflicts.push(target.clone());
                }
                plan.writes.push((target, d, executable));
            }
            Ok(m) => {
                if hash_file(&target)?.0 != d {
                    if existing == Existing::Refuse {
                        conflicts.push(target.clone());
                    }
                    plan.writes.push((target, d, executable));
                } else if executable && !is_executable(&m) {
                    plan.chmods.push(target);
                }
            }
        }
    }
    if !conflicts.is_empty() {
        let more = conflicts.len().saturating_sub(5);
        conflicts.truncate(5);
        return Err(ArtifactError::Conflicts {
            dest: dest.to_path_buf(),
            paths: conflicts,
            more,
        });
    }
    Ok(plan)
}

/// What `path` would be stored as, without storing it: its kind and
/// digest (a folder's manifest digest), or `None` when it does not exist.
/// Links follow the rule of storing (see [`walk`]).
pub async fn hash_path(path: &Path) -> Result<Option<(ArtifactKind, Digest)>, ArtifactError> {
    hash_with(path, Links::Inside).await
}

/// Like [`hash_path`], following every link: for code that a step only
/// reads (a memo key's `code` folders), where a link out of the folder is
/// the user's own layout, not a leak.
pub async fn hash_code(path: &Path) -> Result<Option<(ArtifactKind, Digest)>, ArtifactError> {
    hash_with(path, Links::All).await
}

async fn hash_with(
    path: &Path,
    links: Links,
) -> Result<Option<(ArtifactKind, Digest)>, ArtifactError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || hash_path_blocking(&path, links))
        .await
        .map_err(|e| ArtifactError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?
}

fn hash_file(path: &Path) -> Result<(Digest, u64), ArtifactError> {
    let mut file = std::fs::File::open(path).map_err(ArtifactError::io(path))?;
    let mut hasher = blake3::Hasher::new();
    let n = std::io::copy(&mut file, &mut hasher).map_err(ArtifactError::io(path))?;
    Ok((Digest::from(hasher.finalize()), n))
}

fn hash_path_blocking(
    path: &Path,
    links: Links,
) -> Result<Option<(ArtifactKind, Digest)>, ArtifactError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ArtifactError::io(path)(e)),
    };
    if meta.is_file() {
        return Ok(Some((ArtifactKind::File, hash_file(path)?.0)));
    }
    if !meta.is_dir() {
        return Err(ArtifactError::NotFileOrDir {
            path: path.to_path_buf(),
        });
    }
    let mut entries = Vec::new();
    for (rel, abs, executable) in walk(path, links, &[])? {
        let (d, size) = hash_file(&abs)?;
        entries.push(ManifestEntry {
            path: rel,
            digest: d.to_string(),
            size,
            executable,
        });
    }
    Ok(Some((
        ArtifactKind::Dir,
        Digest::of(&Manifest { entries }.encode_to_vec()),
    )))
}

/// Records the files under a URL (`s3://bucket/prefix/`, `file:///dir`,
/// or a path relative to `base`) without copying them.
/// `options` are backend settings as for [`ArtifactStore::open_with`].
pub async fn record_reference(
    url: &str,
    base: &Path,
    options: &[(String, String)],
) -> Result<Reference, ArtifactError> {
    let store = ArtifactStore::open_with(url, base, options)?;
    let prefix = store.root.clone();
    let mut entries = Vec::new();
    let mut list = store.inner.list(Some(&prefix));
    while let Some(m) = list.next().await {
        let m = m.map_err(store.err())?;
        let rel = m
            .location
            .prefix_match(&prefix)
            .map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| m.location.to_string());
        entries.push(ReferenceEntry {
            path: rel,
            size: m.size,
            e_tag: m.e_tag.unwrap_or_default(),
            last_modified_ms: m.last_modified.timestamp_millis(),
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Reference {
        url: store.url,
        entries,
    })
}

/// Lists a reference's URL again and says what differs (empty: unchanged).
pub async fn check_reference(
    r: &Reference,
    base: &Path,
    options: &[(String, String)],
) -> Result<Vec<String>, ArtifactError> {
    let now = record_reference(&r.url, base, options).await?;
    let mut diffs = Vec::new();
    let old: std::collections::BTreeMap<&str, &ReferenceEntry> =
        r.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let new: std::collections::BTreeMap<&str, &ReferenceEntry> =
        now.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    for (p, e) in &old {
        match new.get(p) {
            None => diffs.push(format!("{p}: gone")),
            Some(n) if n.size != e.size => {
                diffs.push(format!("{p}: size {} -> {}", e.size, n.size))
            }
            Some(n) if n.e_tag != e.e_tag || n.last_modified_ms != e.last_modified_ms => {
                diffs.push(format!("{p}: rewritten"))
            }
            Some(_) => {}
        }
    }
    for p in new.keys() {
        if !old.contains_key(p) {
            diffs.push(format!("{p}: new file"));
        }
    }
    Ok(diffs)
}

/// The media type of a stored path, from its name (folders of Parquet
/// parts, as Spark writes them, count as Parquet).
pub fn media_type(path: &Path, kind: ArtifactKind) -> String {
    let by_ext = |p: &Path| {
        let ext = p
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "parquet" => Some("application/vnd.apache.parquet"),
            "csv" => Some("text/csv"),
            "json" => Some("application/json"),
            "jsonl" | "ndjson" => Some("application/x-ndjson"),
            "txt" | "log" => Some("text/plain"),
            "md" => Some("text/markdown"),
            "tsv" => Some("text/tab-separated-values"),
            "zip" => Some("application/zip"),
            "gz" => Some("application/gzip"),
            "jar" => Some("application/java-archive"),
            _ => None,
        }
    };
    match kind {
        ArtifactKind::File => by_ext(path)
            .unwrap_or("application/octet-stream")
            .to_string(),
        ArtifactKind::Dir | ArtifactKind::Reference => {
            let parquet = std::fs::read_dir(path)
                .map(|rd| {
                    rd.flatten()
                        .any(|e| by_ext(&e.path()) == Some("application/vnd.apache.parquet"))
                })
                .unwrap_or(false);
            if parquet {
                "application/vnd.apache.parquet".into()
            } else {
                "inode/directory".into()
            }
        }
    }
}
