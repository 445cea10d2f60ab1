//! The secret the CLI authenticates with ([`Secret`]) and where it comes from: the file named by
//! `--secret-file` (its first line), else the `KEYGATE_ADMIN_SECRET` variable. Never a flag's
//! value: flags show up in process listings and shell history.
//!
//! The secret is either the service's admin secret or a tenant admin's `kgta_…`; the service
//! tells them apart. It is only ever put in the `Authorization` header (marked sensitive); its
//! `Debug` is redacted and no error message holds it.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

/// The variable the secret is read from when no `--secret-file` is given: the same one the key
/// service reads its admin secret from.
pub const SECRET_ENV: &str = "KEYGATE_ADMIN_SECRET";

/// Longest secret accepted (the service's own limit for its admin secret).
const MAX_SECRET_LEN: usize = 1024;

/// Most of a secret file read: a secret file is one short line.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// A bearer secret that can travel in `Authorization: Bearer <secret>`: printable ASCII, no
/// spaces and no commas (a comma reads as two folded credentials), 1 to 1024 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Where a secret was read from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Env,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "the first line of {}", path.display()),
            Self::Env => f.write_str(SECRET_ENV),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("no secret: set {SECRET_ENV} or pass --secret-file PATH")]
    Missing,
    #[error("cannot read the secret file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the secret file {} is readable by group or others (mode {mode:03o}); \
         run `chmod 600 {}` first",
        path.display(),
        path.display()
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{0} is empty")]
    Empty(Origin),
    #[error(
        "{0} is not a usable secret: it must be printable ASCII without spaces or commas, \
         at most {MAX_SECRET_LEN} bytes"
    )]
    Malformed(Origin),
}

impl Secret {
    /// The secret from `file` if given, else from `env` (the value of [`SECRET_ENV`]).
    pub fn load(file: Option<&Path>, env: Option<OsString>) -> Result<Self, SecretError> {
        match (file, env) {
            (Some(path), _) => Self::parse(&read_first_line(path)?, Origin::File(path.into())),
            (None, Some(value)) => {
                let value = value
                    .into_string()
                    .map_err(|_| SecretError::Malformed(Origin::Env))?;
                Self::parse(value.trim(), Origin::Env)
            }
            (None, None) => Err(SecretError::Missing),
        }
    }

    fn parse(text: &str, origin: Origin) -> Result<Self, SecretError> {
        if text.is_empty() {
            return Err(SecretError::Empty(origin));
        }
        let usable =
            text.len() <= MAX_SECRET_LEN && text.bytes().all(|b| b.is_ascii_graphic() && b != b',');
        if usable {
            Ok(Self(text.to_owned()))
        } else {
            Err(SecretError::Malformed(origin))
        }
    }

    /// The secret itself, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The first line of the file at `path`, trimmed. On Unix the file must not be readable by
/// group or others, as ssh insists for private keys: a secret others can read is no secret.
fn read_first_line(path: &Path) -> Result<String, SecretError> {
    let read_error = |source| SecretError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    // The mode of the file opened, not of whatever the path names a moment later.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file.metadata().map_err(read_error)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretError::Exposed {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = std::str::from_utf8(first)
        .map_err(|_| SecretError::Malformed(Origin::File(path.to_owned())))?;
    Ok(first.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    const SECRET: &str = "kgta_0123456789abcdef";

    fn secret_file(contents: &str, mode: u32) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
        file
    }

    #[test]
    fn the_file_gives_its_first_line_trimmed() {
        let file = secret_file(&format!("  {SECRET}\r\nsecond line\n"), 0o600);
        let secret = Secret::load(Some(file.path()), None).unwrap();
        assert_eq!(secret.expose(), SECRET);
    }

    #[test]
    fn the_file_wins_over_the_variable() {
        let file = secret_file(SECRET, 0o400);
        let secret = Secret::load(Some(file.path()), Some("from-env".into())).unwrap();
        assert_eq!(secret.expose(), SECRET);
    }

    #[test]
    fn the_variable_is_used_without_a_file() {
        let secret = Secret::load(None, Some(format!("{SECRET}\n").into())).unwrap();
        assert_eq!(secret.expose(), SECRET);
    }

    #[test]
    fn no_file_and_no_variable_is_an_error_naming_both() {
        let error = Secret::load(None, None).unwrap_err().to_string();
        assert!(
            error.contains(SECRET_ENV) && error.contains("--secret-file"),
            "{error}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_file_readable_by_others_is_refused_without_showing_the_secret() {
        let file = secret_file(SECRET, 0o644);
        let error = Secret::load(Some(file.path()), None).unwrap_err();
        assert!(matches!(error, SecretError::Exposed { mode: 0o644, .. }));
        assert!(!error.to_string().contains(SECRET), "{error}");
    }

    #[test]
    fn an_empty_first_line_is_refused() {
        let file = secret_file("\nsecret-on-line-two\n", 0o600);
        assert!(matches!(
            Secret::load(Some(file.path()), None),
            Err(SecretError::Empty(Origin::File(_)))
        ));
    }

    #[test]
    fn a_secret_with_a_space_or_comma_is_refused_without_echoing_it() {
        for bad in ["two words", "a,b", "caf\u{e9}"] {
            let error = Secret::load(None, Some(bad.into())).unwrap_err();
            assert!(
                matches!(error, SecretError::Malformed(Origin::Env)),
                "{bad}"
            );
            assert!(!error.to_string().contains(bad), "{error}");
        }
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let secret = Secret::load(None, Some(SECRET.into())).unwrap();
        assert!(!format!("{secret:?}").contains(SECRET));
    }
}
