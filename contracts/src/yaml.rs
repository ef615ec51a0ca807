//! The one YAML reader of the toolkit (role configs, loader runs, experiment specs, inventories) and its errors.
//!
//! YAML 1.1 words like `yes`/`on` stay strings (strict booleans), so an untyped value means what it says. An error
//! names the line, the column and the key path (`autoscaler.tick`, `hosts[2].port`), on one line: messages end up
//! in error chains, logs and `experiment.json`, where a multi-line source snippet would not fit.
//!
//! Every error's `Display` is its whole message; the parser's own error is kept in the value (see
//! [`YamlError::yaml`]) rather than reported again as a `source()`, so a printed cause chain names it once.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A YAML document that does not fit the type it is read as.
#[derive(Debug)]
pub struct YamlError {
    key: String,
    /// The line it happened on, as written (shortened), so the message shows what the reader saw.
    text: String,
    error: Box<serde_saphyr::Error>,
}

impl YamlError {
    /// The key path where it went wrong (`autoscaler.tick`, `hosts[2]`); empty at the document's top.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The 1-based line, when the parser knows it.
    pub fn line(&self) -> Option<u64> {
        self.error.location().map(|l| l.line())
    }

    /// The 1-based column, when the parser knows it.
    pub fn column(&self) -> Option<u64> {
        self.error.location().map(|l| l.column())
    }

    /// The parser's error, as it reported it.
    pub fn yaml(&self) -> &serde_saphyr::Error {
        &self.error
    }
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The parser's message already ends with "at line L, column C".
        write!(f, "{}", self.error.without_snippet())?;
        match (self.key.is_empty(), self.text.is_empty()) {
            (false, false) => write!(f, " (key `{}`, in `{}`)", self.key, self.text),
            (false, true) => write!(f, " (key `{}`)", self.key),
            (true, false) => write!(f, " (in `{}`)", self.text),
            (true, true) => Ok(()),
        }
    }
}

impl std::error::Error for YamlError {}

/// Reading a config file failed; every message names the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// "cannot read config file {path}: {error}"
    #[error("cannot read config file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        error: std::io::Error,
    },
    /// "invalid config file {path}: {error}" (the error names line, column and key)
    #[error("invalid config file {}: {error}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, where.
        error: YamlError,
    },
    /// "invalid config file {path}: {error}" (a value the types allow but the config does not; names the key)
    #[error("invalid config file {}: {error}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which key, and why.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ConfigError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Read { path, .. } | ConfigError::Parse { path, .. } | ConfigError::Invalid { path, .. } => {
                path
            }
        }
    }
}

/// Parses a YAML document as `T`, with strict booleans; the error names line, column and key.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    let options = serde_saphyr::options! { strict_booleans: true, with_snippet: false };
    let key = RefCell::new(String::new());
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |deserializer| {
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            *key.borrow_mut() = key_path(&error.path().to_string());
            error.into_inner()
        })
    })
    .map_err(|error| {
        let text = error.location().map(|l| line_text(text, l.line())).unwrap_or_default();
        YamlError { key: key.into_inner(), text, error: Box::new(error) }
    })
}

/// Line `line` (1-based) of `text`, trimmed and cut to a length that fits in one message.
fn line_text(text: &str, line: u64) -> String {
    const MAX: usize = 80;
    let Some(found) = usize::try_from(line).ok().and_then(|l| text.lines().nth(l.checked_sub(1)?)) else {
        return String::new();
    };
    let found = found.trim();
    match found.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &found[..cut]),
        None => found.to_owned(),
    }
}

/// `serde_path_to_error` writes the top as "."; here the top is the empty path.
fn key_path(path: &str) -> String {
    if path == "." { String::new() } else { path.to_owned() }
}

/// Reads and parses the YAML file at `path` as `T`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = read(path)?;
    parse(&text).map_err(|error| ConfigError::Parse { path: path.to_owned(), error })
}

/// Reads `path` as `T`; `T::default()` when there is no file or it holds nothing but whitespace.
pub fn load_or_default<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    let Some(path) = path else { return Ok(T::default()) };
    let text = read(path)?;
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    parse(&text).map_err(|error| ConfigError::Parse { path: path.to_owned(), error })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    #[derive(Debug, PartialEq, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        #[serde(with = "humantime_serde")]
        tick: Duration,
        n: u32,
    }

    #[derive(Debug, PartialEq, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Outer {
        word: String,
        inner: Inner,
        list: Vec<Inner>,
    }

    #[test]
    fn yaml_1_1_words_stay_strings() {
        let value: BTreeMap<String, serde_json::Value> = parse("a: yes\nb: on\nc: true\n").unwrap();
        assert_eq!(value["a"], "yes");
        assert_eq!(value["b"], "on");
        assert_eq!(value["c"], true);
        let outer: Outer = parse("word: no\n").unwrap();
        assert_eq!(outer.word, "no");
    }

    #[test]
    fn errors_name_line_column_and_key_on_one_line() {
        let err = parse::<Outer>("word: x\ninner:\n  tick: soon\n").unwrap_err();
        assert_eq!((err.line(), err.column(), err.key()), (Some(3), Some(3), "inner.tick"));
        let text = err.to_string();
        assert!(text.contains("line 3") && text.contains("`inner.tick`") && text.contains("soon"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");

        let err = parse::<Outer>("list:\n- { n: 1 }\n- { n: 1, m: 2 }\n").unwrap_err();
        assert_eq!((err.line(), err.key()), (Some(3), "list[1].m"));
        assert!(err.to_string().contains("unknown field `m`"), "{err}");

        let err = parse::<Outer>("placment: random\n").unwrap_err();
        assert_eq!(err.key(), "placment");
        assert!(err.to_string().contains("in `placment: random`"), "shows the line: {err}");
        let long = format!("word: x\ninner: {{ n: 1, tick: soon }} # {}\n", "x".repeat(200));
        let err = parse::<Outer>(&long).unwrap_err().to_string();
        assert!(err.contains("in `inner: { n: 1, tick: soon }") && err.len() < 300, "{err}");
        let err = parse::<Outer>("word: [1\n").unwrap_err();
        assert!(err.line().is_some(), "a syntax error has a place too: {err}");
    }

    #[test]
    fn files_name_the_file_and_empty_files_are_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.yaml");
        std::fs::write(&path, "inner: { n: -1 }\n").unwrap();
        let err = load::<Outer>(&path).unwrap_err();
        assert_eq!(err.path(), path);
        let text = err.to_string();
        assert!(text.contains("cp.yaml") && text.contains("inner.n") && text.contains("line 1"), "{text}");

        std::fs::write(&path, " \n").unwrap();
        assert_eq!(load_or_default::<Outer>(Some(&path)).unwrap(), Outer::default());
        assert_eq!(load_or_default::<Outer>(None).unwrap(), Outer::default());
        std::fs::write(&path, "inner: { n: 4 }\n").unwrap();
        assert_eq!(load_or_default::<Outer>(Some(&path)).unwrap().inner.n, 4);

        let missing = load::<Outer>(&dir.path().join("absent.yaml")).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }) && missing.to_string().contains("absent.yaml"));
    }
}
