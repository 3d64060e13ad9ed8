//! The crate's error type and the one place that maps errors to exit codes (SPEC §6).

use std::fmt;
use std::path::PathBuf;

/// A problem found while loading a file, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line, where the parser knows it.
    pub line: Option<usize>,
    /// 1-based column, where the parser knows it.
    pub column: Option<usize>,
    /// Field path inside the document, e.g. `scope.commands[2]`; empty for the whole document.
    pub field: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl LoadError {
    /// A problem in `file` at field path `field`, with no known position.
    pub fn at(
        file: impl Into<PathBuf>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        LoadError {
            file: file.into(),
            line: None,
            column: None,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All load problems found in one pass, so a user fixes them in one go.
#[derive(Debug, Clone, Default)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

impl From<LoadError> for LoadErrors {
    fn from(e: LoadError) -> Self {
        LoadErrors(vec![e])
    }
}

/// Everything that can stop a tandem command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Config or runbook files are invalid. Exit 2.
    #[error("{0}")]
    Load(#[from] LoadErrors),
    /// The command line or its values are wrong. Exit 2.
    #[error("{0}")]
    Usage(String),
    /// A file or socket could not be used.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The server answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached or answered nonsense.
    #[error("server {url}: {message}")]
    Client { url: String, message: String },
    /// A run ended without success (failed, denied, expired, scope violation). Exit 1.
    #[error("run {id} ended {status}{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    RunUnsuccessful {
        id: String,
        status: String,
        reason: Option<String>,
    },
    /// `run` without `--wait` left the run waiting for approval. Exit 3.
    #[error("run {id} is awaiting approval")]
    AwaitingApproval { id: String },
    /// The audit log does not verify. Exit 1.
    #[error("audit log broken at seq {seq}: {reason}")]
    AuditBroken { seq: u64, reason: String },
    /// A checkpoint given to `audit verify` is unreadable or not signed by the trusted key.
    /// Exit 1.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The audit signing key cannot be read or made.
    #[error(transparent)]
    AuditKey(#[from] crate::audit::anchor::KeyError),
}

impl Error {
    /// The process exit code for this error (SPEC §6).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Load(_) | Error::Usage(_) => 2,
            Error::Api { status, .. } if *status == 400 || *status == 422 => 2,
            Error::AwaitingApproval { .. } => 3,
            _ => 1,
        }
    }

    /// Shorthand for an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
