//! What can go wrong, what the user should do about it, and the exit code.

use std::fmt;

/// A failure of a command.
#[derive(Debug)]
pub enum CliError {
    /// The command line is wrong.
    Usage(String),
    /// The configuration is missing or wrong.
    Config(String),
    /// proctord could not be reached.
    Unreachable(String),
    /// The server refused or failed the request (`code` is its `extensions.code`).
    Server {
        /// The stable error code (`UNAUTHENTICATED`, `FORBIDDEN`, `BAD_USER_INPUT`, …).
        code: Option<String>,
        /// The server's message.
        message: String,
        /// The input field a `BAD_USER_INPUT` names.
        field: Option<String>,
    },
    /// The run itself did not succeed; the message says how it ended.
    RunFailed(String),
    /// Local input or output failed (a file, the terminal).
    Io(String),
    /// The command already said what happened; only the exit code is left (1 for a run that
    /// did not succeed, 130 after Ctrl-C detached).
    Reported(u8),
}

impl CliError {
    /// 1 when the run failed, 2 when the command could not do its work.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::RunFailed(_) => 1,
            Self::Reported(code) => *code,
            _ => 2,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(message) | Self::Config(message) | Self::Io(message) => {
                f.write_str(message)
            }
            Self::Unreachable(message) => write!(
                f,
                "{message}\nIs proctord running, and is the host right? (--host, PROCTOR_HOST, \
                 `proctor context list`)"
            ),
            Self::RunFailed(message) => f.write_str(message),
            Self::Reported(_) => Ok(()),
            Self::Server {
                code,
                message,
                field,
            } => match code.as_deref() {
                Some("UNAUTHENTICATED") => write!(
                    f,
                    "not authenticated: {message}\nSign in with `proctor login` (or set \
                     PROCTOR_TOKEN and PROCTOR_EMAIL)."
                ),
                Some("FORBIDDEN") => write!(f, "access denied: {message}"),
                Some("BAD_USER_INPUT") => match field {
                    // Messages of argument errors already name the field.
                    Some(field) if !message.contains(field.as_str()) => {
                        write!(f, "invalid {field}: {message}")
                    }
                    _ => write!(f, "invalid input: {message}"),
                },
                Some("NOT_FOUND") => f.write_str(message),
                Some("CONFLICT") => write!(f, "refused: {message}"),
                _ => write!(f, "server error: {message}"),
            },
        }
    }
}
