//! References: files left where a job wrote them, recorded by listing
//! and checked by listing again.

use std::path::Path;

use futures::StreamExt;

use super::ArtifactStore;
use crate::ArtifactError;
use crate::proto::{Reference, ReferenceEntry};

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
