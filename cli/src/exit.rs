//! What went wrong ([`Failure`]) and the exit code that tells a script which kind it was
//! ([`Failure::exit_code`]; the table is [`EXIT_CODES_HELP`], shown by `--help`).

use std::io;

use reqwest::StatusCode;

use crate::api::ApiError;
use crate::secret::SecretError;

/// The exit code table, as `keygate --help` prints it.
pub const EXIT_CODES_HELP: &str = "\
Secret:
  Read from the file given by --secret-file (first line; must not be readable by group or
  others), else from KEYGATE_ADMIN_SECRET. Never from a flag. Either the admin secret or a
  tenant admin's kgta_ secret.

Exit codes:
  0  success
  1  local failure (cannot write the output)
  2  usage error: bad flags or values, no usable secret
  3  authentication or authorization refused (401, 403)
  4  request refused: bad request, not found, conflict, too large (other 4xx)
  5  key service failed or unreachable (5xx, connection refused, timeout, unreadable answer)";

pub const EXIT_LOCAL: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_AUTH: u8 = 3;
pub const EXIT_REFUSED: u8 = 4;
pub const EXIT_SERVICE: u8 = 5;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("cannot write the output")]
    Output(#[from] io::Error),
    #[error("cannot start the async runtime")]
    Runtime(#[source] io::Error),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Secret(_) => EXIT_USAGE,
            Self::Api(error) => api_exit_code(error),
            Self::Output(_) | Self::Runtime(_) => EXIT_LOCAL,
        }
    }
}

fn api_exit_code(error: &ApiError) -> u8 {
    match error {
        ApiError::Status { status, .. } => status_exit_code(*status),
        ApiError::Unreachable { .. } | ApiError::Timeout { .. } | ApiError::Unreadable { .. } => {
            EXIT_SERVICE
        }
        ApiError::Setup(_) => EXIT_LOCAL,
    }
}

fn status_exit_code(status: StatusCode) -> u8 {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => EXIT_AUTH,
        s if s.is_client_error() => EXIT_REFUSED,
        // 5xx, and anything a key service does not send (a redirect from a proxy in between).
        _ => EXIT_SERVICE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_codes() {
        for (status, code) in [
            (401, EXIT_AUTH),
            (403, EXIT_AUTH),
            (400, EXIT_REFUSED),
            (404, EXIT_REFUSED),
            (409, EXIT_REFUSED),
            (413, EXIT_REFUSED),
            (500, EXIT_SERVICE),
            (503, EXIT_SERVICE),
            (302, EXIT_SERVICE),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(status_exit_code(status), code, "{status}");
        }
    }

    #[test]
    fn the_help_lists_every_exit_code() {
        for code in [
            EXIT_LOCAL,
            EXIT_USAGE,
            EXIT_AUTH,
            EXIT_REFUSED,
            EXIT_SERVICE,
        ] {
            assert!(EXIT_CODES_HELP.contains(&format!("\n  {code}  ")), "{code}");
        }
    }
}
