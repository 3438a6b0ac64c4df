//! `/api/users`: accounts and their administration (issue 15).
//!
//! A user reads and edits their own account; reading others needs `users:read`, changing them
//! `users:manage` over an account holding nothing the caller lacks. Routes whose permission
//! does not depend on the target take [`RequirePermission`]; the others check in the flow. Request bodies are parsed into the fields a route accepts and nothing else:
//! unknown fields (`is_admin`, `roles`, `email_verified`, …) are ignored, never applied.

use crate::views::Json;
use axum::extract::State;
use porteiro_core::Error;
use porteiro_core::flows::admin::UserFilter;
use porteiro_core::flows::registration::ensure_confirmed;
use porteiro_core::flows::settings::ProfileChange;
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AppJson, AppPath, AppQuery, Bearer, RequirePermission, perm};
use crate::state::AppState;
use crate::views::{Envelope, Revoked, UserList, UserListQuery, UserView, ok, ok_with};

/// Profile update body; absent fields are unchanged, empty names are cleared. Any other field
/// (`is_admin`, `roles`, `email_verified`, `username`, …) is ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUser {
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Preferred language (`en`, `pt-BR`).
    pub locale: Option<String>,
    /// Enable or disable the account (`users:manage`; never your own).
    pub is_active: Option<bool>,
    /// A new email address: a confirmation link goes to it and a notice to the current one;
    /// the address changes when the link is used (`POST /api/auth/verify-email`). The current
    /// address is no change.
    pub email: Option<String>,
    /// Your current password: needed to change your own email address (not when someone with
    /// `users:manage` changes another account's).
    #[schema(value_type = Option<String>, format = Password)]
    #[serde(alias = "current_password")]
    pub password: Option<SecretString>,
    /// Whether a sign-in from a device the account has not used before mails an alert with a
    /// "this wasn't me" link (default on).
    pub login_alerts: Option<bool>,
    /// Whether other accounts may send you private messages (default on). When off, messages
    /// to you are answered to their senders as if delivered, and never reach you.
    pub accept_messages: Option<bool>,
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

/// Delete body: optional; deleting your own account needs your password.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct DeleteUser {
    /// Your current password (deleting your own account).
    #[schema(value_type = Option<String>, format = Password)]
    #[serde(alias = "current_password")]
    pub password: Option<SecretString>,
}

/// A caller holding `users:manage` (checked before the handler; the flow checks the target).
type Manager = RequirePermission<perm::UsersManage>;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(change_password))
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(unlock))
        .routes(routes!(sign_out_all))
        .routes(routes!(send_password_reset))
}

/// List users, with search and filters.
///
/// Permission: `users:read`. Users in creation order, `per_page` (1–100, default 20) to a
/// page; `q` keeps those whose email or username starts with it (case-insensitive); `active`,
/// `locked` (locked by failed sign-ins right now) and `role` (a role name; an unknown one gives
/// an empty page) narrow further. `total` counts every match.
#[utoipa::path(get, path = "/api/users", tag = "users", params(UserListQuery), security(("bearer" = [])),
    responses((status = 200, body = Envelope<UserList>),
              (status = 400, body = ErrorBody, description = "`invalid_pagination`, `invalid_query`"),
              (status = 403, body = ErrorBody)))]
async fn list(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::UsersRead>,
    AppQuery(q): AppQuery<UserListQuery>,
) -> ApiResult<Json<Envelope<UserList>>> {
    let filter = UserFilter {
        q: q.q,
        active: q.active,
        locked: q.locked,
        role: q.role,
    };
    let page = s
        .auth
        .list_users(&p, &filter, q.page.unwrap_or(1), q.per_page.unwrap_or(20))
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

/// One user.
///
/// Permission: none for yourself; `users:read` for anyone else.
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<UserView>), (status = 400, body = ErrorBody, description = "`invalid_path`"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<UserView>>> {
    Ok(ok(UserView::new(s.auth.user(&p, id).await?, s.auth.now())))
}

/// Update a profile, or ask for a new email address.
///
/// Permission: none for yourself; `users:manage` for anyone else (over an account holding no
/// permission you lack), and for `is_active` (never on your own account; disabling revokes
/// every session and is refused when it would leave no administrator). A new `email` sends a confirmation link to it and a notice to the current
/// address; the address changes only when the link is used. Changing your own needs `password`
/// (a wrong one counts towards the lock). The answer is the same whether or not another account
/// has the new address. At most three links an hour per account.
#[utoipa::path(put, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), request_body = UpdateUser, security(("bearer" = [])),
    responses((status = 200, body = Envelope<UserView>),
              (status = 400, body = ErrorBody, description = "`invalid_name`, `invalid_email`, `cannot_disable_self`, `invalid_json`, `invalid_request`"),
              (status = 403, body = ErrorBody, description = "`forbidden`, `incorrect_password`"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`last_admin`, `account_disabled` (changing a disabled account's address)"),
              (status = 429, body = ErrorBody)))]
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
        email: req.email,
        password: req.password,
        login_alerts: req.login_alerts,
        accept_messages: req.accept_messages,
    };
    let updated = s.auth.update_user(&p, id, change).await?;
    let message = if updated.email_change_requested {
        "Profile updated. A link to confirm the new email address was sent to it; the address changes once it is used."
    } else {
        "Profile updated."
    };
    Ok(ok_with(message, UserView::new(updated.user, s.auth.now())))
}

/// Delete an account and everything of it; its sessions end at once.
///
/// Permission: `users:manage` for anyone else (over an account holding no permission you lack);
/// your own needs `{"password"}` in the body (a wrong one counts towards the lock). Refused
/// (`409 last_admin`) when it would leave no administrator.
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)),
    request_body(content = DeleteUser, description = "Optional; `password` for your own account"), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Option<String>>), (status = 400, body = ErrorBody, description = "`invalid_path`, `invalid_json`"),
              (status = 403, body = ErrorBody, description = "`forbidden`, `incorrect_password`"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "`last_admin`")))]
async fn delete(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    // The body is optional: administrators deleting someone else send none.
    let req: DeleteUser = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteUser::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            Error::validation(
                "password",
                "invalid_json",
                "The body must be JSON with an optional `password`.",
            )
        })?
    };
    s.auth.delete_user(&p, id, req.password.as_ref()).await?;
    Ok(ok_with("Account deleted.", None))
}

/// Change a password; the user's other sessions are revoked at once.
///
/// Permission: none for yourself (with `current_password`); `users:manage` for anyone else
/// (over an account holding no permission you lack).
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

/// Disable an account: it can no longer sign in, and its sessions end at once.
///
/// Permission: `users:manage`, over an account holding no permission you lack; not your own
/// account. Refused (`409 last_admin`) when it would leave no active administrator.
#[utoipa::path(post, path = "/api/users/{id}/disable", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<UserView>), (status = 400, body = ErrorBody, description = "`invalid_path`, `cannot_disable_self`"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "`last_admin`")))]
async fn disable(
    State(s): State<AppState>,
    RequirePermission(p, _perm): Manager,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<UserView>>> {
    let user = s.auth.set_active(&p, id, false).await?;
    Ok(ok_with(
        "Account disabled; its sessions were signed out.",
        UserView::new(user, s.auth.now()),
    ))
}

/// Enable a disabled account.
///
/// Permission: `users:manage`, over an account holding no permission you lack; not your own
/// account.
#[utoipa::path(post, path = "/api/users/{id}/enable", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<UserView>), (status = 400, body = ErrorBody, description = "`invalid_path`, `cannot_disable_self`"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn enable(
    State(s): State<AppState>,
    RequirePermission(p, _perm): Manager,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<UserView>>> {
    let user = s.auth.set_active(&p, id, true).await?;
    Ok(ok_with(
        "Account enabled.",
        UserView::new(user, s.auth.now()),
    ))
}

/// Lift a lock caused by failed sign-ins.
///
/// Permission: `users:manage`, over an account holding no permission you lack.
#[utoipa::path(post, path = "/api/users/{id}/unlock", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<UserView>), (status = 400, body = ErrorBody, description = "`invalid_path`"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unlock(
    State(s): State<AppState>,
    RequirePermission(p, _perm): Manager,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<UserView>>> {
    let user = s.auth.unlock_as(&p, &id.to_string()).await?;
    Ok(ok_with(
        "Account unlocked.",
        UserView::new(user, s.auth.now()),
    ))
}

/// Sign an account out everywhere: every session ends at once (as `POST
/// /api/auth/revoke-all/{id}`).
///
/// Permission: none for yourself; `users:manage` for anyone else (over an account holding no
/// permission you lack).
#[utoipa::path(post, path = "/api/users/{id}/sign-out-all", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Revoked>), (status = 400, body = ErrorBody, description = "`invalid_path`"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn sign_out_all(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<Revoked>>> {
    let revoked = s.auth.revoke_all(&p, id).await?;
    Ok(ok_with("All sessions revoked.", Revoked { revoked }))
}

/// Mail the account a password-reset link, as if its holder had asked for one.
///
/// Permission: `users:manage`, over an account holding no permission you lack. The account's
/// limit of reset mails applies (`429`); a disabled account gets none (`409 account_disabled`).
#[utoipa::path(post, path = "/api/users/{id}/send-password-reset", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Option<String>>), (status = 400, body = ErrorBody, description = "`invalid_path`"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`account_disabled`"), (status = 429, body = ErrorBody)))]
async fn send_password_reset(
    State(s): State<AppState>,
    RequirePermission(p, _perm): Manager,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    s.auth.send_password_reset(&p, id).await?;
    Ok(ok_with("A password-reset link was sent.", None))
}
