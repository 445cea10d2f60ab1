//! The web console at [`CONSOLE_PATH`]: plain HTML, CSS and ES modules from `keyservice/console/`,
//! embedded in the binary at build time (no build step, no CDN). It signs in with the admin
//! secret or a tenant admin secret and does everything through the same JSON API as the CLI, so
//! it has no powers of its own and no routes but its files.
//!
//! Every answer carries [`CONSOLE_CSP`] and the other headers of [`with_security_headers`]:
//! scripts, styles and API calls from this origin only, no inline script or style, no framing, no
//! form posts, no referrer. The files are a fixed table ([`ASSETS`]) looked up by name, so no
//! request path ever reaches the file system. The console is not part of the API: its routes are
//! kept out of the OpenAPI document.

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::error::ApiError;
use crate::AppState;

/// Where the console's page is served.
pub const CONSOLE_PATH: &str = "/console";
/// Where its files are served: `{ASSETS_PATH}/{name}`.
pub const ASSETS_PATH: &str = "/console/assets";

/// Sent with every console answer. Nothing but this origin's own files and API; no inline script
/// or style (the console sets looks with classes, and builds its chart as SVG elements); `data:`
/// images for the CSS icons only.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Whether the console is served (`--hide-console`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    Served,
    Hidden,
}

/// One embedded file of the console.
#[derive(Debug)]
pub struct Asset {
    /// Its name under [`ASSETS_PATH`].
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

/// The console's page. Its scripts and styles are the [`ASSETS`], by absolute path.
const INDEX_HTML: &[u8] = include_bytes!("../../console/index.html");

/// Every file the console loads; anything else under [`ASSETS_PATH`] is 404.
/// An [`Asset`] of `keyservice/console/`, embedded under its file name.
macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../console/", $name)),
        }
    };
}

pub const ASSETS: &[Asset] = &[
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("dialogs.js", JS),
    asset!("forms.js", JS),
    asset!("tokens.js", JS),
    asset!("chart.js", JS),
    asset!("roles.js", JS),
    asset!("audit.js", JS),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// `/console` (and `/console/`) and its files, each answer with the security headers.
// The console's routes are not API operations, so they are added with `.route()` rather than
// documented with `routes!` (which clippy.toml asks of every API route).
#[allow(
    clippy::disallowed_methods,
    reason = "the console's page and files are not API operations and stay out of the OpenAPI document"
)]
pub fn router() -> Router<AppState> {
    Router::new()
        .route(CONSOLE_PATH, get(index))
        .route("/console/", get(index))
        .route("/console/assets/{name}", get(asset))
        .layer(axum::middleware::map_response(with_security_headers))
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page is the same for everyone, but a stale one could load stale scripts.
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or(ApiError::NotFound("console file"))?;
    Ok((
        [
            (header::CONTENT_TYPE, asset.content_type),
            // Embedded in this binary: they change only with an upgrade, so revalidate.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        asset.body,
    )
        .into_response())
}

/// The console's security headers, on every answer under `/console` (its 404s too).
async fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONSOLE_CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_console_imports_is_served() {
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            let source = std::str::from_utf8(asset.body).unwrap();
            for line in source.lines().filter(|l| l.starts_with("import ")) {
                let module = line
                    .rsplit_once("from './")
                    .and_then(|(_, rest)| rest.split_once('\''))
                    .map(|(name, _)| name)
                    .unwrap_or_else(|| panic!("{}: unexpected import {line}", asset.name));
                assert!(
                    ASSETS.iter().any(|a| a.name == module),
                    "{} imports {module}, which is not served",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn the_page_loads_only_served_files_and_has_no_inline_script_or_style() {
        let html = std::str::from_utf8(INDEX_HTML).unwrap();
        for part in html.split("/console/assets/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "index.html loads {name}, which is not served"
            );
        }
        assert!(!html.contains("style="), "inline style in index.html");
        assert!(!html.contains("<style"), "inline style in index.html");
        for script in html.split("<script").skip(1) {
            assert!(script.contains(" src="), "inline script in index.html");
        }
    }

    #[test]
    fn no_script_writes_html_or_inline_styles() {
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            // Comments may name what the code must not do.
            let source: String = std::str::from_utf8(asset.body)
                .unwrap()
                .lines()
                .filter(|l| {
                    let l = l.trim_start();
                    !l.starts_with("//") && !l.starts_with('*') && !l.starts_with("/*")
                })
                .collect();
            for banned in [
                ".innerHTML =",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                ".style.",
                "localStorage",
                "document.cookie",
            ] {
                assert!(!source.contains(banned), "{} uses {banned}", asset.name);
            }
        }
    }
}
