//! Media types of stored paths.

use std::path::Path;

use super::ArtifactKind;

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
            "png" => Some("image/png"),
            "jpg" | "jpeg" => Some("image/jpeg"),
            "gif" => Some("image/gif"),
            "webp" => Some("image/webp"),
            "svg" => Some("image/svg+xml"),
            "html" | "htm" => Some("text/html"),
            "xml" => Some("application/xml"),
            "yaml" | "yml" => Some("application/yaml"),
            "toml" => Some("application/toml"),
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
