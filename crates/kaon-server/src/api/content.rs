//! An artifact's bytes, served so that a browser shows them without
//! running them: the recorded media type, never sniffed, and a sandbox for
//! anything but a raster image.

use std::path::Path as FsPath;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use kaon_artifacts::{ArtifactError, ArtifactKind, ArtifactStore, Digest};
use kaon_store::{ArtifactIndex, ArtifactRow};

use super::auth;
use crate::app::App;
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};

/// Image types a browser renders without running anything in them: they
/// are served without a sandbox (SVG is not one of them: it can hold
/// script).
const SAFE_IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// An artifact's content: a file's bytes, streamed from the artifact store
/// and checked against the digest on the way (a blob that turns out
/// corrupt ends the response early, so it is never received whole).
///
/// `Content-Type` is the artifact's media type (for a recorded
/// `application/octet-stream`, the one its file name says), with
/// `X-Content-Type-Options: nosniff`; anything but a PNG, JPEG, GIF or
/// WebP image also carries `Content-Security-Policy: sandbox`, so that an
/// HTML or SVG artifact opened from the UI's origin cannot run script
/// there (an SVG shown in an `<img>` is still drawn). A folder or a
/// reference has no single content: 400 (its preview lists its files).
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/content",
    params(("id" = String, Path, description = "Id, or a unique prefix of the id or digest")),
    responses(
        (status = 200, description = "The artifact's bytes, of its media type", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "Unchanged (`If-None-Match` named its `ETag`, the digest)"),
        (status = 400, body = ErrorBody, description = "A folder or a reference: no single content"),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn content(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    let a = find(&app, &id).await?;
    let kind = kind_of(&a)?;
    if kind != ArtifactKind::File {
        return Err(ApiError::bad_request(match kind {
            ArtifactKind::Dir => format!(
                "artifact {} ({}) is a directory of {} file(s): it has no single content; \
                 GET /api/v1/artifacts/{}/preview lists its files",
                a.id, a.name, a.files, a.id
            ),
            _ => format!(
                "artifact {} ({}) is a reference to files left where a job wrote them ({}): \
                 kaon keeps no copy of them",
                a.id,
                a.name,
                a.path.as_deref().unwrap_or("their URL")
            ),
        }));
    }
    let digest = digest_of(&a)?;
    let etag = format!("\"{digest}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let blobs = blobs(&app)?;
    // A small blob is read and checked whole before any header goes out,
    // so that a corrupt one is a plain error answer; a large one streams,
    // and a corrupt one cuts the connection at its end.
    let body =
        if a.size >= 0 && a.size <= WHOLE {
            Body::from(
                blobs
                    .read_bytes(&digest)
                    .await
                    .map_err(|e| artifact_error(&a, e))?,
            )
        } else {
            let stream = blobs
                .read_stream(&digest)
                .await
                .map_err(|e| artifact_error(&a, e))?;
            let id = a.id.clone();
            Body::from_stream(stream.map(move |c| {
                c.inspect_err(|e| eprintln!("kaon server: serving artifact {id}: {e}"))
            }))
        };
    let media = served_type(&a);
    let mut out = Response::new(body);
    let h = out.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&media)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    // A size the row does not know (negative) is left to the body.
    if a.size >= 0 {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(a.size));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition(&file_name(&a))) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if !is_safe_image(&media) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // An id names one content for good; the token decides who may see it.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    Ok(out)
}

/// An artifact by id or unique prefix; 404 when there is none.
/// Blobs up to this size are checked before their answer starts.
const WHOLE: i64 = 1 << 20;

pub(super) async fn find(app: &App, id: &str) -> Result<ArtifactRow, ApiError> {
    app.store
        .artifact(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no artifact `{id}`")))
}

/// The artifact store this server's runs write to.
pub(super) fn blobs(app: &App) -> Result<&ArtifactStore, ApiError> {
    app.runner
        .blobs()
        .ok_or_else(|| ApiError::unavailable("this server has no artifact store"))
}

/// What an artifact row's digest names.
pub(super) fn kind_of(a: &ArtifactRow) -> Result<ArtifactKind, ApiError> {
    a.kind.parse().map_err(|e: ArtifactError| {
        ApiError::internal(format!("artifact {}: {e} (a row of a newer kaon?)", a.id))
    })
}

/// An artifact row's digest.
pub(super) fn digest_of(a: &ArtifactRow) -> Result<Digest, ApiError> {
    a.digest.parse().map_err(|e: ArtifactError| {
        ApiError::internal(format!("artifact {} has a damaged digest: {e}", a.id))
    })
}

/// What reading an artifact's blobs answers when it fails: a blob gone
/// from the store is a 404 that says so (the row is there, its content is
/// not), a store out of reach a 503.
pub(super) fn artifact_error(a: &ArtifactRow, e: ArtifactError) -> ApiError {
    match e {
        ArtifactError::Missing { .. } => ApiError::not_found(format!(
            "the content of artifact {} ({}) is not in the artifact store: {e}",
            a.id, a.name
        )),
        ArtifactError::Store { .. } => {
            ApiError::unavailable(format!("reading artifact {}: {e}", a.id))
        }
        other => ApiError::internal(format!("reading artifact {}: {other}", a.id)),
    }
}

/// The file name an artifact goes by: the last part of the path the step
/// wrote it at (it has the extension), else its name.
pub(super) fn file_name(a: &ArtifactRow) -> String {
    a.path
        .as_deref()
        .and_then(|p| FsPath::new(p).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| a.name.clone())
}

/// A media type without its parameters, in lower case.
pub(super) fn essence(media: &str) -> String {
    media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The `Content-Type` an artifact is served with: its recorded media type;
/// one recorded as unknown (`application/octet-stream`) is named by its
/// file name's extension instead, when that says more. Text says it is
/// UTF-8.
pub(super) fn served_type(a: &ArtifactRow) -> String {
    let recorded = a.media_type.trim();
    let base = essence(recorded);
    let media = if base.is_empty() || base == "application/octet-stream" {
        [file_name(a), a.name.clone()]
            .iter()
            .map(|n| kaon_artifacts::media_type(FsPath::new(n), ArtifactKind::File))
            .find(|t| t != "application/octet-stream")
            .unwrap_or_else(|| "application/octet-stream".into())
    } else {
        recorded.to_string()
    };
    if essence(&media).starts_with("text/") && !media.to_ascii_lowercase().contains("charset") {
        format!("{media}; charset=utf-8")
    } else {
        media
    }
}

/// True for the image types served without a sandbox.
pub(super) fn is_safe_image(media: &str) -> bool {
    SAFE_IMAGES.contains(&essence(media).as_str())
}

/// `Content-Disposition: inline` with the file name twice: quoted, with
/// anything that could end or escape the quotes (and anything not
/// printable ASCII) replaced by `_`, and exactly, percent-encoded as UTF-8
/// (RFC 6266, RFC 5987).
pub(super) fn disposition(name: &str) -> String {
    let plain: String = name
        .chars()
        .map(|c| {
            if c == ' ' || (c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '/' | ';' | '%')) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("inline; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(media: &str, name: &str, path: Option<&str>) -> ArtifactRow {
        ArtifactRow {
            media_type: media.into(),
            name: name.into(),
            path: path.map(str::to_string),
            ..ArtifactRow::default()
        }
    }

    #[test]
    fn file_names_are_quoted_safely() {
        assert_eq!(
            disposition("report.csv"),
            "inline; filename=\"report.csv\"; filename*=UTF-8''report.csv"
        );
        assert_eq!(
            disposition("a\"b\\c\r\nd;é.txt"),
            "inline; filename=\"a_b_c__d__.txt\"; filename*=UTF-8''a%22b%5Cc%0D%0Ad%3B%C3%A9.txt"
        );
        assert!(HeaderValue::from_str(&disposition("x\"\n\u{0}y")).is_ok());
    }

    #[test]
    fn the_served_type_is_recorded_or_named_by_the_file() {
        assert_eq!(
            served_type(&row("text/csv", "users", None)),
            "text/csv; charset=utf-8"
        );
        assert_eq!(
            served_type(&row(
                "application/octet-stream",
                "plot",
                Some("/w/plot.png")
            )),
            "image/png"
        );
        assert_eq!(
            served_type(&row("application/octet-stream", "blob", None)),
            "application/octet-stream"
        );
        assert_eq!(
            served_type(&row("image/svg+xml", "chart", None)),
            "image/svg+xml"
        );
        assert!(is_safe_image("image/PNG"));
        assert!(is_safe_image("image/webp; q=1"));
        assert!(!is_safe_image("image/svg+xml"));
        assert!(!is_safe_image("text/html"));
        assert_eq!(
            file_name(&row("", "coefficients", Some("work/global.json"))),
            "global.json"
        );
        assert_eq!(file_name(&row("", "notes", None)), "notes");
    }
}
