//! The `porteiro` binary's library half: configuration, composition root, mail transports, the
//! webhook delivery worker and command-line commands. `main.rs` only parses arguments and
//! dispatches here, so the end-to-end tests build the very same [`app::Application`].

pub mod app;
pub mod cli;
pub mod config;
pub mod mail;
pub mod serve;
pub mod telemetry;
pub mod webhooks;
