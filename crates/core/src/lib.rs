//! Porteiro's domain: accounts, credentials, sessions, tokens and the flows that tie them together.
//!
//! This crate knows no HTTP and no SQL. It talks to storage through the [`store::Store`] trait and
//! to time through [`clock::Clock`], so every flow can be tested with a fixed clock and any backend.
//! The web layer calls one [`service::Auth`] method per request and maps [`error::Error`] to HTTP.

pub mod clock;
pub mod config;
pub mod credentials;
pub mod crypto;
pub mod domain;
pub mod envelope;
pub mod error;
pub mod flows;
pub mod geo;
pub mod grants;
pub mod keys;
pub mod mail;
pub mod metrics;
pub mod net;
pub mod service;
pub mod sessions;
pub mod store;

pub use error::{Error, Result};
pub use service::Auth;
