//! Hosts over SSH: a blocking [`Session`] on the `ssh2` crate (libssh2) with host keys checked against a known_hosts
//! file, commands with per-command timeouts, SFTP uploads that skip unchanged files, and a [`Hosts`] pool that keeps
//! one session per host and runs work on many hosts with bounded parallelism.
//!
//! Everything here blocks (libssh2 is synchronous). The rest of the crate is tokio: call it from
//! `tokio::task::spawn_blocking`, never directly on a runtime thread.

mod error;
mod known_hosts;
mod pool;
mod session;

pub use error::{ConnectFailure, KeyFileProblem, SshError};
pub use pool::Hosts;
pub use session::{CommandOutput, Destination, Session, SessionOptions};

/// Quotes `word` for a POSIX shell (single quotes; embedded single quotes as `'\''`), so paths and arguments reach
/// the host's shell unchanged.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `path` with a leading `~/` replaced by the user's home folder (`$HOME`), as ssh does for key and known_hosts files.
pub fn expand_home(path: &std::path::Path) -> std::path::PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => std::path::PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_spaces_and_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn a_leading_tilde_is_the_home_folder() {
        let home = std::path::PathBuf::from(std::env::var_os("HOME").unwrap());
        assert_eq!(expand_home("~/.ssh/k".as_ref()), home.join(".ssh/k"));
        assert_eq!(expand_home("/etc/k".as_ref()), std::path::PathBuf::from("/etc/k"));
        assert_eq!(expand_home("a/~/k".as_ref()), std::path::PathBuf::from("a/~/k"));
    }
}
