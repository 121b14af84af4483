//! One Durable Object per app and phone (named by `domain::otp::phone_key`): that phone's
//! verification sessions and the record of codes sent to it, for per-phone throttling.
//! Expiry is an alarm; what happened is recorded as `otp.verified` / `otp.expired` events.

use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::{call, end_alarm, migrate, serve};
use crate::domain::error::ApiError;
use crate::domain::events::{Event, OtpEnded, What};
use crate::domain::otp::{SessionState, Wake};
use crate::domain::time::seconds_z;
use crate::protocol::app::Record;
use crate::protocol::otp::{
    CancelSession, Otp, OtpHandler, SessionAccepted, StartSession, Started, Verified, VerifyCode,
};
use crate::runtime::{now_ms, required_config};
use crate::store::otp::{self as sessions, MIGRATIONS};

const RETRY_MS: u64 = 5_000;

#[durable_object]
pub struct OtpObject {
    state: State,
    env: Env,
}

impl DurableObject for OtpObject {
    fn new(state: State, env: Env) -> Self {
        migrate(&state, "otp", &MIGRATIONS);
        Self { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        serve::<Otp, _>(req, |op| op.dispatch(self)).await
    }

    async fn alarm(&self) -> worker::Result<Response> {
        end_alarm(&self.state, "otp alarm", self.tick().await, Some(RETRY_MS)).await
    }
}

impl OtpHandler for OtpObject {
    async fn start(&self, op: StartSession) -> Result<Started, ApiError> {
        let expires_at = op.expires_at;
        let started = sessions::start(&self.sql(), op)?;
        if started == Started::Started {
            self.alarm_at(expires_at).await?;
        }
        Ok(started)
    }

    async fn accepted(&self, SessionAccepted { session_id }: SessionAccepted) -> Result<(), ApiError> {
        sessions::accepted(&self.sql(), &session_id)
    }

    async fn cancel(&self, CancelSession { session_id }: CancelSession) -> Result<(), ApiError> {
        sessions::cancel(&self.sql(), &session_id)
    }

    async fn verify(&self, op: VerifyCode) -> Result<Verified, ApiError> {
        let secret = required_config(&self.env, "OTP_SECRET")?;
        let (verified, newly) = sessions::verify(&self.sql(), op, secret.as_bytes())?;
        if newly {
            self.record_events().await;
        }
        Ok(verified)
    }
}

impl OtpObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    /// Keeps the earliest pending alarm.
    async fn alarm_at(&self, at: u64) -> Result<(), ApiError> {
        let storage = self.state.storage();
        match storage.get_alarm().await? {
            Some(existing) if existing as u64 <= at => Ok(()),
            _ => Ok(storage.set_alarm(at.saturating_sub(now_ms()) as i64).await?),
        }
    }

    async fn tick(&self) -> Result<(), ApiError> {
        sessions::expire(&self.sql(), now_ms())?;
        self.record_events().await;
        match sessions::wake(&self.sql())? {
            Some(Wake::Soon) => self.state.storage().set_alarm(RETRY_MS as i64).await?,
            Some(Wake::At(at)) => self.alarm_at(at).await?,
            None => {}
        }
        Ok(())
    }

    /// Records `otp.verified` / `otp.expired` for sessions that ended and have not been
    /// recorded yet; what fails stays unrecorded and the alarm tries again.
    async fn record_events(&self) {
        let ended = match sessions::ended(&self.sql(), now_ms()) {
            Ok(ended) => ended,
            Err(e) => return worker::console_error!("otp events: {e}"),
        };
        for session in ended {
            let ended = |verified_at| OtpEnded {
                session_id: session.session_id.clone(),
                phone_number: session.phone.clone(),
                verified_at,
            };
            let what = match session.state {
                SessionState::Verified => What::OtpVerified(ended(Some(seconds_z(session.at)))),
                _ => What::OtpExpired(ended(None)),
            };
            // One id per session and outcome, so a retried recording is not a second event.
            let id = format!("evt_otp_{}_{}", session.session_id.replace('-', ""), session.state.as_str());
            let op = Record { event: Event { id, ..Event::new(None, session.at, what) } };
            match call(&self.env, &session.app_id, op).await {
                Ok(_) => {
                    if let Err(e) = sessions::recorded(&self.sql(), &session.session_id) {
                        worker::console_error!("otp event recorded, not marked: {e}");
                    }
                }
                Err(e) => {
                    worker::console_warn!("otp event deferred: {e}");
                    let _ = self.state.storage().set_alarm(RETRY_MS as i64).await;
                    return;
                }
            }
        }
    }
}
