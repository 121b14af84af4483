//! What only the app's object can do for its webhooks (`store::webhooks` holds their storage):
//! seal secrets with the deployment's key, and send the outbox's deliveries from its alarm,
//! retrying with the Standard Webhooks schedule.

use std::rc::Rc;

use worker::{Env, SqlStorage, State};

use super::app::AppObject;
use super::call;
use crate::domain::delivery;
use crate::domain::egress::Egress;
use crate::domain::error::ApiError;
use crate::domain::ids::random_hex;
use crate::domain::secretbox;
use crate::domain::webhook::{self, Format};
use crate::protocol::sender::{Attempt, PostDelivery};
use crate::runtime::{config, egress, iso, next_month_start_ms, now_ms, required_config};
use crate::store::webhooks::{self as store, DeliveryRow, EndpointRow, Outbox, Retry};

/// A claimed delivery is retried by a later alarm if its attempt has not settled by then.
const LEASE_MS: u64 = super::sender::TIMEOUT_MS + 5_000;
/// An endpoint that has failed continuously for this long (5 days) is disabled.
const DISABLE_AFTER_S: u64 = 5 * 24 * 60 * 60;

impl Outbox for AppObject {
    fn seal(&self, secret: &str) -> Result<String, ApiError> {
        Ok(secretbox::seal(&self.key_material()?, secret))
    }

    async fn wake(&self) -> Result<(), ApiError> {
        let storage = self.state().storage();
        if storage.get_alarm().await?.is_none_or(|at| at as u64 > now_ms()) {
            storage.set_alarm(0i64).await?;
        }
        Ok(())
    }
}

impl AppObject {
    fn key_material(&self) -> Result<String, ApiError> {
        required_config(self.env(), "WEBHOOK_KEY")
    }

    /// Tests compress the retry schedule (`WEBHOOK_RETRY_SCALE`, default 1) instead of waiting
    /// hours; `WEBHOOK_DISABLE_AFTER_S` overrides how long an endpoint may fail before it is
    /// disabled.
    fn retry(&self) -> Retry {
        let scale = config(self.env(), "WEBHOOK_RETRY_SCALE").and_then(|v| v.parse().ok()).filter(|s: &f64| *s > 0.0);
        let disable_after_s = config(self.env(), "WEBHOOK_DISABLE_AFTER_S")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(DISABLE_AFTER_S);
        Retry { scale: scale.unwrap_or(1.0), disable_after_ms: disable_after_s * 1000 }
    }

    /// Claims the due deliveries and sends each from a detached task, so that the alarm never
    /// waits on a receiver: a slow endpoint holds up only its own deliveries. A task lost with
    /// its isolate leaves a lease that expires, and a later alarm claims the delivery again (at
    /// least once, same id).
    pub(super) async fn deliver_due(&self) -> Result<(), ApiError> {
        let courier = Courier {
            state: self.state().clone(),
            env: self.env().clone(),
            key: self.key_material()?.into(),
            retry: self.retry(),
            egress: egress(self.env(), "WEBHOOK_HOSTS"),
        };
        for (endpoint, delivery) in store::claim_due(self, now_ms(), LEASE_MS)? {
            let courier = courier.clone();
            self.state().wait_until(async move { courier.deliver(&endpoint, &delivery).await });
        }
        courier.schedule().await
    }
}

/// What a detached delivery needs once the alarm that started it has returned.
#[derive(Clone)]
struct Courier {
    state: Rc<State>,
    env: Env,
    key: Rc<str>,
    retry: Retry,
    egress: Egress,
}

impl Courier {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    async fn deliver(&self, endpoint: &EndpointRow, delivery: &DeliveryRow) {
        // Checked again at delivery: a URL accepted in development is refused in production.
        let outcome = match self.egress.refusal(&endpoint.url) {
            None => attempt(&self.env, &self.key, endpoint, delivery).await,
            Some(why) => Attempt { ok: false, status: None, error: Some(format!("URL refused: {why}")) },
        };
        let jitter = (u8::from_str_radix(&random_hex(1), 16).unwrap_or(128) as f64 / 127.5) - 1.0;
        if let Err(e) = store::settle(&self.sql(), delivery, outcome, now_ms(), jitter, self.retry, iso) {
            worker::console_error!("settling webhook delivery {}: {e}", delivery.id);
        }
        if let Err(e) = self.schedule().await {
            worker::console_error!("scheduling webhook deliveries: {e}");
        }
    }

    /// Sets the alarm for the next delivery due, or else for the start of next month, when the
    /// app's quota starts over.
    async fn schedule(&self) -> Result<(), ApiError> {
        let now = now_ms();
        let at = store::next_due(&self.sql(), now)?.unwrap_or(u64::MAX).min(next_month_start_ms(now));
        self.state.storage().set_alarm(at.saturating_sub(now) as i64).await?;
        Ok(())
    }
}

/// Signs one attempt of a delivery (fresh timestamp, same bytes) and has the endpoint's sender
/// object post it. The post runs in that object, not here: a receiver whose address cannot even be
/// resolved or connected to can upset the object that fetches, and that must never be the app's.
async fn attempt(env: &Env, key: &str, endpoint: &EndpointRow, delivery: &DeliveryRow) -> Attempt {
    let failed = |error: String| Attempt { ok: false, status: None, error: Some(error) };
    let Some(secret) = secretbox::open(key, &endpoint.secret) else {
        return failed("the signing secret cannot be decrypted (WEBHOOK_KEY changed?)".into());
    };
    let now = now_ms();
    let previous = endpoint
        .previous_secret
        .as_deref()
        .filter(|_| delivery::previous_signs(endpoint.previous_until, now))
        .and_then(|sealed| secretbox::open(key, sealed));
    let mut secrets = vec![secret.as_str()];
    secrets.extend(previous.as_deref());
    let format = Format::parse(&endpoint.format).unwrap_or_default();
    let headers = webhook::headers(format, &secrets, &delivery.id, &delivery.event_name, delivery.body.as_bytes(), now)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    let post = PostDelivery { url: endpoint.url.clone(), headers, body: delivery.body.clone() };
    call(env, &endpoint.id, post).await.unwrap_or_else(|e| failed(format!("not sent: {e}")))
}
