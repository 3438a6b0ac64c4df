//! `/api/users`: accounts. Users see only themselves; administrators see everyone.

use crate::views::Json;
use axum::extract::State;
use porteiro_core::flows::registration::ensure_confirmed;
use porteiro_core::flows::settings::ProfileChange;
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AppJson, AppPath, AppQuery, Bearer};
use crate::state::AppState;
use crate::views::{Envelope, PageQuery, UserList, UserView, ok, ok_with};

/// Profile update body; absent fields are unchanged, empty names are cleared.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUser {
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Preferred language (`en`, `pt-BR`).
    pub locale: Option<String>,
    /// Enable or disable the account (administrators).
    pub is_active: Option<bool>,
}

/// Change-password body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePassword {
    /// Current password (not needed when an administrator changes someone else's).
    #[schema(value_type = Option<String>, format = Password)]
    pub current_password: Option<SecretString>,
    /// New password.
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
    /// Must equal `new_password` when present.
    #[schema(value_type = Option<String>, format = Password)]
    pub confirm_password: Option<SecretString>,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(change_password))
}

/// List users, paginated (administrators).
#[utoipa::path(get, path = "/api/users", tag = "users", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = Envelope<UserList>), (status = 403, body = ErrorBody)))]
async fn list(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppQuery(q): AppQuery<PageQuery>,
) -> ApiResult<Json<Envelope<UserList>>> {
    let page = s
        .auth
        .list_users(&p, q.page.unwrap_or(1), q.per_page.unwrap_or(20))
        .await?;
    let now = s.auth.now();
    Ok(ok(UserList {
        total_pages: page.total.div_ceil(page.per_page),
        items: page
            .users
            .into_iter()
            .map(|u| UserView::new(u, now))
            .collect(),
        total: page.total,
        page: page.page,
        per_page: page.per_page,
    }))
}

/// One user (yourself, or anyone as an administrator).
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<UserView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<UserView>>> {
    Ok(ok(UserView::new(s.auth.user(&p, id).await?, s.auth.now())))
}

/// Update a profile; disabling an account (administrators) revokes its sessions.
#[utoipa::path(put, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), request_body = UpdateUser, security(("bearer" = [])),
    responses((status = 200, body = Envelope<UserView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<UpdateUser>,
) -> ApiResult<Json<Envelope<UserView>>> {
    let change = ProfileChange {
        first_name: req.first_name,
        last_name: req.last_name,
        locale: req.locale,
        is_active: req.is_active,
    };
    Ok(ok_with(
        "Profile updated.",
        UserView::new(s.auth.update_user(&p, id, change).await?, s.auth.now()),
    ))
}

/// Delete an account (administrators).
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Option<String>>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    s.auth.delete_user(&p, id).await?;
    Ok(ok_with("Account deleted.", None))
}

/// Change a password; the user's other sessions are revoked at once.
#[utoipa::path(post, path = "/api/users/{id}/change-password", tag = "users", params(("id" = Uuid, Path)), request_body = ChangePassword, security(("bearer" = [])),
    responses((status = 200, body = Envelope<Option<String>>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn change_password(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<ChangePassword>,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    ensure_confirmed(
        "confirm_password",
        &req.new_password,
        req.confirm_password.as_ref(),
    )?;
    s.auth
        .change_password(&p, id, req.current_password.as_ref(), &req.new_password)
        .await?;
    Ok(ok_with(
        "Password changed; other sessions were signed out.",
        None,
    ))
}
