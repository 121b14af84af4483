//! `wagate webhooks`: an app's webhook deliveries and their replay (`/api/v1/webhooks/{id}/…`).

use clap::{ArgGroup, Subcommand, ValueEnum};
use serde_json::json;

use crate::api::{segment, Api};
use crate::error::CliError;
use crate::output::{cell, table, Output};

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// List a webhook endpoint's latest 100 deliveries, newest first
    Deliveries {
        webhook_id: String,
        #[arg(long, value_enum)]
        status: Option<DeliveryStatus>,
    },
    /// Send deliveries again: one by id, or every failed one since a time
    #[command(group(ArgGroup::new("which").required(true).args(["delivery", "since"])))]
    Replay {
        webhook_id: String,
        #[arg(long, value_name = "DELIVERY_ID")]
        delivery: Option<String>,
        /// Replay every failed delivery created at or after this time (RFC 3339)
        #[arg(long, value_name = "RFC3339")]
        since: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }
}

pub fn run(command: WebhooksCommand, api: &Api, out: &Output) -> Result<(), CliError> {
    match command {
        WebhooksCommand::Deliveries { webhook_id, status } => {
            let query = status.map(|s| format!("?status={}", s.as_str())).unwrap_or_default();
            let listed = api.get(&format!("{}/deliveries{query}", path(&webhook_id)))?;
            out.answer(&listed, |l| {
                let deliveries = l["deliveries"].as_array().map(Vec::as_slice).unwrap_or_default();
                let rows: Vec<Vec<String>> = deliveries
                    .iter()
                    .map(|d| {
                        [
                            "id",
                            "event",
                            "status",
                            "attempts",
                            "last_status_code",
                            "created_at",
                            "next_attempt_at",
                            "last_error",
                        ]
                        .iter()
                        .map(|field| cell(&d[*field]))
                        .collect()
                    })
                    .collect();
                let headers = [
                    "DELIVERY_ID",
                    "EVENT",
                    "STATUS",
                    "ATTEMPTS",
                    "LAST_CODE",
                    "CREATED",
                    "NEXT_ATTEMPT",
                    "LAST_ERROR",
                ];
                table(&headers, &rows)
            });
        }
        WebhooksCommand::Replay { webhook_id, delivery, since } => {
            let replayed = match (delivery, since) {
                (Some(delivery), _) => {
                    api.post(&format!("{}/deliveries/{}/replay", path(&webhook_id), segment(&delivery)), &json!({}))?
                }
                (None, since) => api.post(&format!("{}/replay", path(&webhook_id)), &json!({"since": since}))?,
            };
            out.answer(&replayed, |r| {
                format!("Replaying {} deliveries: they go out again now.\n", cell(&r["replayed"]))
            });
        }
    }
    Ok(())
}

fn path(webhook_id: &str) -> String {
    format!("/api/v1/webhooks/{}", segment(webhook_id))
}
