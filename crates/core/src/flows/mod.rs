//! The flows, one file each, all as methods of [`crate::Auth`].

pub mod admin;
pub mod audit;
pub mod browser;
pub mod devices;
pub mod email_change;
pub mod email_confirmation;
pub mod introspection;
pub mod login;
pub mod maintenance;
pub mod messages;
pub mod mfa;
pub mod rbac;
pub mod recovery;
pub mod recovery_emails;
pub mod registration;
pub mod security_questions;
pub mod settings;
pub mod sign_in_alerts;
pub mod webhooks;
