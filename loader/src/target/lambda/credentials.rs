//! AWS credentials from the standard chain: the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`), then the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
//! `~/.aws/credentials`) and the config file (`AWS_CONFIG_FILE`, else `~/.aws/config`) for the profile named in the
//! loader config, else `AWS_PROFILE`, else `default`.
//!
//! The values never leave this module in text form: [`AwsCredentials`]'s `Debug` redacts them, and errors name
//! variables, files and profiles, never values.

use std::path::{Path, PathBuf};

/// Access key, secret key and optional session token; `Debug` shows only where they came from.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    source: String,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &"** redacted **")
            .field("secret_access_key", &"** redacted **")
            .field("session_token", &self.session_token.as_ref().map(|_| "** redacted **"))
            .field("source", &self.source)
            .finish()
    }
}

impl AwsCredentials {
    /// Credentials given directly (tests, or a caller with its own source); `source` says where they came from.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
        source: impl Into<String>,
    ) -> Self {
        AwsCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
            source: source.into(),
        }
    }

    /// Where the credentials came from (`environment` or `profile NAME in FILE`), never their values.
    #[cfg(test)]
    fn source(&self) -> &str {
        &self.source
    }

    /// The signing identity for `aws-sigv4`.
    pub(crate) fn identity(&self) -> aws_smithy_runtime_api::client::identity::Identity {
        aws_credential_types::Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.clone(),
            self.session_token.clone(),
            None,
            "loader",
        )
        .into()
    }

    /// Every secret string: what the client removes from error answers and tests look for in outputs.
    pub(crate) fn secret_strings(&self) -> Vec<&str> {
        let mut all = vec![self.access_key_id.as_str(), self.secret_access_key.as_str()];
        all.extend(self.session_token.as_deref());
        all
    }
}

/// No usable credentials were found; the message names what was looked at.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Nothing in the environment and no such profile.
    #[error(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add aws_access_key_id and \
         aws_secret_access_key to profile '{profile}' in {credentials_file} (looked at {credentials_file} and \
         {config_file})"
    )]
    NotFound {
        /// The profile looked up.
        profile: String,
        /// The shared credentials file looked at.
        credentials_file: String,
        /// The config file looked at.
        config_file: String,
    },
    /// The profile exists but lacks a key.
    #[error("profile '{profile}' in {file} has no {key}")]
    Incomplete {
        /// The profile.
        profile: String,
        /// The file.
        file: String,
        /// The missing key.
        key: &'static str,
    },
    /// A credentials file exists but cannot be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Resolves credentials from the process environment and the profile files; `profile` overrides `AWS_PROFILE`.
pub fn resolve(profile: Option<&str>) -> Result<AwsCredentials, CredentialsError> {
    resolve_with(profile, &|name| std::env::var(name).ok())
}

/// Resolves credentials with `env` standing in for the process environment (tests).
pub fn resolve_with(
    profile: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AwsCredentials, CredentialsError> {
    let var = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    if let (Some(key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        return Ok(AwsCredentials::new(key, secret, var("AWS_SESSION_TOKEN"), "environment"));
    }
    let profile = profile.map(str::to_string).or_else(|| var("AWS_PROFILE")).unwrap_or_else(|| "default".into());
    let home = var("HOME").map(PathBuf::from);
    let file_from = |variable: &str, default: &str| {
        var(variable).map(PathBuf::from).or_else(|| home.as_ref().map(|home| home.join(".aws").join(default)))
    };
    let credentials_file = file_from("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = file_from("AWS_CONFIG_FILE", "config");
    // The credentials file names sections by the profile; the config file by `profile NAME` (`default` plain).
    let config_section = if profile == "default" { profile.clone() } else { format!("profile {profile}") };
    for (file, section) in [(&credentials_file, &profile), (&config_file, &config_section)] {
        let Some(file) = file else { continue };
        if let Some(credentials) = from_profile_file(file, section, &profile)? {
            return Ok(credentials);
        }
    }
    let shown = |file: &Option<PathBuf>| file.as_ref().map_or("(no HOME)".to_string(), |f| f.display().to_string());
    Err(CredentialsError::NotFound {
        profile,
        credentials_file: shown(&credentials_file),
        config_file: shown(&config_file),
    })
}

fn from_profile_file(file: &Path, section: &str, profile: &str) -> Result<Option<AwsCredentials>, CredentialsError> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CredentialsError::Read { file: file.display().to_string(), source }),
    };
    let Some(entries) = ini_section(&text, section) else { return Ok(None) };
    let get = |key: &str| entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let Some(key) = get("aws_access_key_id") else { return Ok(None) };
    let incomplete =
        |key| CredentialsError::Incomplete { profile: profile.to_string(), file: file.display().to_string(), key };
    let secret = get("aws_secret_access_key").ok_or_else(|| incomplete("aws_secret_access_key"))?;
    let source = format!("profile '{profile}' in {}", file.display());
    Ok(Some(AwsCredentials::new(key, secret, get("aws_session_token"), source)))
}

/// The `key = value` pairs of `[section]` in INI `text` (keys lower-cased; `#` and `;` start comment lines), or
/// `None` when the section is absent. A repeated section adds to the first.
fn ini_section(text: &str, section: &str) -> Option<Vec<(String, String)>> {
    let mut found = false;
    let mut inside = false;
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            inside = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            found |= inside;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            entries.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    found.then_some(entries)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn environment_wins() {
        let env = env(&[
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "secret-env"),
            ("AWS_SESSION_TOKEN", "token-env"),
            ("HOME", "/nonexistent"),
        ]);
        let credentials = resolve_with(None, &env).unwrap();
        assert_eq!(credentials.secret_strings(), ["AKIDENV", "secret-env", "token-env"]);
        assert_eq!(credentials.source(), "environment");
        let debug = format!("{credentials:?}");
        for secret in credentials.secret_strings() {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn profile_files_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("credentials");
        std::fs::write(
            &credentials,
            "# comment\n[default]\naws_access_key_id = AKIDDEF\naws_secret_access_key=sdef\n\n\
             [bench]\n; other\nAWS_ACCESS_KEY_ID = AKIDBENCH\naws_secret_access_key = sbench\naws_session_token = t\n\
             [broken]\naws_access_key_id = AKIDBROKEN\n",
        )
        .unwrap();
        let config = dir.path().join("config");
        std::fs::write(&config, "[profile cfg]\naws_access_key_id = AKIDCFG\naws_secret_access_key = scfg\n").unwrap();
        let base = [
            ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ];
        let found = resolve_with(None, &env(&base)).unwrap();
        assert_eq!(found.secret_strings(), ["AKIDDEF", "sdef"]);
        let mut with_profile = base.to_vec();
        with_profile.push(("AWS_PROFILE", "bench"));
        let found = resolve_with(None, &env(&with_profile)).unwrap();
        assert_eq!(found.secret_strings(), ["AKIDBENCH", "sbench", "t"]);
        assert!(found.source().contains("'bench'"));
        // The loader config's profile overrides AWS_PROFILE; the config file is the second place looked at.
        let found = resolve_with(Some("cfg"), &env(&with_profile)).unwrap();
        assert_eq!(found.secret_strings(), ["AKIDCFG", "scfg"]);

        let err = resolve_with(Some("broken"), &env(&base)).unwrap_err().to_string();
        assert!(
            err.contains("aws_secret_access_key") && err.contains("broken") && !err.contains("AKIDBROKEN"),
            "{err}"
        );
        let err = resolve_with(Some("absent"), &env(&base)).unwrap_err().to_string();
        assert!(err.contains("'absent'") && err.contains("AWS_ACCESS_KEY_ID") && !err.contains("AKID"), "{err}");
    }

    #[test]
    fn half_set_environment_falls_through_to_the_profile() {
        let env = env(&[("AWS_ACCESS_KEY_ID", "AKIDONLY"), ("HOME", "/nonexistent")]);
        let err = resolve_with(None, &env).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/.aws/credentials") && !err.contains("AKIDONLY"), "{err}");
    }
}
