//! What kind of preview an artifact gets: decided by its media type, then
//! by its file name's extension, then by its first bytes. No I/O here.

use std::path::Path;

use kaon_artifacts::ArtifactKind;

use crate::api::content::essence;

/// How an artifact is previewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Schema and first rows, read through the footer.
    Parquet,
    /// Header and first rows, fields split at `delimiter`.
    Csv {
        /// `,` or a tab.
        delimiter: u8,
    },
    /// The parsed value (or the first text of a large one).
    Json,
    /// The first 64 KiB.
    Text,
    /// Shown by the UI from `/content` in an `<img>`.
    Image,
    /// Nothing to show but the size.
    Binary,
    /// A folder's files.
    Dir,
}

impl Kind {
    /// The name the API gives it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Parquet => "parquet",
            Kind::Csv { .. } => "csv",
            Kind::Json => "json",
            Kind::Text => "text",
            Kind::Image => "image",
            Kind::Binary => "binary",
            Kind::Dir => "dir",
        }
    }
}

/// The kind a media type names, or `None` when it says nothing
/// (`application/octet-stream`, empty).
pub(crate) fn by_media_type(media: &str) -> Option<Kind> {
    let m = essence(media);
    Some(match m.as_str() {
        "" | "application/octet-stream" | "binary/octet-stream" => return None,
        "application/vnd.apache.parquet" | "application/x-parquet" => Kind::Parquet,
        "text/csv" => Kind::Csv { delimiter: b',' },
        "text/tab-separated-values" => Kind::Csv { delimiter: b'\t' },
        "application/json" => Kind::Json,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/svg+xml" => Kind::Image,
        "inode/directory" => Kind::Dir,
        "application/x-ndjson"
        | "application/xml"
        | "application/yaml"
        | "application/toml"
        | "application/javascript"
        | "application/sql" => Kind::Text,
        _ if m.ends_with("+json") => Kind::Json,
        _ if m.starts_with("text/") => Kind::Text,
        _ => Kind::Binary,
    })
}

/// The kind a file name's extension names (the names kaon gives media
/// types to), or `None`.
pub(crate) fn by_name(name: &str) -> Option<Kind> {
    by_media_type(&kaon_artifacts::media_type(
        Path::new(name),
        ArtifactKind::File,
    ))
}

/// The kind of content from its first bytes (`whole` when they are all of
/// it): the Parquet, PNG, JPEG, GIF and WebP signatures, an SVG document,
/// JSON (only when whole: it must parse), then text (UTF-8 with no NUL,
/// a character cut at the end of a part is fine), else binary.
pub(crate) fn sniff(head: &[u8], whole: bool) -> Kind {
    if head.starts_with(b"PAR1") {
        return Kind::Parquet;
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n")
        || head.starts_with(b"\xff\xd8\xff")
        || head.starts_with(b"GIF87a")
        || head.starts_with(b"GIF89a")
        || (head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP")
    {
        return Kind::Image;
    }
    let text = super::text::complete_utf8(head);
    if head.contains(&0) || std::str::from_utf8(text).is_err() {
        return Kind::Binary;
    }
    let start = String::from_utf8_lossy(&text[..text.len().min(1024)]);
    let start = start.trim_start_matches('\u{feff}').trim_start();
    if start.starts_with("<svg") || (start.starts_with("<?xml") && start.contains("<svg")) {
        return Kind::Image;
    }
    if whole
        && (start.starts_with('{') || start.starts_with('['))
        && serde_json::from_slice::<serde_json::Value>(head).is_ok()
    {
        return Kind::Json;
    }
    Kind::Text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_come_first() {
        assert_eq!(
            by_media_type("application/vnd.apache.parquet"),
            Some(Kind::Parquet)
        );
        assert_eq!(
            by_media_type("text/csv; charset=utf-8"),
            Some(Kind::Csv { delimiter: b',' })
        );
        assert_eq!(
            by_media_type("text/tab-separated-values"),
            Some(Kind::Csv { delimiter: b'\t' })
        );
        assert_eq!(by_media_type("application/JSON"), Some(Kind::Json));
        assert_eq!(by_media_type("application/geo+json"), Some(Kind::Json));
        assert_eq!(by_media_type("image/svg+xml"), Some(Kind::Image));
        assert_eq!(by_media_type("text/markdown"), Some(Kind::Text));
        assert_eq!(by_media_type("application/zip"), Some(Kind::Binary));
        assert_eq!(by_media_type("image/tiff"), Some(Kind::Binary));
        assert_eq!(by_media_type("application/octet-stream"), None);
        assert_eq!(by_media_type(""), None);
    }

    #[test]
    fn then_names() {
        assert_eq!(by_name("part-0.parquet"), Some(Kind::Parquet));
        assert_eq!(by_name("plot.PNG"), Some(Kind::Image));
        assert_eq!(by_name("chart.svg"), Some(Kind::Image));
        assert_eq!(by_name("metrics.json"), Some(Kind::Json));
        assert_eq!(by_name("rows.tsv"), Some(Kind::Csv { delimiter: b'\t' }));
        assert_eq!(by_name("model"), None);
    }

    #[test]
    fn then_the_first_bytes() {
        assert_eq!(sniff(b"PAR1\x15\x04", false), Kind::Parquet);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0", false), Kind::Image);
        assert_eq!(sniff(b"\xff\xd8\xff\xe0", false), Kind::Image);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ", false), Kind::Image);
        assert_eq!(
            sniff(b"<?xml version=\"1.0\"?>\n<svg xmlns=\"x\"/>", true),
            Kind::Image
        );
        assert_eq!(sniff(b"{\"auc\": 0.7}", true), Kind::Json);
        // Not whole: it cannot be parsed, so it is text.
        assert_eq!(sniff(b"{\"auc\": 0.7", false), Kind::Text);
        assert_eq!(sniff(b"[INFO] started", true), Kind::Text);
        // A character cut at the end of a part is still text.
        assert_eq!(
            sniff("caf\u{e9}".as_bytes()[..4].as_ref(), false),
            Kind::Text
        );
        assert_eq!(sniff(b"a\0b", true), Kind::Binary);
        assert_eq!(sniff(b"\xff\xfe\xfd", true), Kind::Binary);
    }
}
