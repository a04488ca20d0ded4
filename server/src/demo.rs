//! The demo page of the embedded server, at `/`: plain HTML and JavaScript over the public
//! REST API and Socket.IO, with the official socket.io-client served from the binary itself
//! (`server/demo/`, see `VENDORED.md` there). Nothing here is part of the client contract.
//!
//! With the generated development secret (no `JWT_SECRET` or `JWT_PUBLIC_KEY` configured) the
//! page may ask `POST /demo/token` for a token of any user id: that secret exists only for
//! trying the server out, and its tokens mean nothing anywhere else. With a configured key the
//! route is not mounted at all (`404`): tokens then come from the platform, and a server that
//! signed them on request would hand out its users' identities.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chat_shared::app::mint_token;
use chat_shared::config::Settings;
use chat_shared::domain::UserId;
use chat_shared::error::ChatError;
use chat_shared::http::ApiError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Where the page's token form posts, when it exists.
pub const TOKEN_PATH: &str = "/demo/token";
/// The vendored socket.io-client, as the page loads it.
pub const SOCKET_IO_PATH: &str = "/demo/socket.io.min.js";
/// Lifetime of a token minted for the page: a day, as `chat token` gives by default.
const TOKEN_TTL_SECS: u64 = 86_400;

const INDEX_HTML: &str = include_str!("../demo/index.html");
const DEMO_JS: &[u8] = include_bytes!("../demo/demo.js");
const DEMO_CSS: &[u8] = include_bytes!("../demo/demo.css");
const SOCKET_IO_JS: &[u8] = include_bytes!("../demo/socket.io.min.js");

/// The placeholder in `index.html` that becomes `true` or `false`: whether the page shows
/// the token form. Decided here, so that the page never offers what the server would refuse.
const MINT_PLACEHOLDER: &str = "{{MINT_TOKENS}}";

/// The page's policy. The server sets none elsewhere (it serves JSON), so this is the whole
/// of it: scripts and styles from this origin only (no inline script or style, no `eval`),
/// REST and Socket.IO (`'self'` covers `ws:`/`wss:` to the same host) to this origin only,
/// nothing may frame the page, and forms cannot be submitted natively (the script handles
/// them, so a token typed into one never ends up in a URL).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
/// The page and its own script and style change with the binary: always revalidated (a
/// `304` when the `ETag` still matches).
const REVALIDATE: &str = "no-cache";
/// The vendored client changes only with a new vendored version: a day in any cache.
const ONE_DAY: &str = "public, max-age=86400";

/// The page, its assets and, with the development secret only, the token route.
pub fn router(settings: &Settings) -> Router {
    let mint = if settings.dev_secret { "true" } else { "false" };
    let index = Asset::new(
        INDEX_HTML.replace(MINT_PLACEHOLDER, mint).into_bytes(),
        HTML,
        REVALIDATE,
    )
    .with_csp();
    let router = Router::new()
        .route("/", serve(index))
        .route(
            "/demo/demo.js",
            serve(Asset::new(DEMO_JS.to_vec(), JS, REVALIDATE)),
        )
        .route(
            "/demo/demo.css",
            serve(Asset::new(DEMO_CSS.to_vec(), CSS, REVALIDATE)),
        )
        .route(
            SOCKET_IO_PATH,
            serve(Asset::new(SOCKET_IO_JS.to_vec(), JS, ONE_DAY)),
        );
    if !settings.dev_secret {
        return router;
    }
    router.route(
        TOKEN_PATH,
        post(mint_for_page)
            .layer(DefaultBodyLimit::max(4096))
            .with_state(Arc::new(settings.clone())),
    )
}

/// A file of the page, with what its answers carry.
struct Asset {
    body: Bytes,
    content_type: &'static str,
    cache_control: &'static str,
    etag: HeaderValue,
    csp: bool,
}

impl Asset {
    fn new(body: Vec<u8>, content_type: &'static str, cache_control: &'static str) -> Self {
        let digest = Sha256::digest(&body);
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            etag: HeaderValue::from_str(&format!("\"{hex}\""))
                .unwrap_or(HeaderValue::from_static("\"demo\"")),
            body: Bytes::from(body),
            content_type,
            cache_control,
            csp: false,
        }
    }

    fn with_csp(mut self) -> Self {
        self.csp = true;
        self
    }

    fn respond(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == self.etag)
            });
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            self.body.clone().into_response()
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(self.cache_control),
        );
        headers.insert(header::ETAG, self.etag.clone());
        if self.csp {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
        }
        response
    }
}

fn serve(asset: Asset) -> axum::routing::MethodRouter {
    let asset = Arc::new(asset);
    get(move |headers: HeaderMap| {
        let asset = asset.clone();
        async move { asset.respond(&headers) }
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    user_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    token: String,
    user_id: String,
    expires_in_secs: u64,
}

/// `POST /demo/token {userId}`: a token of role `user` for that id, signed with the generated
/// development secret. Mounted only when that secret is the one in use.
async fn mint_for_page(
    State(settings): State<Arc<Settings>>,
    body: Bytes,
) -> Result<axum::Json<TokenAnswer>, ApiError> {
    let request: TokenRequest = chat_api::extract::parse_json(&body)?;
    let user = UserId::parse(request.user_id.trim(), "userId")?;
    let token = mint_token(&settings, user.as_str(), None, "user", TOKEN_TTL_SECS)
        .map_err(|e| ApiError::from(ChatError::internal(&e)))?;
    Ok(axum::Json(TokenAnswer {
        token,
        user_id: user.as_str().to_owned(),
        expires_in_secs: TOKEN_TTL_SECS,
    }))
}
