//! The page's files, embedded at build time from `cli/dashboard-web/dist/` (see `cli/build.rs`:
//! a missing or stale bundle is a compile error naming `scripts/build-web.sh`).

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// The embedded file at `path` (after the token) and its content type.
pub fn get(path: &str) -> Option<(&'static [u8], &'static str)> {
    match path {
        "/" | "/index.html" => Some((INDEX_HTML, "text/html; charset=utf-8")),
        "/app.js" => Some((APP_JS, "text/javascript; charset=utf-8")),
        "/app.css" => Some((APP_CSS, "text/css; charset=utf-8")),
        _ => None,
    }
}
