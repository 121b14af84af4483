//! The HTTP contract between the wagate worker (API tier) and the device bridge.
//!
//! Both sides depend on this crate so that the wire types and the signing
//! scheme cannot drift apart. It is pure: no I/O, no clock, no runtime.

pub mod signing;
pub mod wire;
