//! [`AppError`]: every way an API request fails, and its JSON response.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::storage::StorageError;

/// Why an API request failed. Becomes `{"error": "<Display>"}` with the status of
/// [`AppError::status`].
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is wrong (bad parameter...): 400.
    #[error("{0}")]
    BadRequest(String),
    /// No such thing: 404.
    #[error("{0}")]
    NotFound(String),
    /// The path exists but not with this method: 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The store failed (or refused the query: 400 for [`StorageError::BadQuery`]).
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// Something that should not happen: 500.
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) | AppError::Storage(StorageError::BadQuery(_)) => {
                StatusCode::BAD_REQUEST
            }
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Storage(StorageError::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Storage(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(message = "API request failed.", error = %self);
        }
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}
