//! Bearer and browser-cookie authentication.
//!
//! Access tokens are read from the `Authorization: Bearer` header only — never from the query
//! string, where they would end up in logs, history and `Referer` headers. Without one, the
//! `/api` routes accept a browser session cookie; a state-changing request (any method but GET,
//! HEAD, OPTIONS) authenticated that way must also carry the CSRF token in `X-CSRF-Token`, equal
//! to the CSRF cookie and bound to the session, or it is refused with `403 csrf_failed` before
//! the handler runs. Bearer calls need no CSRF token: a browser never adds that header by itself.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse as _, Response};
use std::marker::PhantomData;

use porteiro_core::Error;
use porteiro_core::domain::rbac::Permission;
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
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let read_only = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        caller(parts, state, !read_only).await.map(Self)
    }
}

/// Like [`Bearer`], but a cookie session needs the CSRF token whatever the method: for the `GET`
/// routes seed 004 defines that change state (a two-factor setup replaces a pending secret), so
/// that a cross-site navigation cannot trigger them.
#[derive(Debug, Clone, Copy)]
pub struct BearerChanging(pub Principal);

impl FromRequestParts<AppState> for BearerChanging {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        caller(parts, state, true).await.map(Self)
    }
}

/// The caller by bearer token, or by session cookie (with the CSRF token when `csrf`).
async fn caller(parts: &Parts, state: &AppState, csrf: bool) -> Result<Principal, Response> {
    if let Some(token) = bearer_token(parts) {
        return state
            .auth
            .authenticate(token)
            .await
            .map_err(|e| ApiError(e).into_response());
    }
    let cookies = state.settings.cookies;
    let Some(session) = cookies.read(&parts.headers, crate::cookies::SESSION) else {
        return Err(ApiError(Error::InvalidAccessToken).into_response());
    };
    let principal = state
        .auth
        .authenticate_cookie(&session)
        .await
        .map_err(|e| ApiError(e).into_response())?;
    if csrf && !csrf_ok(parts, state, Some(&session)) {
        return Err(csrf_failed());
    }
    Ok(principal)
}

/// Header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Whether the request's CSRF header matches its CSRF cookie and is bound to `session`.
pub(crate) fn csrf_ok(parts: &Parts, state: &AppState, session: Option<&str>) -> bool {
    let cookie = state
        .settings
        .cookies
        .read(&parts.headers, crate::cookies::CSRF);
    let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    state.auth.csrf_valid(cookie.as_deref(), presented, session)
}

/// `403 csrf_failed`.
#[must_use]
pub fn csrf_failed() -> Response {
    crate::error::error_response(
        StatusCode::FORBIDDEN,
        "csrf_failed",
        "The CSRF token is missing or wrong. Reload the page and try again.",
    )
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

/// A permission named at the type level, for [`RequirePermission`].
pub trait Needs {
    /// The permission required.
    const PERMISSION: Permission;
}

/// Type-level names of the built-in permissions, for [`RequirePermission`].
pub mod perm {
    use super::{Needs, Permission};

    macro_rules! needs {
        ($($name:ident),* $(,)?) => {
            $(
                #[doc = concat!("Requires `Permission::", stringify!($name), "`.")]
                #[derive(Debug, Clone, Copy)]
                pub struct $name;
                impl Needs for $name {
                    const PERMISSION: Permission = Permission::$name;
                }
            )*
        };
    }

    needs!(
        PermissionsManage,
        RolesManage,
        RolesAssignPermission,
        UsersAssignRole,
        UsersRead,
        UsersManage,
        AuditRead,
        WebhooksManage,
        SystemMaintain,
        SecurityQuestionsManage,
        TokensIntrospect,
    );
}

/// An authenticated caller holding the permission `N` (`/api` dialect): 401 without a valid
/// token, `403 forbidden` without the permission, before the handler runs. Routes whose
/// permission depends on the target (yourself, or anyone with a permission) take [`Bearer`] and
/// check in the flow. Every check reads the live grants (see `porteiro_core::grants`).
#[derive(Debug, Clone, Copy)]
pub struct RequirePermission<N>(pub Principal, pub PhantomData<N>);

impl<N: Needs + Send + Sync> FromRequestParts<AppState> for RequirePermission<N> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Bearer(principal) = Bearer::from_request_parts(parts, state).await?;
        principal
            .ensure(N::PERMISSION)
            .map_err(|e| ApiError(e).into_response())?;
        Ok(Self(principal, PhantomData))
    }
}
