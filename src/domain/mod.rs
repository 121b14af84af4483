//! Pure logic: no `worker` types, unit-tested natively with `cargo test`.

pub mod error;
pub mod ids;
pub mod keys;
pub mod message;
pub mod phone;
pub mod validate;
