//! `wagate apps`: the operator's apps (`/admin/v1/apps`).

use clap::Subcommand;
use serde_json::{json, Value};

use crate::api::{segment, Api};
use crate::error::CliError;
use crate::keys;
use crate::output::{cell, table, Output};

#[derive(Subcommand)]
pub enum AppsCommand {
    /// Create an app and its first API key (shown only once)
    Create {
        #[arg(long)]
        name: String,
        /// Messages a month [server default: 5000]
        #[arg(long)]
        monthly_messages: Option<u64>,
        /// Requests a minute per key on /api/v1 [server default: 120]
        #[arg(long)]
        api_rpm: Option<u64>,
        /// Requests a minute per key on /api/auth [server default: 60]
        #[arg(long)]
        auth_rpm: Option<u64>,
        /// WhatsApp numbers the app may link [server default: 10]
        #[arg(long)]
        max_devices: Option<u64>,
    },
    /// List apps, 50 a page, oldest first
    List {
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        page: u64,
    },
    /// Show an app: plan, quota, suspension, keys
    Show { app_id: String },
    /// Suspend an app: its keys answer 402 until it is resumed
    Suspend { app_id: String },
    /// Resume a suspended app
    Resume { app_id: String },
}

pub fn run(command: AppsCommand, api: &Api, out: &Output) -> Result<(), CliError> {
    match command {
        AppsCommand::Create { name, monthly_messages, api_rpm, auth_rpm, max_devices } => {
            // The API reads null as "not given": its defaults apply.
            let body = json!({"name": name, "monthly_messages": monthly_messages, "api_rpm": api_rpm,
                              "auth_rpm": auth_rpm, "max_devices": max_devices});
            let created = api.post("/admin/v1/apps", &body)?;
            out.answer(&created, |c| {
                format!(
                    "Created app {} (key {}).\nAPI key, shown only this once, store it now:\n  {}\n",
                    cell(&c["app_id"]),
                    cell(&c["key_id"]),
                    cell(&c["api_key"])
                )
            });
        }
        AppsCommand::List { page } => {
            let listed = api.get(&format!("/admin/v1/apps?page={page}"))?;
            out.answer(&listed, render_list);
        }
        AppsCommand::Show { app_id } => out.answer(&api.get(&path(&app_id))?, render_app),
        AppsCommand::Suspend { app_id } => {
            let app = api.patch(&path(&app_id), &json!({"suspended": true}))?;
            out.answer(&app, |a| {
                format!("Suspended app {}: its keys answer 402 until it is resumed.\n", cell(&a["app_id"]))
            });
        }
        AppsCommand::Resume { app_id } => {
            let app = api.patch(&path(&app_id), &json!({"suspended": false}))?;
            out.answer(&app, |a| format!("Resumed app {}.\n", cell(&a["app_id"])));
        }
    }
    Ok(())
}

fn path(app_id: &str) -> String {
    format!("/admin/v1/apps/{}", segment(app_id))
}

fn state(app: &Value) -> &'static str {
    if app["suspended"] == true {
        "suspended"
    } else {
        "active"
    }
}

fn render_list(listed: &Value) -> String {
    let apps = listed["apps"].as_array().map(Vec::as_slice).unwrap_or_default();
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|app| {
            vec![
                cell(&app["app_id"]),
                cell(&app["name"]),
                state(app).to_owned(),
                format!("{}/{}", cell(&app["quota"]["used"]), cell(&app["quota"]["monthly_messages"])),
                app["keys"].as_array().map_or(0, Vec::len).to_string(),
                cell(&app["created_at"]),
            ]
        })
        .collect();
    let footer =
        format!("page {} of {} ({} apps)\n", cell(&listed["page"]), cell(&listed["last_page"]), cell(&listed["total"]));
    table(&["APP_ID", "NAME", "STATE", "QUOTA_USED", "KEYS", "CREATED"], &rows) + &footer
}

fn render_app(app: &Value) -> String {
    let plan = &app["plan"];
    let quota = &app["quota"];
    let keys = app["keys"].as_array().map(Vec::as_slice).unwrap_or_default();
    format!(
        "app        {}\nname       {}\nstate      {}\nplan       {} messages/month, {} API req/min, {} auth req/min, {} devices\n\
         quota      {}: {} used, {} remaining\ncountry    {}\ncreated    {}\nkeys:\n{}",
        cell(&app["app_id"]),
        cell(&app["name"]),
        state(app),
        cell(&plan["monthly_messages"]),
        cell(&plan["api_rpm"]),
        cell(&plan["auth_rpm"]),
        cell(&plan["max_devices"]),
        cell(&quota["period"]),
        cell(&quota["used"]),
        cell(&quota["remaining"]),
        cell(&app["default_country_code"]),
        cell(&app["created_at"]),
        keys::render(keys),
    )
}
