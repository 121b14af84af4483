//! wagate: the API tier. Pure modules (`domain`, `dialect`, `protocol`, `store`, `url_parts`) build and
//! test natively; everything that touches the Workers runtime is compiled for wasm32 only.

pub mod dialect;
pub mod domain;
pub mod protocol;
pub mod store;
pub mod url_parts;

#[cfg(target_arch = "wasm32")]
mod bridge;
#[cfg(target_arch = "wasm32")]
mod edge;
#[cfg(target_arch = "wasm32")]
mod objects;
#[cfg(target_arch = "wasm32")]
mod runtime;

#[cfg(target_arch = "wasm32")]
pub use objects::{app::AppObject, device::DeviceObject, otp::OtpObject};
