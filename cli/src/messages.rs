//! `wagate send`: a text message through the LoginWA send path (`/api/v1/messages/send`).

use clap::Args;
use serde_json::json;

use crate::api::Api;
use crate::error::CliError;
use crate::output::{cell, Output};

#[derive(Args)]
pub struct SendArgs {
    /// The recipient's number (international digits, or a JID)
    #[arg(long, value_name = "PHONE")]
    to: String,
    #[arg(long)]
    text: String,
    /// Send from this WhatsApp account [default: the least recently used online one]
    #[arg(long, value_name = "DEV_ID")]
    device: Option<String>,
}

pub fn send(args: SendArgs, api: &Api, out: &Output) -> Result<(), CliError> {
    let body = json!({"phone": args.to, "message": args.text, "device_id": args.device});
    let sent = api.post("/api/v1/messages/send", &body)?;
    // A 200 means accepted and queued; WhatsApp's verdict comes later as the message's status.
    out.answer(&sent, |s| {
        format!(
            "{}  queued  to {} from device {} ({} messages left this month)\n",
            cell(&s["message_id"]),
            cell(&s["phone"]),
            cell(&s["device_id"]),
            cell(&s["quota_remaining"])
        )
    });
    Ok(())
}
