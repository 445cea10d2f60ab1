//! `keygate`: the command-line client of the key service's admin API (keys, OAuth clients,
//! roles, tenant admins, the audit log, `whoami`).
//!
//! # Layout
//!
//! - [`args`]: the command line (clap), checked before any request is sent.
//! - [`secret`]: the bearer secret, from `--secret-file` or `KEYGATE_ADMIN_SECRET`, never a flag.
//! - [`api`]: the typed HTTP client, one method per endpoint, and its errors.
//! - [`commands`]: each command as calls on [`api::ApiClient`] and printing.
//! - [`render`]: table output.
//! - [`duration`]: `90d`, `2h` and RFC 3339 on the command line.
//! - [`exit`]: what failed and the exit code for it.

pub mod api;
pub mod args;
pub mod commands;
pub mod duration;
pub mod exit;
pub mod render;
pub mod secret;

use std::io::Write;
use std::time::Duration;

pub use api::ServiceUrl;

use crate::api::{ApiClient, ApiError};
use crate::args::Cli;
use crate::commands::Console;
use crate::exit::Failure;
use crate::secret::{Secret, SECRET_ENV};

/// Runs the parsed command line, printing answers on `out` and errors on `err`; gives the exit
/// code.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match execute(cli, out, err) {
        Ok(()) => 0,
        // The reader went away (`keygate audit list | head`): nothing left to say to it.
        Err(Failure::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(failure) => {
            // Nothing more can be done if stderr is gone; the exit code still tells.
            let _ = report(&failure, err);
            failure.exit_code()
        }
    }
}

fn execute(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Failure> {
    let secret = Secret::load(cli.secret_file.as_deref(), std::env::var_os(SECRET_ENV))?;
    let api = ApiClient::new(cli.url, secret, Duration::from_secs(cli.timeout))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::Runtime)?;
    let mut console = Console {
        output: cli.output,
        out,
        err,
    };
    runtime.block_on(commands::run(cli.command, &api, &mut console))?;
    console.out.flush()?;
    Ok(())
}

/// `keygate: <message>: <cause>: …`, and what the service attached to its error (the holders of
/// a role in use).
fn report(failure: &Failure, err: &mut dyn Write) -> std::io::Result<()> {
    let mut line = format!("keygate: {failure}");
    let mut source = std::error::Error::source(failure);
    while let Some(cause) = source {
        // reqwest's own message repeats the URL already named; its causes say what failed.
        if !cause.is::<reqwest::Error>() {
            line.push_str(&format!(": {cause}"));
        }
        source = cause.source();
    }
    if let Failure::Api(ApiError::Status { status, code, .. }) = failure {
        match code {
            Some(code) => line.push_str(&format!(" ({status}, {code})")),
            None => line.push_str(&format!(" ({status})")),
        }
    }
    writeln!(err, "{line}")?;
    if let Failure::Api(ApiError::Status { body, .. }) = failure {
        if let Some(holders) = body["holders"].as_array() {
            writeln!(err, "held by:")?;
            for holder in holders {
                let field = |name: &str| holder[name].as_str().unwrap_or("?").to_owned();
                let text: String =
                    format!("  {} {} ({})", field("type"), field("id"), field("name"))
                        .chars()
                        .map(|c| if c.is_control() { '?' } else { c })
                        .collect();
                writeln!(err, "{text}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use serde_json::json;

    use super::*;

    fn reported(failure: &Failure) -> String {
        let mut err = Vec::new();
        report(failure, &mut err).unwrap();
        String::from_utf8(err).unwrap()
    }

    #[test]
    fn a_refusal_is_reported_with_the_services_message_status_and_code() {
        let failure = Failure::Api(ApiError::Status {
            status: StatusCode::CONFLICT,
            code: Some("revoked".into()),
            message: "key is revoked".into(),
            body: json!({"error": "revoked", "message": "key is revoked"}),
        });
        assert_eq!(
            reported(&failure),
            "keygate: key is revoked (409 Conflict, revoked)\n"
        );
        assert_eq!(failure.exit_code(), exit::EXIT_REFUSED);
    }

    #[test]
    fn a_role_in_use_is_reported_with_its_holders() {
        let failure = Failure::Api(ApiError::Status {
            status: StatusCode::CONFLICT,
            code: Some("role_in_use".into()),
            message: "role is held".into(),
            body: json!({"error": "role_in_use", "message": "role is held", "holders": [
                {"type": "key", "id": "key_1", "name": "ci"},
                {"type": "tenant_admin", "id": "kta_2", "name": "ops\u{1b}[31m"},
            ]}),
        });
        assert_eq!(
            reported(&failure),
            "keygate: role is held (409 Conflict, role_in_use)\nheld by:\n  key key_1 (ci)\n  \
             tenant_admin kta_2 (ops?[31m)\n"
        );
    }
}
