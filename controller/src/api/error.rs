//! Refusals of the HTTP API: one JSON shape, `{"error": {"code": 404, "status": "NOT_FOUND", "message": "..."}}`,
//! with the HTTP status that matches the gRPC code (Google's API error model), and `Retry-After` on a 429.

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tonic::{Code, Status};

/// A refusal: the HTTP status, the gRPC-style status name, why, and when to try again.
#[derive(Debug)]
pub struct ApiError {
    pub http: StatusCode,
    pub status: &'static str,
    pub message: String,
    /// Seconds, for `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(http: StatusCode, status: &'static str, message: impl Into<String>) -> Self {
        ApiError { http, status, message: message.into(), retry_after: None }
    }

    /// The caller's request is wrong (400).
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    pub fn from_status(status: &Status) -> Self {
        let (http, name) = match status.code() {
            Code::Ok => (StatusCode::OK, "OK"),
            Code::Cancelled => (StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST), "CANCELLED"),
            Code::Unknown => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
            Code::InvalidArgument => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
            Code::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Code::AlreadyExists => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
            Code::FailedPrecondition => (StatusCode::CONFLICT, "FAILED_PRECONDITION"),
            Code::Aborted => (StatusCode::CONFLICT, "ABORTED"),
            Code::OutOfRange => (StatusCode::BAD_REQUEST, "OUT_OF_RANGE"),
            Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "UNIMPLEMENTED"),
            Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            Code::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, "DATA_LOSS"),
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        };
        let retry_after = (status.code() == Code::ResourceExhausted).then(|| {
            let ms = status.metadata().get(crate::admission::RETRY_AFTER_MS).and_then(|v| v.to_str().ok());
            ms.and_then(|ms| ms.parse::<u64>().ok()).map_or(1, |ms| ms.div_ceil(1000).max(1))
        });
        ApiError { http, status: name, message: status.message().to_string(), retry_after }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {"code": self.http.as_u16(), "status": self.status, "message": self.message}})
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let http = rejection.status();
        let name = if http == StatusCode::PAYLOAD_TOO_LARGE { "RESOURCE_EXHAUSTED" } else { "INVALID_ARGUMENT" };
        ApiError::new(http, name, rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut answer =
            (self.http, [(header::CONTENT_TYPE, "application/json")], self.body().to_string()).into_response();
        if let Some(seconds) = self.retry_after {
            answer.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.http == StatusCode::UNAUTHORIZED {
            answer.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_http_statuses_and_a_rate_limit_says_when_to_retry() {
        let cases = [
            (Status::invalid_argument("x"), 400),
            (Status::unauthenticated("x"), 401),
            (Status::permission_denied("x"), 403),
            (Status::not_found("x"), 404),
            (Status::already_exists("x"), 409),
            (Status::failed_precondition("x"), 409),
            (Status::unavailable("x"), 503),
        ];
        for (status, http) in cases {
            assert_eq!(ApiError::from_status(&status).http.as_u16(), http, "{status:?}");
        }
        let mut limited = Status::resource_exhausted("slow down");
        limited.metadata_mut().insert(crate::admission::RETRY_AFTER_MS, "1500".parse().unwrap());
        let e = ApiError::from_status(&limited);
        assert_eq!((e.http.as_u16(), e.retry_after), (429, Some(2)));
        let answer = e.into_response();
        assert_eq!(answer.headers()[header::RETRY_AFTER], "2");
        let e = ApiError::from_status(&Status::not_found("no job j"));
        assert_eq!(e.body(), json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "no job j"}}));
    }
}
