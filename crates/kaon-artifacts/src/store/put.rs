//! Storing files and folders: streamed, hashed on the way, visible under
//! their digest only when complete.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use prost::Message;
use tokio::sync::mpsc;

use super::walk::{Links, walk};
use super::{
    ArtifactKind, ArtifactStore, CONCURRENCY, PART, Stored, failpoint, is_exists, is_not_found,
    is_unsupported, unique,
};
use crate::proto::{Manifest, ManifestEntry};
use crate::{ArtifactError, Digest};

impl ArtifactStore {
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
