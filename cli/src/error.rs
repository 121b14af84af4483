//! Every way a command can fail, and the exit code each one means to a script.

use std::fmt;
use std::process::ExitCode;

use serde_json::Value;

#[derive(Debug)]
pub enum CliError {
    /// The API answered with an error status; its own words are kept for the operator.
    Api { status: u16, error: String, message: String, fields: Vec<String> },
    /// The API answered with success, but not with the JSON the command reads.
    UnexpectedAnswer(String),
    /// A tenant command without `--api-key` / `WAGATE_API_KEY`.
    MissingApiKey,
    /// Nothing usable came back from the server: refused, unresolvable, timed out, cut off.
    Unreachable { url: String, cause: String },
    /// `devices link` gave up waiting for the phone.
    TimedOut(String),
}

impl CliError {
    /// The only place exit codes are decided; `cli::EXIT_CODES` documents them.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Api { .. } | CliError::UnexpectedAnswer(_) => 1,
            CliError::MissingApiKey => 2,
            CliError::Unreachable { .. } => 3,
            CliError::TimedOut(_) => 4,
        })
    }

    /// An error answer in the LoginWA shape (`error`, `message`, per-field `errors`), or whatever
    /// text came instead, so a proxy's or workerd's own error page still says something.
    pub fn from_answer(status: u16, body: &str) -> Self {
        let Ok(answer) = serde_json::from_str::<Value>(body) else {
            let text: String = body.trim().chars().take(300).collect();
            return CliError::Api { status, error: String::new(), message: text, fields: vec![] };
        };
        let field = |name: &str| answer[name].as_str().unwrap_or_default().to_owned();
        let fields = match &answer["errors"] {
            Value::Object(errors) => errors
                .iter()
                .map(|(name, problems)| match problems {
                    Value::Array(problems) => {
                        let problems: Vec<&str> = problems.iter().filter_map(Value::as_str).collect();
                        format!("{name}: {}", problems.join("; "))
                    }
                    other => format!("{name}: {other}"),
                })
                .collect(),
            _ => vec![],
        };
        CliError::Api { status, error: field("error"), message: field("message"), fields }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Api { status, error, message, fields } => {
                write!(f, "the API answered {status}")?;
                for part in [error, message].into_iter().filter(|p| !p.is_empty()) {
                    write!(f, ": {part}")?;
                }
                fields.iter().try_for_each(|field| write!(f, "\n  {field}"))
            }
            CliError::UnexpectedAnswer(what) => write!(f, "unexpected answer from the API: {what}"),
            CliError::MissingApiKey => {
                write!(f, "this command needs an app's API key: pass --api-key or set WAGATE_API_KEY")
            }
            CliError::Unreachable { url, cause } => write!(f, "could not reach {url}: {cause}"),
            CliError::TimedOut(what) => write!(f, "timed out: {what}"),
        }
    }
}
