//! HTTP routes beside Socket.IO: the web UI (and its `/admin` status page),
//! socket.io-client for the UI, guest sign-up, health, readiness and metrics.
//! Security and cache headers are set here, in one place; API errors are
//! `{error: {code, message}}` with the status of [`status_of`].

use crate::state::Shared;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use confab_core::{ChatError, ErrorCode};
use serde_json::json;
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// The Content-Security-Policy of every page: scripts, styles and connections only
/// from this origin, no inline code, no plugins, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
frame-ancestors 'none'; form-action 'self'";

pub fn router(shared: Arc<Shared>) -> Router {
    let cfg = &shared.config;
    let ui = ServeDir::new(&cfg.ui_dir).append_index_html_on_directories(true);
    // The admin status page (its data comes over Socket.IO, admins only).
    let admin_page = tower_http::services::ServeFile::new(cfg.ui_dir.join("admin.html"));
    let vendor = ServeDir::new(&cfg.vendor_dir);
    let static_headers = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ));
    let vendor = Router::new()
        .fallback_service(vendor)
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=86400"),
        ));
    // Our own files change with each release and are not fingerprinted:
    // always revalidate (ETag/Last-Modified make that a cheap 304).
    let ui = Router::new()
        .route_service("/admin", admin_page)
        .fallback_service(ui)
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ));
    let public = Router::new()
        .route("/api/guest", post(guest))
        .route("/api/auth", get(auth_info))
        .route("/api/signout", post(sign_out))
        .nest("/vendor/socket.io", vendor);
    // Without an internal listener, metrics and readiness stay here (a warning at
    // start-up says so); with one, the public listener does not serve them.
    let public = if shared.config.internal_bind.is_none() {
        public.merge(internal_routes())
    } else {
        // Liveness stays public (nginx checks it), metrics and readiness do not.
        public.route("/healthz", get(healthz))
    };
    public.merge(ui).layer(static_headers).with_state(shared)
}

fn internal_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
}

/// The internal listener's routes (`--internal-bind`): `/metrics`, `/readyz`,
/// `/healthz`, for Prometheus and the load balancer only.
pub fn internal_router(shared: Arc<Shared>) -> Router {
    internal_routes().with_state(shared)
}

/// The HTTP status of an API error.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::InvalidName
        | ErrorCode::InvalidRoom
        | ErrorCode::InvalidText => StatusCode::BAD_REQUEST,
        ErrorCode::NameTaken => StatusCode::CONFLICT,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden | ErrorCode::NotMember => StatusCode::FORBIDDEN,
        ErrorCode::UserNotFound => StatusCode::NOT_FOUND,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unavailable | ErrorCode::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn api_error(err: ChatError) -> axum::response::Response {
    crate::metrics::refused(err.code);
    (status_of(err.code), Json(json!({ "error": err }))).into_response()
}

/// `GET /api/auth` → `{mode, guest}`: how the UI signs in (`open`: a name;
/// `guest`: a name through `POST /api/guest`, or a pasted token; `jwt`: a token).
async fn auth_info(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mode = shared.auth.mode();
    Json(json!({
        "mode": mode.as_str(),
        "guest": mode == confab_auth::AuthMode::Guest,
    }))
}

/// `POST /api/guest {name}` → `{token, user}`: a new guest identity.
async fn guest(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> axum::response::Response {
    let Ok(Json(body)) = body else {
        return api_error(ChatError::bad_request(
            "body must be JSON: {\"name\": \"...\"} with Content-Type: application/json",
        ));
    };
    let Some(name) = body.get("name").and_then(|n| n.as_str()) else {
        return api_error(ChatError::bad_request("missing string field `name`"));
    };
    if shared.shutdown.is_cancelled() {
        return api_error(ChatError::unavailable("server is shutting down"));
    }
    match shared.auth.guest(name, shared.presence.as_ref()).await {
        Ok(grant) => (StatusCode::OK, Json(grant)).into_response(),
        Err(e) => api_error(e),
    }
}

/// `POST /api/signout` with `Authorization: Bearer <token>` → `{released}`: the
/// user's display name is free again at once.
async fn sign_out(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) =
        token.filter(|t| !t.is_empty() && t.len() <= confab_core::protocol::TOKEN_MAX_LEN)
    else {
        return api_error(ChatError::new(
            ErrorCode::Unauthorized,
            "send the token as Authorization: Bearer <token>",
        ));
    };
    match shared.auth.sign_out(token, shared.presence.as_ref()).await {
        Ok(released) => (StatusCode::OK, Json(json!({ "released": released }))).into_response(),
        Err(e) => api_error(e),
    }
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        );
    }
    if shared.readiness.ready(shared.broker.as_ref()).await {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "backend unavailable"})),
        )
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let body = match &shared.metrics {
        Some(h) => h.render(),
        None => String::new(),
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
}
