//! Pure logic: no `worker` types, unit-tested natively with `cargo test`.

pub mod allowlist;
pub mod autoreply;
pub mod body;
pub mod campaign;
pub mod device;
pub mod egress;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod ids;
pub mod keys;
pub mod links;
pub mod media;
pub mod message;
pub mod otp;
pub mod paging;
pub mod phone;
pub mod qr;
pub mod ratelimit;
pub mod retention;
pub mod schema;
pub mod scope;
pub mod secretbox;
pub mod template;
pub mod validate;
pub mod webhook;
