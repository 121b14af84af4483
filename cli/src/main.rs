//! `wagate`: the operator's command line over wagate's HTTP API.

mod api;
mod apps;
mod cli;
mod devices;
mod error;
mod keys;
mod messages;
mod output;
mod webhooks;

use std::process::ExitCode;

use clap::Parser;

use crate::api::Api;
use crate::cli::{Cli, Command};
use crate::error::CliError;
use crate::output::Output;

fn main() -> ExitCode {
    // Usage errors end here, with clap's message and exit code 2.
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let global = &cli.global;
    let out = Output::new(global.json);
    let operator = || Api::new(&global.url, &global.admin_token);
    let tenant = || global.api_key.as_deref().map(|key| Api::new(&global.url, key)).ok_or(CliError::MissingApiKey);
    match cli.command {
        Command::Apps(command) => apps::run(command, &operator(), &out),
        Command::Keys(command) => keys::run(command, &operator(), &out),
        Command::Devices(command) => devices::run(command, &tenant()?, &out),
        Command::Webhooks(command) => webhooks::run(command, &tenant()?, &out),
        Command::Send(args) => messages::send(args, &tenant()?, &out),
    }
}
