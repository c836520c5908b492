//! Typed errors of the core. Each message reads "unable to <verb> <object>: <cause>" and,
//! where we know it, says what to do next. Secrets never go into a field.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unable to connect to {engine} at {target}: {cause}; {hint}")]
    Connect {
        engine: &'static str,
        target: String,
        cause: String,
        hint: &'static str,
    },

    #[error("unable to {what} on {target}: {cause}")]
    Query {
        what: String,
        target: String,
        cause: String,
    },

    #[error("unable to {action} '{}': {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("unable to write '{}': {cause}{hint}", path.display())]
    Write {
        path: PathBuf,
        cause: String,
        hint: &'static str,
    },

    #[error("unable to run '{command}' (exit {code}): {stderr}")]
    Command {
        command: String,
        code: String,
        stderr: String,
    },

    #[error("invalid {what}: {detail}")]
    Invalid { what: String, detail: String },

    #[error("unable to read the credentials of endpoint '{endpoint}': {cause}")]
    Credentials { endpoint: String, cause: String },

    #[error("unable to {action}: {detail}")]
    Lab { action: String, detail: String },

    #[error("unable to inventory {what}: {detail}; check the endpoints' addresses and credentials")]
    Unreachable { what: String, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            detail: detail.into(),
        }
    }

    pub fn lab(action: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Lab {
            action: action.into(),
            detail: detail.into(),
        }
    }
}
