//! `ApiError`: every error the API returns, with one exhaustive mapping to an HTTP status
//! and a stable code. Internal details go to the log, not to the client.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::{callbacks, db, recovery, registry, tenants, webhooks};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidComponent(String),
    /// No API key, or one that is not valid (with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthorized(String),
    /// A valid key whose role may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A write refused for lack of disk space: nothing was done; try again once space
    /// returns (the host takes writes again by itself).
    #[error("{0}")]
    InsufficientStorage(String),
    /// Over a tenant's count or size quota: the message names the quota, its limit and the
    /// usage. Nothing was written.
    #[error("{0}")]
    QuotaExceeded(String),
    /// Over a tenant's invocation rate: try again after `retry_after_secs`.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// Over a function's `max_queued` (DESIGN 10): nothing was written; try again after
    /// `retry_after_secs`.
    #[error("{message}")]
    BacklogFull {
        message: String,
        retry_after_secs: u64,
    },
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub(super) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::InvalidComponent(_) => (StatusCode::BAD_REQUEST, "invalid_component"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            ApiError::QuotaExceeded(_) => (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::BacklogFull { .. } => (StatusCode::TOO_MANY_REQUESTS, "backlog_full"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        let body = json!({"error": {"code": code, "message": self.to_string()}});
        let mut resp = (status, Json(body)).into_response();
        let h = resp.headers_mut();
        match &self {
            ApiError::Unauthorized(_) => {
                h.insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            ApiError::RateLimited {
                retry_after_secs, ..
            }
            | ApiError::BacklogFull {
                retry_after_secs, ..
            } => {
                h.insert(axum::http::header::RETRY_AFTER, (*retry_after_secs).into());
            }
            _ => {}
        }
        resp
    }
}

impl From<db::Error> for ApiError {
    fn from(e: db::Error) -> Self {
        if e.is_full() {
            tracing::warn!(error = %e, "write refused: storage full");
            ApiError::InsufficientStorage(format!(
                "{e}; nothing was written: try again once space is freed"
            ))
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<registry::Error> for ApiError {
    fn from(e: registry::Error) -> Self {
        use registry::Error as E;
        match e {
            E::Empty | E::NotWasm | E::CoreModule | E::Invalid(_) | E::Link(_) | E::Export(_) => {
                ApiError::InvalidComponent(e.to_string())
            }
            E::UnknownFunction(_) | E::UnknownVersion(..) => ApiError::NotFound(e.to_string()),
            E::Storage(e) => e.into(),
            E::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
            E::Artifact(_) | E::Spool(_) | E::Interrupted(_) | E::Damaged(_) => {
                ApiError::Internal(e.to_string())
            }
            E::Shared(shared) => match Arc::try_unwrap(shared) {
                Ok(e) => e.into(),
                Err(shared) => ApiError::Internal(shared.to_string()),
            },
        }
    }
}

impl From<tenants::Error> for ApiError {
    fn from(e: tenants::Error) -> Self {
        use tenants::Error as E;
        match e {
            E::Unauthorized(m) => ApiError::Unauthorized(m),
            E::Forbidden(m) => ApiError::Forbidden(m),
            E::BadRequest(m) => ApiError::BadRequest(m),
            E::NotFound(m) => ApiError::NotFound(m),
            E::Conflict(m) => ApiError::Conflict(m),
            E::Storage(e) => e.into(),
        }
    }
}

impl From<recovery::Error> for ApiError {
    fn from(e: recovery::Error) -> Self {
        use recovery::Error as E;
        match e {
            E::NotFound(m) => ApiError::NotFound(m),
            E::BadRequest(m) => ApiError::BadRequest(m),
            E::Conflict(m) => ApiError::Conflict(m),
            E::Quota(m) => ApiError::QuotaExceeded(m),
            E::Storage(e) => e.into(),
        }
    }
}

impl From<tenants::usage::Exceeded> for ApiError {
    fn from(e: tenants::usage::Exceeded) -> Self {
        ApiError::QuotaExceeded(e.0)
    }
}

impl From<tenants::rate::Limited> for ApiError {
    fn from(e: tenants::rate::Limited) -> Self {
        ApiError::RateLimited {
            message: e.message,
            retry_after_secs: e.retry_after_secs,
        }
    }
}

impl From<crate::scheduler::BacklogFull> for ApiError {
    fn from(e: crate::scheduler::BacklogFull) -> Self {
        ApiError::BacklogFull {
            message: e.to_string(),
            retry_after_secs: e.retry_after_secs,
        }
    }
}

impl From<callbacks::Error> for ApiError {
    fn from(e: callbacks::Error) -> Self {
        use callbacks::Error as E;
        match e {
            E::NotFound(_) => ApiError::NotFound(e.to_string()),
            E::AlreadyCompleted(_) | E::ExecutionFinished(_) => ApiError::Conflict(e.to_string()),
            E::Storage(e) => e.into(),
        }
    }
}

impl From<webhooks::Error> for ApiError {
    fn from(e: webhooks::Error) -> Self {
        use webhooks::Error as E;
        match e {
            E::BadRequest(m) => ApiError::BadRequest(m),
            E::NotFound(m) => ApiError::NotFound(m),
            E::Conflict(m) => ApiError::Conflict(m),
            E::Limit(m) => ApiError::QuotaExceeded(m),
            E::Storage(e) => e.into(),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

/// A path that does not decode (its parameters are not UTF-8) names nothing.
impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        ApiError::NotFound(r.body_text())
    }
}
