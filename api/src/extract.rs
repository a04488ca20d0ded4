//! Extractors whose rejections speak the contract: problem documents with a `detail` that
//! names the field at fault.

use crate::AppState;
use crate::problem::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;
use chat_shared::domain::Caller;
use chat_shared::error::{ChatError, ErrorCode};
use serde::de::DeserializeOwned;

/// The authenticated caller, from `Authorization: Bearer <jwt>`.
#[derive(Debug, Clone)]
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ChatError::unauthorized("missing Authorization: Bearer token"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ChatError::unauthorized("Authorization must be `Bearer <token>`"))?;
        Ok(Self(state.core.verifier.verify(token)?))
    }
}

/// The `{id}` of a route. An id that does not even decode (percent-encoded bytes that are not
/// UTF-8) names nothing: `404 not_found` like any other unknown id, not a plain-text `400`.
#[derive(Debug)]
pub struct IdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Self(id))
            .map_err(|_| ApiError::new(ErrorCode::NotFound, "not found"))
    }
}

/// A JSON body. Unknown fields are ignored; an empty body counts as `{}` so that bodies whose
/// fields are all optional may be left out; anything else that does not fit is `bad_request`
/// naming the field, and a body over the limit is `payload_too_large`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| match rejection {
                BytesRejection::FailedToBufferBody(_) => ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "body: larger than {} bytes",
                        state.core.service.limits().max_body_bytes
                    ),
                ),
                other => ApiError::new(ErrorCode::BadRequest, other.body_text()),
            })?;
        let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        parse_json(body).map(ApiJson).map_err(ApiError)
    }
}

/// Deserializes `body`, naming the path of the first field that does not fit.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ChatError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ChatError::bad_request(format!("body: not valid JSON ({e})")))?;
    chat_shared::wire::from_object(value, "body")
}

/// Query parameters; a missing or ill-typed value is `bad_request` naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner().to_string();
                ApiError::new(ErrorCode::BadRequest, format!("{path}: {inner}"))
            })
    }
}
