//! The web console at `/ui`: the files of `console/dist` (built by
//! `scripts/build-console.sh`), embedded at compile time (`build.rs` names the directory,
//! or a placeholder page when the console was not built), so the binary serves it with no
//! network and nothing on disk. Hashed assets (`/ui/assets/*`) are immutable; every other
//! path that is not a file is the single-page app's own route and gets `index.html`, which
//! is never cached (a new binary brings new asset names). The console talks to the JSON API
//! like any client, with the key its user signs in with: this module serves files only.

use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use include_dir::{include_dir, Dir};

/// `console/dist` (or the placeholder). `CONSOLE_STAMP` changes with its files, so the
/// crate is compiled again when they do.
static DIST: Dir<'static> = include_dir!("$CONSOLE_DIST");
const _STAMP: &str = env!("CONSOLE_STAMP");

/// Where the console is served.
pub const PREFIX: &str = "/ui";

/// The routes of the console: `/ui` (redirected to `/ui/`), and everything under `/ui/`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(PREFIX, get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|uri: Uri| async move { asset(&uri) }))
        .route("/ui/{*path}", get(|uri: Uri| async move { asset(&uri) }))
}

/// The file a path names, or `index.html` for the app's own routes; a missing asset under
/// `assets/` is a 404 (an old page asking for a file this binary does not have).
fn asset(uri: &Uri) -> Response {
    let path = uri
        .path()
        .strip_prefix("/ui/")
        .unwrap_or_default()
        .trim_start_matches('/');
    let file = (!path.is_empty())
        .then(|| DIST.get_file(path))
        .flatten()
        .filter(|_| !path.split('/').any(|p| p == ".." || p.starts_with('.')));
    match file {
        Some(f) => {
            let immutable = path.starts_with("assets/");
            respond(f.contents(), path, immutable)
        }
        None if path.starts_with("assets/") => (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
            "no such console asset",
        )
            .into_response(),
        None => match DIST.get_file("index.html") {
            Some(index) => respond(index.contents(), "index.html", false),
            None => (StatusCode::NOT_FOUND, "the console is not built").into_response(),
        },
    }
}

fn respond(body: &'static [u8], path: &str, immutable: bool) -> Response {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let content_type = if mime.type_() == mime_guess::mime::TEXT
        || mime.subtype() == mime_guess::mime::JAVASCRIPT
    {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_string()
    };
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_str(&content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
        ],
        body,
    )
        .into_response()
}

/// Only the host itself: no script, style, font or connection elsewhere (air-gapped by
/// construction, and an injected script could not send a key anywhere).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Response {
        asset(&path.parse().unwrap())
    }

    #[test]
    fn app_routes_get_the_index_and_missing_assets_are_404() {
        // Every embedded build (the console or the placeholder) has an index.html.
        let index = get("/ui/");
        assert_eq!(index.status(), 200);
        assert_eq!(index.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(
            index.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        for route in ["/ui/executions", "/ui/executions/0ABC", "/ui/functions/x/y"] {
            let r = get(route);
            assert_eq!(r.status(), 200, "{route}");
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache", "{route}");
        }
        assert_eq!(get("/ui/assets/nope-123.js").status(), 404);
        // No way out of the embedded directory.
        assert_eq!(
            get("/ui/../Cargo.toml").headers()[header::CACHE_CONTROL],
            "no-cache"
        );
    }

    #[test]
    fn hashed_assets_are_immutable_with_their_content_type() {
        let Some(js) = DIST.get_dir("assets").and_then(|d| {
            d.files()
                .find(|f| f.path().extension().is_some_and(|e| e == "js"))
        }) else {
            eprintln!("console not built (placeholder embedded): no assets to check");
            return;
        };
        let path = format!("/ui/{}", js.path().display());
        let r = get(&path);
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
    }
}
