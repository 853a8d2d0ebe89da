//! The API's error answer: a status and a JSON body
//! `{"error": message, "parameter": name or null}` that names the parameter
//! at fault when there is one. Internal failures are logged here, once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use vidar_store::StoreError;

/// An error answer: status, message, and the parameter at fault if any.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    parameter: Option<&'static str>,
    message: String,
}

impl ApiError {
    /// A 400 blaming `parameter`; the message is prefixed with its name.
    pub(super) fn bad(parameter: &'static str, message: String) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            parameter: Some(parameter),
            message: format!("{parameter}: {message}"),
        }
    }

    /// A 400 about the request as a whole (no single parameter at fault).
    pub(super) fn malformed(message: String) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            parameter: None,
            message,
        }
    }

    /// A 404.
    pub(super) fn not_found(message: String) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            parameter: None,
            message,
        }
    }

    /// A 409: the request contradicts what is stored.
    pub(super) fn conflict(message: String) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            parameter: None,
            message,
        }
    }

    /// A 500, logged.
    pub(super) fn internal(message: String) -> ApiError {
        tracing::error!(error = %message, "API request failed");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            parameter: None,
            message,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(format!("global database: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message, "parameter": self.parameter });
        (self.status, Json(body)).into_response()
    }
}
