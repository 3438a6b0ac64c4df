//! `/api/auth/devices`: the caller's sessions as devices. No token material is ever shown.

use crate::views::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AppJson, AppPath, Bearer};
use crate::state::AppState;
use crate::views::{DeviceView, Envelope, ok, ok_with};

/// Rename body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RenameDevice {
    /// New name, 1–64 characters.
    pub device_name: String,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, rename, revoke))
}

/// The caller's active sessions.
#[utoipa::path(get, path = "/api/auth/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = Envelope<Vec<DeviceView>>), (status = 401, body = ErrorBody)))]
async fn list(
    State(s): State<AppState>,
    Bearer(p): Bearer,
) -> ApiResult<Json<Envelope<Vec<DeviceView>>>> {
    Ok(ok(s
        .auth
        .devices(&p)
        .await?
        .into_iter()
        .map(DeviceView::from)
        .collect()))
}

/// One of the caller's sessions.
#[utoipa::path(get, path = "/api/auth/devices/{id}", tag = "devices", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<DeviceView>), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<DeviceView>>> {
    Ok(ok(s.auth.device(&p, id).await?.into()))
}

/// Rename one of the caller's sessions.
#[utoipa::path(put, path = "/api/auth/devices/{id}", tag = "devices", params(("id" = Uuid, Path)), request_body = RenameDevice, security(("bearer" = [])),
    responses((status = 200, body = Envelope<DeviceView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rename(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<RenameDevice>,
) -> ApiResult<Json<Envelope<DeviceView>>> {
    Ok(ok_with(
        "Device renamed.",
        s.auth.rename_device(&p, id, &req.device_name).await?.into(),
    ))
}

/// Revoke one of the caller's sessions (its refresh and access tokens stop working at once).
#[utoipa::path(delete, path = "/api/auth/devices/{id}", tag = "devices", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Option<String>>), (status = 404, body = ErrorBody)))]
async fn revoke(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    s.auth.revoke_device(&p, id).await?;
    Ok(ok_with("Device revoked.", None))
}
