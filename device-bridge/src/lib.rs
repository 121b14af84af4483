//! wagate's device bridge: holds the WhatsApp sessions for the worker.
//!
//! The worker calls it over signed HTTP ([`http`]); everything that happens on
//! WhatsApp comes back as events through a durable [`outbox`]. Sends are journaled
//! so each goes out exactly once ([`dispatch`]), and the files they carry live in
//! a content-addressed [`media`] store. What sits behind the [`engine::Engine`]
//! port (the simulator or the real WhatsApp client) is invisible to the rest of
//! the crate.

pub mod app;
pub mod clock;
pub mod config;
pub mod db;
pub mod dispatch;
pub mod engine;
pub mod error;
pub mod http;
pub mod ids;
pub mod inbound;
pub mod jid;
pub mod journal;
pub mod media;
pub mod metrics;
pub mod outbox;
pub mod pair_code;
pub mod retention;
pub mod sim_api;
