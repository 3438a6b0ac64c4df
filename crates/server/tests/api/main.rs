//! End-to-end tests: the real server on a random port, a real SMTP sink, both backends.
//!
//! One test binary (cargo's `tests/testsuite` pattern). Every test builds its own application
//! on its own database; the PostgreSQL variants need `TEST_POSTGRES_URL` (scripts/test.sh sets it).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod helpers;

mod accounts;
mod audit;
mod backup;
mod browser;
mod cli;
mod compact;
mod connections;
mod credentials;
mod devices;
mod email_confirmation;
mod hardening;
mod hostile_input;
mod http;
mod jwt;
mod maintenance;
mod messages;
mod metrics;
mod mfa;
mod multi_instance;
mod password_policy;
mod rbac;
mod recovery;
mod recovery_emails;
mod resilience;
mod secure_storage;
mod security_questions;
mod sign_in_alerts;
mod tokens;
mod ui;
mod ui_admin;
mod ui_mfa;
mod ui_questions;
mod users_admin;
mod webhooks;
