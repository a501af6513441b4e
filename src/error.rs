//! Library errors: each says what went wrong and where (file, line, field), so
//! the binary can print it once and a user can find the offending input.
use std::path::PathBuf;

/// Where in an input file a problem was found. `line` is 1-based and counts
/// every physical line, header included, as an editor would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: u64,
    pub field: Option<String>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if let Some(field) = &self.field {
            write!(f, ", field `{field}`")?;
        }
        Ok(())
    }
}

/// The crate's error: every failure of every stage says what failed and
/// where (file, line, field, run), and keeps what it came from as its
/// [`source`](std::error::Error::source) (an IO, Parquet, JSON, libtorch or
/// LightGBM error), so a caller can look at the cause and the CLI prints
/// the chain. `Invalid` is for mistakes found by ctr-dl itself, which have
/// no cause below them.
///
/// A variant's text includes its cause's, so `to_string()` alone is the
/// whole message (the API answers with it); the CLI prints a cause on its
/// own line only when it adds to the text above it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    BadLine(Location, String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
    /// JSON that does not parse or serialize; `what` is the file or value.
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// libtorch failed on `what` (a file, a run, a bundle).
    #[error("{what}: libtorch: {source}")]
    Torch {
        what: String,
        #[source]
        source: tch::TchError,
    },
    /// LightGBM failed on `what`.
    #[error("{what}: {source}")]
    Lightgbm {
        what: String,
        #[source]
        source: LightgbmError,
    },
    /// A figure could not be drawn.
    #[error("{path}: drawing failed: {source}")]
    Plot {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A background thread (`what`: reader, loader, prediction log writer)
    /// could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("the server stopped: {0}")]
    Server(#[source] Box<rocket::Error>),
    /// An error of ctr-dl's own, explained by `what`.
    #[error("{what}: {source}")]
    Context {
        what: String,
        #[source]
        source: Box<Error>,
    },
    #[error("schema {path}: {message}")]
    Schema { path: PathBuf, message: String },
    #[error("config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error(
        "too many bad lines: {bad} of {total} ({ratio:.4}%) exceed --max-bad-ratio {max:.4}%; first: {first}"
    )]
    TooManyBadLines {
        bad: u64,
        total: u64,
        ratio: f64,
        max: f64,
        first: String,
    },
    /// A mistake ctr-dl found itself (bad settings, a missing or
    /// inconsistent file, an empty split): the text says what and where.
    #[error("{0}")]
    Invalid(String),
}

/// The message LightGBM's C API gave for a failed call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("LightGBM: {0}")]
pub struct LightgbmError(pub String);

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn parquet(path: impl Into<PathBuf>, source: parquet::errors::ParquetError) -> Self {
        Error::Parquet {
            path: path.into(),
            source,
        }
    }
    pub fn arrow(path: impl Into<PathBuf>, source: arrow::error::ArrowError) -> Self {
        Error::Arrow {
            path: path.into(),
            source,
        }
    }
    /// A JSON error of the file at `path`.
    pub fn json(path: &std::path::Path, source: serde_json::Error) -> Self {
        Error::Json {
            what: path.display().to_string(),
            source,
        }
    }
    /// A libtorch error on the file or folder at `path`.
    pub fn torch(path: &std::path::Path, source: tch::TchError) -> Self {
        Error::Torch {
            what: path.display().to_string(),
            source,
        }
    }
    /// A LightGBM error on `what`.
    pub fn lightgbm(what: impl std::fmt::Display, source: LightgbmError) -> Self {
        Error::Lightgbm {
            what: what.to_string(),
            source,
        }
    }
    /// This error, explained by `what` (which says where).
    pub fn context(self, what: impl Into<String>) -> Self {
        Error::Context {
            what: what.into(),
            source: Box::new(self),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A serde or ctr-dl message about an unknown key (`unknown field `x`,
/// expected one of `a`, `b``, or a model's `has no setting `x` ... settings:
/// a, b`), with a line `did you mean `y`?` added when one of the keys it lists is
/// within a typo of `x`. Other messages come back as they are.
pub fn did_you_mean(message: &str) -> String {
    let Some(key) = unknown_key(message) else {
        return message.to_string();
    };
    let listed: Vec<&str> = if let Some((_, rest)) = message.split_once("expected one of ") {
        rest.split('`').skip(1).step_by(2).collect()
    } else if let Some((_, rest)) = message.rsplit_once("settings: ") {
        rest.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let best = listed
        .into_iter()
        .filter(|&c| c != key)
        .map(|c| (strsim::damerau_levenshtein(key, c), c))
        .min();
    match best {
        Some((d, c)) if d <= 2.max(key.len() / 4) => {
            format!("{}\ndid you mean `{c}`?", message.trim_end())
        }
        _ => message.to_string(),
    }
}

/// The key an unknown-key message is about.
pub fn unknown_key(message: &str) -> Option<&str> {
    ["unknown field `", "has no setting `", "unknown variant `"]
        .iter()
        .find_map(|p| message.split_once(p))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::Error;
    use crate::data::io::read_json;

    /// Failures keep what they came from: a caller can look at the cause.
    #[test]
    fn failures_keep_their_cause() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("missing.json");
        let e = read_json::<serde_json::Value>(&missing).unwrap_err();
        let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(io.map(|io| io.kind()), Some(std::io::ErrorKind::NotFound));
        assert!(e.to_string().contains("missing.json"), "{e}");

        let bad = d.path().join("bad.json");
        std::fs::write(&bad, "{\n  \"a\": }").unwrap();
        let e = read_json::<serde_json::Value>(&bad).unwrap_err();
        let json = e
            .source()
            .and_then(|s| s.downcast_ref::<serde_json::Error>());
        assert_eq!(json.map(|j| j.line()), Some(2), "{e}");
        assert!(e.to_string().starts_with(&*bad.to_string_lossy()), "{e}");

        let bundle = d.path().join("bundle");
        std::fs::create_dir(&bundle).unwrap();
        std::fs::write(bundle.join("model.pt"), b"not TorchScript").unwrap();
        let e = match crate::train::scoring::TorchScript::load(&bundle, (1, 0), tch::Device::Cpu) {
            Ok(_) => panic!("a broken model.pt loaded"),
            Err(e) => e,
        };
        assert!(matches!(e, Error::Torch { .. }), "{e:?}");
        assert!(e.to_string().contains("model.pt: libtorch:"), "{e}");
        assert!(e
            .source()
            .is_some_and(|s| s.downcast_ref::<tch::TchError>().is_some()));

        let e = Error::Invalid("inner".into()).context("outer");
        assert_eq!(e.to_string(), "outer: inner");
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("inner"));
    }
}
