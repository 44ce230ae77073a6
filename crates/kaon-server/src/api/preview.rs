//! A look inside an artifact for the UI: a Parquet file's schema and first
//! rows, a CSV's header and rows, a JSON value, the start of a text, a
//! folder's files. Each reads a bounded part of the artifact, whatever its
//! size.

mod delimited;
mod kind;
mod parquet;
pub(crate) mod text;

use std::path::Path as FsPath;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use bytes::Bytes;
use kaon_artifacts::{ArtifactKind, ArtifactStore, Digest};
use kaon_store::ArtifactRow;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use self::kind::Kind;
use super::auth;
use super::content::{artifact_error, blobs, digest_of, file_name, find, kind_of};
use crate::app::App;
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};

/// Text shown of a text artifact (and of a JSON one too large to parse).
const TEXT_MAX: u64 = 64 << 10;
/// JSON parsed whole up to this size.
const JSON_MAX: u64 = 1 << 20;
/// The part of a CSV file read for its first rows.
const CSV_MAX: u64 = 4 << 20;
/// Files listed of a folder.
const FILES_MAX: usize = 10_000;

/// How much to show.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreviewQuery {
    /// Rows of a table (Parquet, CSV) to show (default 50, at most 500).
    rows: Option<u32>,
}

/// A column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct Column {
    /// Its name.
    pub name: String,
    /// Its type: Arrow's name of it for Parquet (`Int64`, `Utf8`,
    /// `Timestamp(Microsecond, None)`, ...), `string` for CSV.
    pub r#type: String,
}

/// A file of a folder.
#[derive(Serialize, ToSchema)]
pub(crate) struct FileEntry {
    /// Its path inside the folder, `/`-separated.
    path: String,
    /// Bytes.
    size: u64,
}

/// What an artifact holds, as much as a page shows. Every field is always
/// there, `null` when it does not apply to the kind.
#[derive(Serialize, ToSchema)]
pub(crate) struct Preview {
    /// `parquet`, `csv`, `json`, `text`, `image` (show `/content` in an
    /// `<img>`), `binary` or `dir`: decided by the media type, then the
    /// file name's extension, then the first bytes.
    kind: String,
    /// The artifact's media type, as recorded.
    media_type: String,
    /// Bytes (over all files of a folder).
    size: i64,
    /// Columns of a table (`parquet`, `csv`).
    schema: Option<Vec<Column>>,
    /// The first rows of a table, one JSON value per column (Parquet
    /// numbers, booleans, strings, lists and structs as themselves, other
    /// types as text; CSV fields as strings).
    #[schema(value_type = Option<Vec<Vec<Object>>>)]
    rows: Option<Vec<Vec<Value>>>,
    /// Rows in the whole table, when known without reading it all (a
    /// Parquet file's footer; a CSV file read whole).
    total_rows: Option<u64>,
    /// A JSON artifact of at most 1 MiB, parsed.
    #[schema(value_type = Option<Object>)]
    json: Option<Value>,
    /// The start of a text (at most 64 KiB, never cut inside a
    /// character); of a JSON artifact over 1 MiB, or one that does not
    /// parse.
    text: Option<String>,
    /// True when there is more than what is shown (rows, text, files).
    truncated: bool,
    /// A folder's files (the first 10,000), with a Parquet folder's too.
    files: Option<Vec<FileEntry>>,
}

impl Preview {
    fn of(a: &ArtifactRow, kind: Kind) -> Preview {
        Preview {
            kind: kind.as_str().into(),
            media_type: a.media_type.clone(),
            size: a.size,
            schema: None,
            rows: None,
            total_rows: None,
            json: None,
            text: None,
            truncated: false,
            files: None,
        }
    }

    fn text(&mut self, bytes: &[u8], whole: bool) {
        let (t, left_out) = text::prefix(bytes, TEXT_MAX as usize, whole);
        self.text = Some(t);
        self.truncated = left_out;
    }
}

/// A look inside an artifact, bounded whatever its size: a Parquet file's
/// schema, first rows and row count (read through its footer and first
/// pages, at most 64 MiB of it; a folder of Parquet parts reads them in
/// order), a CSV file's header and first rows (from its first 4 MiB), a
/// JSON value (up to 1 MiB; beyond, the start of its text), the first
/// 64 KiB of a text, a folder's files. Images and other binary content are
/// named, not read. A Parquet artifact that cannot be read is a 422.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/preview",
    params(("id" = String, Path, description = "Id, or a unique prefix of the id or digest"), PreviewQuery),
    responses((status = 200, body = Preview), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "Not readable as its kind (a damaged Parquet file)")))]
pub(crate) async fn preview(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PreviewQuery>,
) -> Result<Json<Preview>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    let a = find(&app, &id).await?;
    let rows = q.rows.unwrap_or(50).clamp(1, 500) as usize;
    let blobs = blobs(&app)?.clone();
    let digest = digest_of(&a)?;
    let p = match kind_of(&a)? {
        ArtifactKind::File => file(&blobs, &a, digest, rows).await?,
        ArtifactKind::Dir => folder(&blobs, &a, digest, rows).await?,
        ArtifactKind::Reference => {
            let r = blobs
                .reference(&digest)
                .await
                .map_err(|e| artifact_error(&a, e))?;
            let mut p = Preview::of(&a, Kind::Dir);
            p.truncated = r.entries.len() > FILES_MAX;
            p.files = Some(
                r.entries
                    .into_iter()
                    .take(FILES_MAX)
                    .map(|e| FileEntry {
                        path: e.path,
                        size: e.size,
                    })
                    .collect(),
            );
            p
        }
    };
    Ok(Json(p))
}

/// The first `n` bytes of a blob of `size` bytes, and whether that is all
/// of it (then read whole and checked against the digest).
async fn head(
    blobs: &ArtifactStore,
    a: &ArtifactRow,
    digest: &Digest,
    n: u64,
) -> Result<(Bytes, bool), ApiError> {
    let size = a.size.max(0) as u64;
    let got = if size <= n {
        blobs.read_bytes(digest).await.map(|b| (b, true))
    } else {
        blobs
            .read_range_unchecked(digest, 0..n)
            .await
            .map(|b| (b, false))
    };
    got.map_err(|e| artifact_error(a, e))
}

async fn file(
    blobs: &ArtifactStore,
    a: &ArtifactRow,
    digest: Digest,
    rows: usize,
) -> Result<Preview, ApiError> {
    let decided = kind::by_media_type(&a.media_type)
        .or_else(|| kind::by_name(&a.name))
        .or_else(|| kind::by_name(&file_name(a)))
        .filter(|k| *k != Kind::Dir);
    let (kind, sniffed) = match decided {
        Some(k) => (k, None),
        None => {
            let (bytes, whole) = head(blobs, a, &digest, TEXT_MAX).await?;
            (kind::sniff(&bytes, whole), Some((bytes, whole)))
        }
    };
    let mut p = Preview::of(a, kind);
    match kind {
        Kind::Parquet => {
            let part = parquet::Part {
                path: None,
                digest,
                size: a.size.max(0) as u64,
            };
            table(blobs, a, vec![part], rows, &mut p).await?;
        }
        Kind::Csv { delimiter } => {
            let (bytes, whole) = head(blobs, a, &digest, CSV_MAX).await?;
            match delimited::read(&bytes, whole, delimiter, rows) {
                Some(r) => {
                    p.schema = Some(r.schema);
                    p.rows = Some(r.rows);
                    p.total_rows = r.total_rows;
                    p.truncated = r.truncated;
                }
                // Not one whole line in 4 MiB: the start, as text.
                None => {
                    p.kind = Kind::Text.as_str().into();
                    p.text(&bytes, whole);
                }
            }
        }
        Kind::Json if a.size.max(0) as u64 <= JSON_MAX => {
            let (bytes, whole) = match sniffed {
                Some(s) if s.1 => s,
                _ => head(blobs, a, &digest, JSON_MAX).await?,
            };
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => p.json = Some(v),
                Err(_) => {
                    p.kind = Kind::Text.as_str().into();
                    p.text(&bytes, whole);
                }
            }
        }
        Kind::Json | Kind::Text => {
            let (bytes, whole) = match sniffed {
                Some(s) => s,
                None => head(blobs, a, &digest, TEXT_MAX).await?,
            };
            p.text(&bytes, whole);
        }
        Kind::Image | Kind::Binary | Kind::Dir => {}
    }
    Ok(p)
}

async fn folder(
    blobs: &ArtifactStore,
    a: &ArtifactRow,
    digest: Digest,
    rows: usize,
) -> Result<Preview, ApiError> {
    let manifest = blobs
        .manifest(&digest)
        .await
        .map_err(|e| artifact_error(a, e))?;
    let files: Vec<FileEntry> = manifest
        .entries
        .iter()
        .take(FILES_MAX)
        .map(|e| FileEntry {
            path: e.path.clone(),
            size: e.size,
        })
        .collect();
    let many = manifest.entries.len() > FILES_MAX;
    // A folder of Parquet parts, as Spark writes one: its parts in order
    // (not the `_SUCCESS` marker, nor hidden checksum files).
    let mut parts = Vec::new();
    if kind::by_media_type(&a.media_type) == Some(Kind::Parquet) {
        for e in &manifest.entries {
            let base = e.path.rsplit('/').next().unwrap_or(&e.path);
            if e.size == 0
                || !FsPath::new(base)
                    .extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("parquet"))
                || base.starts_with(['.', '_'])
            {
                continue;
            }
            let d: Digest = e.digest.parse().map_err(|err| {
                ApiError::internal(format!(
                    "artifact {}: the manifest names `{}` by a bad digest: {err}",
                    a.id, e.path
                ))
            })?;
            parts.push(parquet::Part {
                path: Some(e.path.clone()),
                digest: d,
                size: e.size,
            });
        }
    }
    if parts.is_empty() {
        let mut p = Preview::of(a, Kind::Dir);
        p.files = Some(files);
        p.truncated = many;
        return Ok(p);
    }
    let mut p = Preview::of(a, Kind::Parquet);
    table(blobs, a, parts, rows, &mut p).await?;
    p.files = Some(files);
    Ok(p)
}

/// Fills a preview with the first rows of Parquet files.
async fn table(
    blobs: &ArtifactStore,
    a: &ArtifactRow,
    parts: Vec<parquet::Part>,
    rows: usize,
    p: &mut Preview,
) -> Result<(), ApiError> {
    let rt = tokio::runtime::Handle::current();
    let store = blobs.clone();
    let read = tokio::task::spawn_blocking(move || parquet::read(&store, &parts, rows, rt))
        .await
        .map_err(|e| ApiError::internal(format!("reading artifact {}: {e}", a.id)))?;
    let t = read.map_err(|f| match f {
        parquet::Failure::Unreadable { path: None, reason } => {
            ApiError::unprocessable(format!("not a readable Parquet file: {reason}"))
        }
        parquet::Failure::Unreadable {
            path: Some(path),
            reason,
        } => ApiError::unprocessable(format!(
            "not a readable Parquet file: `{path}` in the folder: {reason}"
        )),
        parquet::Failure::Budget => ApiError::unprocessable(format!(
            "the first rows of artifact {} lie beyond the first {} MiB read of it (very \
             large pages or footer): ask for fewer rows, or get the content instead",
            a.id,
            parquet::BUDGET >> 20
        )),
        parquet::Failure::Store(e) => artifact_error(a, e),
    })?;
    p.schema = Some(t.schema);
    p.rows = Some(t.rows);
    p.total_rows = t.total_rows;
    p.truncated = t.truncated;
    Ok(())
}
