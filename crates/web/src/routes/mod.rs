//! Route modules, one per feature. Each exposes `router()`; `crate::router` merges them.

pub mod audit;
pub mod auth;
pub mod compact;
pub mod devices;
pub mod docs;
pub mod email_confirmation;
pub mod health;
pub mod maintenance;
pub mod messages;
pub mod metrics;
pub mod mfa;
pub mod rbac;
pub mod recovery_emails;
pub mod security_questions;
pub mod session;
pub mod sign_in_alerts;
pub mod users;
pub mod webhooks;
pub mod well_known;
