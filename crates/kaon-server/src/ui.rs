//! The web UI: the built pages of `ui/` (`ui/dist`, checked in), inside
//! the binary.
//!
//! `GET /` is the page (`no-cache`: a new kaon serves a new page at
//! once), `GET /assets/...` its scripts and styles, whose names carry a
//! hash of their content (cached for a year, never revalidated). The
//! UI routes with the URL's fragment (`/#/runs/ID`), so no other path
//! needs the page. Every answer here forbids what the UI does not need:
//! scripts and styles from elsewhere, being framed, content sniffing.
//! Nothing here needs a token: the pages are the same for everybody, and
//! the API calls they make carry their own.

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;

/// `ui/dist` of the repository. Debug builds embed it too
/// (`debug-embed`): a test binary serves the same bytes from anywhere. A
/// tree without the folder still builds, and `/` says the UI is missing.
#[derive(Embed)]
#[folder = "../../ui/dist/"]
#[allow_missing = true]
struct Dist;

/// What every answer of the UI carries.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The UI's routes.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    match Dist::get("index.html") {
        Some(f) => file(&f, "no-cache", &headers),
        None => guarded(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "this kaon was built without its web UI (ui/dist): build it with `npm ci && npm run build` in ui/, then build kaon again\n",
            )
                .into_response(),
        ),
    }
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match Dist::get(&format!("assets/{path}")) {
        Some(f) => file(&f, "public, max-age=31536000, immutable", &headers),
        None => guarded(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such file\n",
            )
                .into_response(),
        ),
    }
}

/// An embedded file; a request that has it already (`If-None-Match` its
/// digest) gets a 304.
fn file(f: &rust_embed::EmbeddedFile, cache: &'static str, headers: &HeaderMap) -> Response {
    let etag = format!(
        "\"{}\"",
        f.metadata
            .sha256_hash()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(f.data.clone()))
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type(f.metadata.mimetype())) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    guarded(r)
}

/// Text is UTF-8 (a browser guessing otherwise would garble it).
fn content_type(mime: &str) -> String {
    let text = mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript" | "application/json" | "image/svg+xml"
        );
    if text && !mime.contains("charset") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

fn guarded(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
mod tests {
    use super::*;

    #[test]
    fn the_page_and_every_asset_it_names_are_embedded() {
        let page = Dist::get("index.html").expect("ui/dist/index.html is embedded");
        let text = String::from_utf8(page.data.into_owned()).unwrap();
        let mut named = 0;
        for part in text.split("/assets/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                Dist::get(&format!("assets/{name}")).is_some(),
                "index.html names assets/{name}, which is not embedded"
            );
            named += 1;
        }
        // The script and the style sheet, named from the root.
        assert!(
            named >= 2,
            "index.html names {named} assets under /assets/:\n{text}"
        );
    }

    #[test]
    fn text_is_utf8() {
        assert_eq!(content_type("text/html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("application/javascript"),
            "application/javascript; charset=utf-8"
        );
        assert_eq!(content_type("image/png"), "image/png");
    }
}
