//! Checking blobs against their digests, and moving bad ones aside.

use object_store::ObjectStoreExt;

use super::{ArtifactStore, unique};
use crate::{ArtifactError, Digest};

impl ArtifactStore {
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
}
