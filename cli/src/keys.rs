//! `wagate keys`: an app's API keys (`/admin/v1/apps/{id}/keys`).

use clap::Subcommand;
use serde_json::{json, Value};

use crate::api::{segment, Api};
use crate::error::CliError;
use crate::output::{cell, table, Output};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create another key for an app, e.g. to rotate keys without downtime (shown only once)
    Create {
        app_id: String,
        /// Scope the key to one WhatsApp account of the app
        #[arg(long, value_name = "DEV_ID")]
        device: Option<String>,
        /// When the key stops working (RFC 3339, e.g. 2030-01-31T00:00:00Z)
        #[arg(long, value_name = "RFC3339")]
        expires_at: Option<String>,
    },
    /// List an app's keys (prefixes and states, never secrets)
    List { app_id: String },
    /// Revoke a key: it stops working at once
    Revoke { app_id: String, key_id: String },
}

pub fn run(command: KeysCommand, api: &Api, out: &Output) -> Result<(), CliError> {
    match command {
        KeysCommand::Create { app_id, device, expires_at } => {
            let created = api.post(&path(&app_id), &json!({"device_id": device, "expires_at": expires_at}))?;
            out.answer(&created, |k| {
                let mut limits = String::new();
                if !k["device_id"].is_null() {
                    limits += &format!(", scoped to device {}", cell(&k["device_id"]));
                }
                if !k["expires_at"].is_null() {
                    limits += &format!(", expires {}", cell(&k["expires_at"]));
                }
                format!(
                    "Created key {}{limits}.\nAPI key, shown only this once, store it now:\n  {}\n",
                    cell(&k["key_id"]),
                    cell(&k["api_key"])
                )
            });
        }
        KeysCommand::List { app_id } => {
            let listed = api.get(&path(&app_id))?;
            out.answer(&listed, |l| render(l["keys"].as_array().map(Vec::as_slice).unwrap_or_default()));
        }
        KeysCommand::Revoke { app_id, key_id } => {
            api.delete(&format!("{}/{}", path(&app_id), segment(&key_id)))?;
            // 204 has no body; scripts still get a JSON document saying what happened.
            out.answer(&json!({"key_id": key_id, "revoked": true}), |r| {
                format!("Revoked key {}: it no longer works.\n", cell(&r["key_id"]))
            });
        }
    }
    Ok(())
}

fn path(app_id: &str) -> String {
    format!("/admin/v1/apps/{}/keys", segment(app_id))
}

/// Keys as `apps show` and `keys list` print them.
pub fn render(keys: &[Value]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            ["key_id", "prefix", "state", "device_id", "created_at", "last_used_at", "expires_at"]
                .iter()
                .map(|field| cell(&k[*field]))
                .collect()
        })
        .collect();
    table(&["KEY_ID", "PREFIX", "STATE", "DEVICE", "CREATED", "LAST_USED", "EXPIRES"], &rows)
}
