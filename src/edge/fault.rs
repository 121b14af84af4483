//! Development-only fault injection, so the end-to-end suite can break a send between the app's
//! and the device's objects on the real stack. A request asks for one with the `X-Wagate-Fault`
//! header, honoured only when `ENVIRONMENT` is `development` and `FAULT_INJECTION` is `on` (the
//! test runner sets both); anywhere else the header is ignored.

use worker::{Env, Request};

use crate::runtime::{config, is_production};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Waits this long between reserving the quota and queueing the message: a slow request.
    DelayEnqueue { ms: u64 },
    /// The device stores the message but its answer never arrives.
    EnqueueAnswerLost,
    /// As `EnqueueAnswerLost`, and the device cannot be asked again during this request.
    DeviceLostAfterEnqueue,
}

impl Fault {
    pub fn of(req: &Request, env: &Env) -> Self {
        if is_production(env) || config(env, "FAULT_INJECTION").as_deref() != Some("on") {
            return Self::None;
        }
        let header = req.headers().get("x-wagate-fault").ok().flatten().unwrap_or_default();
        match header.split_once('=') {
            Some(("delay-enqueue", ms)) => ms.parse().map_or(Self::None, |ms| Self::DelayEnqueue { ms }),
            _ if header == "enqueue-answer-lost" => Self::EnqueueAnswerLost,
            _ if header == "device-lost-after-enqueue" => Self::DeviceLostAfterEnqueue,
            _ => Self::None,
        }
    }
}
