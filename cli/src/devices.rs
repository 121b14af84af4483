//! `wagate devices`: an app's WhatsApp numbers (`/api/v1/devices`), and linking one from the terminal.

use std::thread;
use std::time::{Duration, Instant};

use clap::Subcommand;
use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;
use serde_json::json;

use crate::api::{segment, Api};
use crate::error::CliError;
use crate::output::{cell, table, Output};

/// Often enough to show a rotated QR before the phone's camera sees the stale one.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Subcommand)]
pub enum DevicesCommand {
    /// List the app's devices
    List,
    /// Create a device and wait until a phone links it: shows the QR (or the pairing code)
    Link {
        /// A name for the device in listings
        #[arg(long)]
        label: Option<String>,
        /// Pair by code entered on this phone (international number, digits) instead of a QR
        #[arg(long, value_name = "DIGITS")]
        pair_phone: Option<String>,
        /// Seconds to wait for the phone before giving up (exit code 4)
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
    },
}

pub fn run(command: DevicesCommand, api: &Api, out: &Output) -> Result<(), CliError> {
    match command {
        DevicesCommand::List => {
            let listed = api.get("/api/v1/devices")?;
            out.answer(&listed, |l| {
                let devices = l["devices"].as_array().map(Vec::as_slice).unwrap_or_default();
                let rows: Vec<Vec<String>> = devices
                    .iter()
                    .map(|d| {
                        ["id", "label", "status", "phone_number", "last_seen_at", "created_at"]
                            .iter()
                            .map(|field| cell(&d[*field]))
                            .collect()
                    })
                    .collect();
                table(&["DEVICE_ID", "LABEL", "STATUS", "PHONE", "LAST_SEEN", "CREATED"], &rows)
            });
            Ok(())
        }
        DevicesCommand::Link { label, pair_phone, timeout } => {
            link(api, out, label, pair_phone, Duration::from_secs(timeout))
        }
    }
}

fn link(
    api: &Api,
    out: &Output,
    label: Option<String>,
    pair_phone: Option<String>,
    timeout: Duration,
) -> Result<(), CliError> {
    let deadline = Instant::now() + timeout;
    let by_code = pair_phone.is_some();
    let created = api.post("/api/v1/devices", &json!({"label": label, "pair_phone": pair_phone}))?;
    let device_id = created["device_id"]
        .as_str()
        .ok_or_else(|| CliError::UnexpectedAnswer("the new device has no device_id".into()))?
        .to_owned();
    out.answer(&created, |_| {
        format!("Created device {device_id}; waiting up to {}s for a phone to link it.\n", timeout.as_secs())
    });
    let path = format!("/api/v1/devices/{}", segment(&device_id));
    // WhatsApp rotates the QR (and may reissue the code) while it waits: show each new one once.
    let mut shown: Option<String> = None;
    loop {
        let device = api.get(&path)?;
        if device["status"] == "online" {
            out.answer(&device, |d| format!("Linked: device {device_id} is online as {}.\n", cell(&d["phone_number"])));
            return Ok(());
        }
        let challenge = if by_code { &device["pair_code"] } else { &device["qr_code"] };
        if let Some(challenge) = challenge.as_str().filter(|c| shown.as_deref() != Some(*c)) {
            out.progress(&if by_code {
                format!("On the phone: WhatsApp > Linked devices > Link with phone number, enter {challenge}")
            } else {
                format!("Scan with WhatsApp > Linked devices > Link a device:\n{}", terminal_qr(challenge))
            });
            shown = Some(challenge.to_owned());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CliError::TimedOut(format!(
                "device {device_id} was not linked within {}s (status: {}); it stays on the app, waiting",
                timeout.as_secs(),
                cell(&device["status"])
            )));
        }
        thread::sleep(POLL_INTERVAL.min(left));
    }
}

fn terminal_qr(data: &str) -> String {
    match QrCode::new(data.as_bytes()) {
        // Drawn light-on-dark: most terminals have a dark background, and the blocks are the
        // foreground colour, so the light modules are the ones drawn.
        Ok(code) => code.render::<Dense1x2>().dark_color(Dense1x2::Light).light_color(Dense1x2::Dark).build(),
        // Too long for a QR: the raw value still lets the operator render it elsewhere.
        Err(_) => data.to_owned(),
    }
}
