//! Bearer authentication.
//!
//! Access tokens are read from the `Authorization: Bearer` header only — never from the query
//! string, where they would end up in logs, history and `Referer` headers.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use porteiro_core::Error;
use porteiro_core::service::Principal;

use crate::error::{ApiError, CompactError};
use crate::state::AppState;

/// The raw bearer token of a request, if any.
pub(crate) fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// An authenticated caller (`/api` dialect: 401 on failure).
#[derive(Debug, Clone, Copy)]
pub struct Bearer(pub Principal);

impl FromRequestParts<AppState> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or(ApiError(Error::InvalidAccessToken))?;
        Ok(Self(state.auth.authenticate(token).await?))
    }
}

/// An authenticated caller for the compact routes (same 401 on a missing or bad token).
#[derive(Debug, Clone, Copy)]
pub struct CompactBearer(pub Principal);

impl FromRequestParts<AppState> for CompactBearer {
    type Rejection = CompactError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or(CompactError(Error::InvalidAccessToken))?;
        Ok(Self(
            state.auth.authenticate(token).await.map_err(CompactError)?,
        ))
    }
}
