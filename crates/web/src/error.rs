//! The one place where domain errors become HTTP responses.
//!
//! Every error body is `{"status": "error", "code": "<stable_snake_case>", "message": "<text>"}`
//! (PRODUCT.md §5), optionally with `field` and `reasons`. Two dialects share this table: the
//! `/api` routes ([`ApiError`]) and the compact seed-002 routes ([`CompactError`]), which answer
//! 403 for every credential or token failure. 5xx bodies are generic; the cause is logged here.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use porteiro_core::Error;
use serde::Serialize;
use utoipa::ToSchema;

/// The error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `error`.
    #[schema(example = "error")]
    pub status: &'static str,
    /// Stable machine-readable code: `invalid_credentials` (unknown user, wrong password and
    /// locked account alike), `account_disabled`, `too_many_requests` (with `Retry-After`),
    /// `invalid_email`, `invalid_username`, `invalid_name`, `invalid_login`, `weak_password` (with
    /// `reasons`), `password_mismatch`, `username_taken`, `email_taken`, `incorrect_password`,
    /// `invalid_token`, `invalid_refresh_token`, `invalid_reset_token`, `email_not_verified`,
    /// `invalid_confirmation_token`, `csrf_failed`,
    /// `forbidden`, `not_found`, `invalid_event_type`, `invalid_url`, `invalid_event_types`,
    /// `invalid_description`, `invalid_overlap`, `invalid_replay`, `cannot_disable_self`,
    /// `invalid_pagination`, `last_admin`, `builtin_protected`, `conflict`, `invalid_json`,
    /// `invalid_request`, `invalid_path`, `invalid_query`,
    /// `unsupported_media_type`, `payload_too_large`, `method_not_allowed`, `bad_request`,
    /// `request_timeout`, `service_unavailable` (with `Retry-After`), `internal_error`;
    /// second step and two-factor: `invalid_mfa_token`, `invalid_code`, `invalid_code_format`,
    /// `mfa_required` (compact API), `mfa_method_not_allowed`, `mfa_already_enabled`,
    /// `mfa_not_enabled`, `mfa_setup_required`, `reauthentication_required`;
    /// recovery addresses: `recovery_email_is_primary`, `recovery_email_limit`,
    /// `recovery_email_exists`, `recovery_email_verified`;
    /// security questions: `invalid_question`, `question_taken`, `invalid_answer`,
    /// `question_inactive`, `too_many_answers`, `invalid_answers_format`, `invalid_answers`,
    /// `recovery_proof_required`, `invalid_recovery_proof`.
    #[schema(example = "invalid_credentials")]
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// The request field at fault, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    /// Every reason a password was refused (`too_short`, `no_digit`, `common`, `guessable`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<&'static str>>,
}

/// Builds an error response outside the domain (extractor rejections, fallbacks).
#[must_use]
pub fn error_response(
    status: StatusCode,
    code: &'static str,
    message: impl Into<String>,
) -> Response {
    let body = ErrorBody {
        status: "error",
        code,
        message: message.into(),
        field: None,
        reasons: None,
    };
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

pub(crate) struct Mapped {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) field: Option<&'static str>,
    pub(crate) reasons: Option<Vec<&'static str>>,
}

fn simple(status: StatusCode, code: &'static str, message: &str) -> Mapped {
    Mapped {
        status,
        code,
        message: message.to_owned(),
        field: None,
        reasons: None,
    }
}

const BAD_CREDENTIALS: &str = "Email or password incorrect.";

/// The shared table. Each arm states the status for the `/api` dialect.
pub(crate) fn map(err: &Error) -> Mapped {
    match err {
        // 401: unknown user, wrong password and locked account look the same.
        Error::InvalidCredentials | Error::CredentialChanged => simple(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            BAD_CREDENTIALS,
        ),
        // 403: only revealed after the right password was given.
        Error::AccountDisabled => simple(
            StatusCode::FORBIDDEN,
            "account_disabled",
            "This account is disabled.",
        ),
        // 403: confirming a change with the wrong current password.
        Error::IncorrectPassword => simple(
            StatusCode::FORBIDDEN,
            "incorrect_password",
            "The current password is incorrect.",
        ),
        // 401 with `WWW-Authenticate: Bearer error="invalid_token"`.
        Error::InvalidAccessToken => simple(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The access token is missing, invalid or expired.",
        ),
        // 401.
        Error::InvalidRefreshToken => simple(
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
            "The refresh token is invalid or expired.",
        ),
        // 400.
        Error::InvalidResetToken => simple(
            StatusCode::BAD_REQUEST,
            "invalid_reset_token",
            "The reset link is invalid or has expired.",
        ),
        // 403: only revealed after the right password was given (`REQUIRE_VERIFIED_EMAIL`).
        // 403: the token was right, but this account also needs its security questions.
        Error::RecoveryProofRequired => simple(
            StatusCode::FORBIDDEN,
            "recovery_proof_required",
            "This account has security questions: answer them first (POST /api/auth/verify-security-question) and send the recovery_proof with the token.",
        ),
        // 403.
        Error::InvalidRecoveryProof => simple(
            StatusCode::FORBIDDEN,
            "invalid_recovery_proof",
            "The recovery proof is invalid or has expired.",
        ),
        // 401: wrong answers, unknown address and locked account alike.
        Error::InvalidAnswers => simple(
            StatusCode::UNAUTHORIZED,
            "invalid_answers",
            "The answers are not correct.",
        ),
        Error::EmailNotVerified => simple(
            StatusCode::FORBIDDEN,
            "email_not_verified",
            "Confirm your email address before signing in; you can ask for a new link.",
        ),
        // 400.
        Error::InvalidConfirmationToken => simple(
            StatusCode::BAD_REQUEST,
            "invalid_confirmation_token",
            "The confirmation link is invalid or has expired.",
        ),
        // 401: the second step's token is unknown, expired, spent or another client's.
        Error::InvalidMfaToken => simple(
            StatusCode::UNAUTHORIZED,
            "invalid_mfa_token",
            "This sign-in has expired or is invalid; sign in again.",
        ),
        // 401: a wrong, expired or reused second-step code (counted towards the lock).
        Error::InvalidCode => simple(
            StatusCode::UNAUTHORIZED,
            "invalid_code",
            "The code is incorrect or has expired.",
        ),
        // 403: a wrong code confirming a change to the factors (the access token is fine).
        Error::IncorrectCode => simple(
            StatusCode::FORBIDDEN,
            "invalid_code",
            "The code is incorrect or was already used.",
        ),
        // 403 (compact API): the account needs a second factor in `otp`.
        Error::MfaRequired => simple(
            StatusCode::FORBIDDEN,
            "mfa_required",
            "This account needs a second factor: send the code from the authenticator app (or a backup code) as `otp`.",
        ),
        // 400 for a method this sign-in does not offer; 403 when the password must confirm;
        // 409 for the account's 2FA state.
        Error::MfaState { code, message } => simple(
            match *code {
                "mfa_method_not_allowed" => StatusCode::BAD_REQUEST,
                "reauthentication_required" => StatusCode::FORBIDDEN,
                _ => StatusCode::CONFLICT,
            },
            code,
            message,
        ),
        // 429 with `Retry-After`.
        Error::RateLimited { .. } => simple(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "Too many requests; retry later.",
        ),
        // 400 with `field`.
        Error::Validation(f) => Mapped {
            status: StatusCode::BAD_REQUEST,
            code: f.code,
            message: f.message.clone(),
            field: Some(f.field),
            reasons: None,
        },
        // 400 with every reason.
        Error::WeakPassword(issues) => Mapped {
            status: StatusCode::BAD_REQUEST,
            code: "weak_password",
            message: issues
                .iter()
                .map(|i| i.message())
                .collect::<Vec<_>>()
                .join(" "),
            field: Some("password"),
            reasons: Some(issues.iter().map(|i| i.code()).collect()),
        },
        // 409.
        Error::Conflict { field } => Mapped {
            status: StatusCode::CONFLICT,
            code: match *field {
                "email" => "email_taken",
                "username" => "username_taken",
                "text" => "question_taken",
                _ => "conflict",
            },
            message: format!("This {field} is already in use."),
            field: Some(field),
            reasons: None,
        },
        // 409: a rule of the data (the last administrator, a built-in role or permission).
        Error::Refused(code) => simple(
            StatusCode::CONFLICT,
            code,
            match *code {
                "last_admin" => {
                    "This would leave no administrator: give the role to someone else first."
                }
                "builtin_protected" => {
                    "Built-in roles and permissions cannot be renamed or deleted."
                }
                "account_disabled" => "The account is disabled: enable it first.",
                "recovery_email_limit" => {
                    "An account has at most 5 recovery addresses: remove one first."
                }
                "recovery_email_exists" => "This recovery address is on the account already.",
                "recovery_email_verified" => "This recovery address is verified already.",
                _ => "This change is not allowed.",
            },
        ),
        // 403.
        Error::Forbidden => simple(
            StatusCode::FORBIDDEN,
            "forbidden",
            "You are not allowed to do this.",
        ),
        // 404.
        Error::NotFound => simple(StatusCode::NOT_FOUND, "not_found", "Not found."),
        // 503 with `Retry-After: 1`.
        Error::Overloaded => simple(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "The server is busy; retry shortly.",
        ),
        // 500 without detail (the record is in the warn log).
        Error::DataUnreadable => simple(
            StatusCode::INTERNAL_SERVER_ERROR,
            "data_unreadable",
            "Stored data could not be read.",
        ),
        // 500, generic.
        Error::Internal(_) => simple(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong.",
        ),
    }
}

fn respond(err: &Error, m: Mapped) -> Response {
    if let Error::Internal(cause) = err {
        tracing::error!(error = ?cause, "internal error");
    }
    let status = m.status;
    let body = ErrorBody {
        status: "error",
        code: m.code,
        message: m.message,
        field: m.field,
        reasons: m.reasons,
    };
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    match err {
        Error::InvalidAccessToken if status == StatusCode::UNAUTHORIZED => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        _ if status == StatusCode::UNAUTHORIZED => {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        Error::Overloaded => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        Error::RateLimited { retry_after_secs } => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        _ => {}
    }
    response
}

/// A domain error answered in the `/api` dialect.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mapped = map(&self.0);
        respond(&self.0, mapped)
    }
}

/// A domain error answered in the compact (seed 002) dialect: credential and token failures are
/// all `403` with one body, so locked, disabled and unknown accounts are indistinguishable. An
/// unconfirmed address (`403 email_not_verified`) is told apart: only after the right password.
#[derive(Debug)]
pub struct CompactError(pub Error);

impl<E: Into<Error>> From<E> for CompactError {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

impl IntoResponse for CompactError {
    fn into_response(self) -> Response {
        let mapped = match &self.0 {
            Error::InvalidCredentials | Error::CredentialChanged | Error::AccountDisabled => {
                simple(
                    StatusCode::FORBIDDEN,
                    "invalid_credentials",
                    BAD_CREDENTIALS,
                )
            }
            Error::IncorrectPassword => simple(
                StatusCode::FORBIDDEN,
                "incorrect_password",
                "The current password is incorrect.",
            ),
            Error::InvalidRefreshToken => simple(
                StatusCode::FORBIDDEN,
                "invalid_refresh_token",
                "The refresh token is invalid or expired.",
            ),
            // A wrong `otp` is a bad credential like any other.
            Error::InvalidCode | Error::InvalidMfaToken => simple(
                StatusCode::FORBIDDEN,
                "invalid_credentials",
                BAD_CREDENTIALS,
            ),
            Error::InvalidResetToken => simple(
                StatusCode::FORBIDDEN,
                "invalid_reset_token",
                "The reset token is invalid or has expired.",
            ),
            other => map(other),
        };
        respond(&self.0, mapped)
    }
}

/// Result alias for `/api` handlers.
pub type ApiResult<T> = Result<T, ApiError>;
/// Result alias for compact handlers.
pub type CompactResult<T> = Result<T, CompactError>;
