//! The command line: global options and the command tree.

use clap::{Args, Parser, Subcommand};

use crate::apps::AppsCommand;
use crate::devices::DevicesCommand;
use crate::keys::KeysCommand;
use crate::messages::SendArgs;
use crate::webhooks::WebhooksCommand;

/// What each exit code means; `CliError::exit_code` is where they are decided.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the API answered an error (its error and message are printed on stderr)
  2  usage error (bad arguments, or a tenant command without an API key)
  3  the server could not be reached
  4  timed out waiting (devices link)";

#[derive(Parser)]
#[command(name = "wagate", version, about = "Operate a wagate gateway: apps and keys (operator), devices, \
    webhooks and messages (an app's API key)", after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags override the environment. The credentials' environment values are never shown in help.
#[derive(Args)]
pub struct Global {
    /// The wagate API's base URL
    #[arg(long, env = "WAGATE_URL", default_value = "http://127.0.0.1:8787", global = true, value_parser = http_url)]
    pub url: String,
    /// The operator token, for `apps` and `keys`
    #[arg(long, env = "ADMIN_TOKEN", default_value = "dev-admin-token", hide_env_values = true, global = true)]
    pub admin_token: String,
    /// An app's API key, for `devices`, `webhooks` and `send`
    #[arg(long, env = "WAGATE_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Print the API's JSON answers, one document a line, instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Apps: create, list, show, suspend, resume (operator)
    #[command(subcommand)]
    Apps(AppsCommand),
    /// An app's API keys: create, list, revoke (operator)
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The app's WhatsApp numbers: list, link (API key)
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Webhook deliveries: list, replay (API key)
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Send a WhatsApp text message (API key)
    Send(SendArgs),
}

/// Caught at parse time so a typo is a usage error (2), not an unreachable server (3).
fn http_url(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(url.to_owned()),
        _ => Err("must be an http:// or https:// URL with a host".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn only_http_urls_with_a_host_are_accepted() {
        assert!(http_url("https://wagate.example.com").is_ok());
        assert!(http_url("127.0.0.1:8787").is_err());
        assert!(http_url("http://").is_err());
    }
}
