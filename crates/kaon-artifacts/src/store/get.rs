//! Reading blobs back, always checked against their digest.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::ObjectStoreExt;
use prost::Message;
use tokio::io::AsyncWriteExt;

use super::{ArtifactStore, PART, is_not_found, temp_beside};
use crate::proto::{Manifest, Reference};
use crate::{ArtifactError, Digest};

impl ArtifactStore {
    /// Opens a blob for reading; a missing one is [`ArtifactError::Missing`].
    pub(super) async fn fetch(&self, d: &Digest) -> Result<object_store::GetResult, ArtifactError> {
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

    /// Bytes `range` of a blob (cut to the blob's end), for a look inside
    /// a large one without reading it all (a preview, a Parquet footer).
    ///
    /// The one read that is not checked against the digest: a part of a
    /// blob cannot be. Callers show what it returns, they never store or
    /// reuse it; [`ArtifactStore::read_stream`] checks the whole.
    pub async fn read_range_unchecked(
        &self,
        d: &Digest,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, ArtifactError> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        match self.inner.get_range(&self.blob(d), range).await {
            Ok(b) => Ok(b),
            Err(e) if is_not_found(&e) => Err(ArtifactError::Missing {
                digest: *d,
                store: self.url.clone(),
            }),
            Err(e) => Err(self.err()(e)),
        }
    }

    /// A blob's content as a stream of chunks, checked against its digest
    /// as it goes: the last chunk is held back until the whole has been
    /// hashed, and a blob that does not match ends the stream with
    /// [`ArtifactError::Corrupt`] instead, so a reader never gets all of a
    /// bad blob's bytes and a clean end. Memory stays at a few chunks of
    /// 1 MiB (a local blob) or the backend's own chunks, whatever the size.
    pub async fn read_stream(
        &self,
        d: &Digest,
    ) -> Result<BoxStream<'static, Result<Bytes, ArtifactError>>, ArtifactError> {
        let got = self.fetch(d).await?;
        let url = self.url.clone();
        let chunks: BoxStream<'static, Result<Bytes, ArtifactError>> = match got.payload {
            object_store::GetResultPayload::File(file, path) => local_chunks(file, path),
            object_store::GetResultPayload::Stream(s) => {
                let url = url.clone();
                s.map(move |c| {
                    c.map_err(|source| ArtifactError::Store {
                        store: url.clone(),
                        source,
                    })
                })
                .boxed()
            }
        };
        let state = Checked {
            chunks,
            hasher: blake3::Hasher::new(),
            held: None,
            digest: *d,
            url,
            done: false,
        };
        Ok(futures::stream::unfold(state, Checked::next).boxed())
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

    /// Hashes a blob's content, writing it to `to` when given. A local
    /// blob is read in [`PART`]-sized blocks on a blocking thread (the
    /// backend's own stream reads 8 KiB at a time); a remote one is
    /// streamed through a large write buffer.
    pub(super) async fn copy_out(
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
}

/// Blocks read from a local blob by [`ArtifactStore::read_stream`]: larger
/// than the backend's own stream (8 KiB a step on the blocking pool).
const STREAM_BLOCK: usize = 1 << 20;

/// Reads a local file on a blocking thread, a block at a time, two blocks
/// ahead of the reader at most.
fn local_chunks(
    mut file: std::fs::File,
    path: PathBuf,
) -> BoxStream<'static, Result<Bytes, ArtifactError>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, ArtifactError>>(2);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut buf = vec![0u8; STREAM_BLOCK];
            let item = match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(ArtifactError::io(&path)(e)),
            };
            let failed = item.is_err();
            // The reader went away: stop reading.
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }).boxed()
}

/// The state of a checked stream (see [`ArtifactStore::read_stream`]).
struct Checked {
    chunks: BoxStream<'static, Result<Bytes, ArtifactError>>,
    hasher: blake3::Hasher,
    /// The chunk read last, given out once the next one (or a clean end)
    /// is known.
    held: Option<Bytes>,
    digest: Digest,
    url: String,
    done: bool,
}

impl Checked {
    async fn next(mut self) -> Option<(Result<Bytes, ArtifactError>, Checked)> {
        if self.done {
            return None;
        }
        loop {
            match self.chunks.next().await {
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    self.hasher.update(&chunk);
                    if let Some(prev) = self.held.replace(chunk) {
                        return Some((Ok(prev), self));
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some((Err(e), self));
                }
                None => {
                    self.done = true;
                    let actual = Digest::from(self.hasher.finalize());
                    if actual != self.digest {
                        let e = ArtifactError::Corrupt {
                            digest: self.digest,
                            actual,
                            store: self.url.clone(),
                        };
                        return Some((Err(e), self));
                    }
                    let last = self.held.take()?;
                    return Some((Ok(last), self));
                }
            }
        }
    }
}
