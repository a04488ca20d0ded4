//! RFC 9457 problem documents: how every REST error leaves the service.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_shared::error::{ChatError, ErrorCode};
use serde::Serialize;
use utoipa::ToSchema;

/// `application/problem+json` body. `code` is one of the contract's error codes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: ErrorCode,
}

/// A [`ChatError`] on its way out as a problem document.
#[derive(Debug)]
pub struct ApiError(pub ChatError);

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        Self(e)
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self(ChatError::new(code, detail))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ChatError {
            code,
            detail,
            retry_after,
        } = self.0;
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = Problem {
            kind: format!("urn:chat:problem:{}", code.as_str()),
            title: code.title(),
            status: status.as_u16(),
            detail,
            code,
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(wait) = retry_after {
            // Whole seconds, rounded up: retrying after a rounded-down wait would fail again.
            let secs = wait.as_millis().div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        if code == ErrorCode::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
