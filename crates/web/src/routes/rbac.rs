//! `/api/rbac`: permissions, roles, their assignments and permission checks (seed 004).
//!
//! Reads need a signed-in user (another user's roles and checks need `users:read`); every change
//! needs the permission the seed names, checked before the handler by [`RequirePermission`], and
//! the flow refuses to hand out more than the caller holds (see `porteiro_core::flows::rbac`).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use porteiro_core::domain::rbac::{RbacKind, RbacObject};
use porteiro_core::flows::rbac::RbacChange;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AppJson, AppPath, Bearer, RequirePermission, perm};
use crate::state::AppState;
use crate::views::{Envelope, Json, ok, ok_with};

/// A role or a permission.
#[derive(Debug, Serialize, ToSchema)]
pub struct RbacView {
    /// Identifier.
    pub id: Uuid,
    /// Unique name: a role is `[a-z0-9_-]`, a permission `resource:action`; at most 64.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Built in: cannot be renamed or deleted.
    pub builtin: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<RbacObject> for RbacView {
    fn from(o: RbacObject) -> Self {
        Self {
            id: o.id,
            name: o.name,
            description: o.description,
            builtin: o.builtin,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

fn views(objects: Vec<RbacObject>) -> Vec<RbacView> {
    objects.into_iter().map(RbacView::from).collect()
}

/// A new role or permission.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateRbac {
    /// Unique name.
    #[schema(example = "reports:read")]
    pub name: String,
    /// Free text, at most 500 characters.
    pub description: Option<String>,
}

/// A change; absent fields are unchanged (built-ins keep their names).
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateRbac {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
}

/// Whether an assignment changed anything.
#[derive(Debug, Serialize, ToSchema)]
pub struct Changed {
    /// False when it was already so.
    pub changed: bool,
}

/// The answer of a permission check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Allowed {
    /// Whether the user holds the permission.
    pub allowed: bool,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_permissions, create_permission))
        .routes(routes!(
            get_permission,
            update_permission,
            delete_permission
        ))
        .routes(routes!(permission_by_name))
        .routes(routes!(list_roles, create_role))
        .routes(routes!(get_role, update_role, delete_role))
        .routes(routes!(role_by_name))
        .routes(routes!(role_permissions))
        .routes(routes!(grant_permission, revoke_permission))
        .routes(routes!(user_roles))
        .routes(routes!(assign_role, unassign_role))
        .routes(routes!(check_permission))
}

type Object = ApiResult<Json<Envelope<RbacView>>>;
type Created = ApiResult<(StatusCode, Json<Envelope<RbacView>>)>;
type List = ApiResult<Json<Envelope<Vec<RbacView>>>>;

/// The six handlers of one kind of object (`/api/rbac/permissions` or `/api/rbac/roles`), with
/// the permission that changes them.
macro_rules! object_routes {
    ($kind:expr, $what:literal, $base:literal, $one:literal, $by_name:literal, $needs:ty, $needs_name:literal,
     $list:ident, $create:ident, $get:ident, $by:ident, $update:ident, $delete:ident) => {
        #[doc = concat!("List ", $what, "s (signed in).")]
        #[utoipa::path(get, path = $base, tag = "rbac", security(("bearer" = [])),
            responses((status = 200, body = Envelope<Vec<RbacView>>), (status = 401, body = ErrorBody)))]
        async fn $list(State(s): State<AppState>, _caller: Bearer) -> List {
            Ok(ok(views(s.rbac.list($kind).await?)))
        }

        #[doc = concat!("Create a ", $what, " (needs `", $needs_name, "`).")]
        #[utoipa::path(post, path = $base, tag = "rbac", request_body = CreateRbac, security(("bearer" = [])),
            responses((status = 201, body = Envelope<RbacView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
        async fn $create(
            State(s): State<AppState>,
            RequirePermission(p, _perm): RequirePermission<$needs>,
            AppJson(req): AppJson<CreateRbac>,
        ) -> Created {
            let created = s
                .rbac
                .create(&p, $kind, &req.name, req.description.as_deref())
                .await?;
            Ok((StatusCode::CREATED, ok_with("Created.", created.into())))
        }

        #[doc = concat!("One ", $what, " (signed in).")]
        #[utoipa::path(get, path = $one, tag = "rbac", params(("id" = Uuid, Path)), security(("bearer" = [])),
            responses((status = 200, body = Envelope<RbacView>), (status = 404, body = ErrorBody)))]
        async fn $get(State(s): State<AppState>, _caller: Bearer, AppPath(id): AppPath<Uuid>) -> Object {
            Ok(ok(s.rbac.get($kind, id).await?.into()))
        }

        #[doc = concat!("One ", $what, " by name (signed in).")]
        #[utoipa::path(get, path = $by_name, tag = "rbac", params(("name" = String, Path)), security(("bearer" = [])),
            responses((status = 200, body = Envelope<RbacView>), (status = 404, body = ErrorBody)))]
        async fn $by(
            State(s): State<AppState>,
            _caller: Bearer,
            AppPath(name): AppPath<String>,
        ) -> Object {
            Ok(ok(s.rbac.get_by_name($kind, &name).await?.into()))
        }

        #[doc = concat!("Rename or re-describe a ", $what, " (needs `", $needs_name, "`; built-ins keep their names).")]
        #[utoipa::path(put, path = $one, tag = "rbac", params(("id" = Uuid, Path)), request_body = UpdateRbac, security(("bearer" = [])),
            responses((status = 200, body = Envelope<RbacView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
        async fn $update(
            State(s): State<AppState>,
            RequirePermission(p, _perm): RequirePermission<$needs>,
            AppPath(id): AppPath<Uuid>,
            AppJson(req): AppJson<UpdateRbac>,
        ) -> Object {
            let change = RbacChange {
                name: req.name,
                description: req.description,
            };
            Ok(ok_with("Updated.", s.rbac.update(&p, $kind, id, change).await?.into()))
        }

        #[doc = concat!("Delete a ", $what, " and its links (needs `", $needs_name, "`; never a built-in, never the last administrator's).")]
        #[utoipa::path(delete, path = $one, tag = "rbac", params(("id" = Uuid, Path)), security(("bearer" = [])),
            responses((status = 200, body = Envelope<RbacView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
        async fn $delete(
            State(s): State<AppState>,
            RequirePermission(p, _perm): RequirePermission<$needs>,
            AppPath(id): AppPath<Uuid>,
        ) -> Object {
            Ok(ok_with("Deleted.", s.rbac.delete(&p, $kind, id).await?.into()))
        }
    };
}

object_routes!(
    RbacKind::Permission,
    "permission",
    "/api/rbac/permissions",
    "/api/rbac/permissions/{id}",
    "/api/rbac/permissions/by-name/{name}",
    perm::PermissionsManage,
    "permissions:manage",
    list_permissions,
    create_permission,
    get_permission,
    permission_by_name,
    update_permission,
    delete_permission
);

object_routes!(
    RbacKind::Role,
    "role",
    "/api/rbac/roles",
    "/api/rbac/roles/{id}",
    "/api/rbac/roles/by-name/{name}",
    perm::RolesManage,
    "roles:manage",
    list_roles,
    create_role,
    get_role,
    role_by_name,
    update_role,
    delete_role
);

/// The permissions a role grants (signed in; `admin` grants all).
#[utoipa::path(get, path = "/api/rbac/roles/{role_id}/permissions", tag = "rbac", params(("role_id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Vec<RbacView>>), (status = 404, body = ErrorBody)))]
async fn role_permissions(
    State(s): State<AppState>,
    _caller: Bearer,
    AppPath(role_id): AppPath<Uuid>,
) -> List {
    Ok(ok(views(s.rbac.role_permissions(role_id).await?)))
}

/// Grant a permission to a role (`roles:assign-permission`, and the caller holds it).
#[utoipa::path(post, path = "/api/rbac/roles/{role_id}/permissions/{permission_id}", tag = "rbac",
    params(("role_id" = Uuid, Path), ("permission_id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Changed>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn grant_permission(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::RolesAssignPermission>,
    AppPath((role_id, permission_id)): AppPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Envelope<Changed>>> {
    let changed = s
        .rbac
        .link_permission(&p, role_id, permission_id, true)
        .await?;
    Ok(ok_with("Permission granted.", Changed { changed }))
}

/// Take a permission back from a role (`roles:assign-permission`, and the caller holds it).
#[utoipa::path(delete, path = "/api/rbac/roles/{role_id}/permissions/{permission_id}", tag = "rbac",
    params(("role_id" = Uuid, Path), ("permission_id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Changed>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn revoke_permission(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::RolesAssignPermission>,
    AppPath((role_id, permission_id)): AppPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Envelope<Changed>>> {
    let changed = s
        .rbac
        .link_permission(&p, role_id, permission_id, false)
        .await?;
    Ok(ok_with("Permission revoked.", Changed { changed }))
}

/// A user's roles (yourself, or anyone with `users:read`).
#[utoipa::path(get, path = "/api/rbac/users/{user_id}/roles", tag = "rbac", params(("user_id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Vec<RbacView>>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn user_roles(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(user_id): AppPath<Uuid>,
) -> List {
    Ok(ok(views(s.rbac.user_roles(&p, user_id).await?)))
}

/// Give a role to a user (`users:assign-role`, and the caller holds every permission of the role).
#[utoipa::path(post, path = "/api/rbac/users/{user_id}/roles/{role_id}", tag = "rbac",
    params(("user_id" = Uuid, Path), ("role_id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Changed>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn assign_role(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::UsersAssignRole>,
    AppPath((user_id, role_id)): AppPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Envelope<Changed>>> {
    let changed = s.rbac.link_role(&p, user_id, role_id, true).await?;
    Ok(ok_with("Role assigned.", Changed { changed }))
}

/// Take a role back from a user (`users:assign-role`, and the caller holds every permission of
/// the role; never the last administrator's).
#[utoipa::path(delete, path = "/api/rbac/users/{user_id}/roles/{role_id}", tag = "rbac",
    params(("user_id" = Uuid, Path), ("role_id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Changed>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn unassign_role(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::UsersAssignRole>,
    AppPath((user_id, role_id)): AppPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Envelope<Changed>>> {
    let changed = s.rbac.link_role(&p, user_id, role_id, false).await?;
    Ok(ok_with("Role removed.", Changed { changed }))
}

/// Whether a user holds a permission (yourself, or anyone with `users:read`; an unknown
/// permission is `false`).
#[utoipa::path(get, path = "/api/rbac/check-permission/{user_id}/{permission_name}", tag = "rbac",
    params(("user_id" = Uuid, Path), ("permission_name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Allowed>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn check_permission(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath((user_id, name)): AppPath<(Uuid, String)>,
) -> ApiResult<Json<Envelope<Allowed>>> {
    let allowed = s.rbac.check(&p, user_id, &name).await?;
    Ok(ok(Allowed { allowed }))
}
