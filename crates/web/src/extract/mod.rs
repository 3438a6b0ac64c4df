//! Extractors that reject with the JSON error envelope instead of axum's plain-text defaults.

pub(crate) mod auth;
mod client;
mod json;

pub use auth::{Bearer, BearerChanging, CompactBearer, Needs, RequirePermission, perm};
pub use client::ClientInfo;
pub use json::{AppJson, AppPath, AppQuery};
