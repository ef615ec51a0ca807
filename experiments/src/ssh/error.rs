//! What can go wrong talking to a host; every message names the host (`user@address:port`) and the step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why no TCP connection to a host could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectFailure {
    /// "cannot resolve {address}: {error}".
    #[error("cannot resolve {address}: {error}")]
    Resolve {
        /// The host name.
        address: String,
        /// What the resolver said.
        error: std::io::Error,
    },
    /// "{address} resolves to no address".
    #[error("{address} resolves to no address")]
    NoAddress {
        /// The host name.
        address: String,
    },
    /// "{address}: no answer within {timeout:?}".
    #[error("{address}: no answer within {timeout:?}")]
    NoAnswer {
        /// The last address tried.
        address: SocketAddr,
        /// The limit.
        timeout: Duration,
    },
    /// "{address}: {error}".
    #[error("{address}: {error}")]
    Refused {
        /// The last address tried.
        address: SocketAddr,
        /// What connecting said.
        error: std::io::Error,
    },
    /// "cannot use the socket: {error}".
    #[error("cannot use the socket: {error}")]
    Socket {
        /// What the system said.
        error: std::io::Error,
    },
}

/// Why a private key file cannot be used from this machine.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileProblem {
    /// "does not exist on this machine".
    #[error("does not exist on this machine")]
    Missing,
    /// "is not a file".
    #[error("is not a file")]
    NotAFile,
    /// "cannot be read: {error}".
    #[error("cannot be read: {error}")]
    Unreadable {
        /// What reading said.
        error: std::io::Error,
    },
}

/// Why an SSH step failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// "cannot connect to {host}: {reason}; check the address, the port and that sshd runs there".
    #[error("cannot connect to {host}: {reason}; check the address, the port and that sshd runs there")]
    Connect {
        /// `user@address:port`.
        host: String,
        /// The cause (resolution, refusal, timeout).
        reason: ConnectFailure,
    },
    /// "SSH handshake with {host} failed", with the cause.
    #[error("SSH handshake with {host} failed")]
    Handshake {
        /// `user@address:port`.
        host: String,
        /// The cause.
        source: ssh2::Error,
    },
    /// "host key of {host} ({fingerprint}) is not in {known_hosts}; ...".
    #[error(
        "host key of {host} ({fingerprint}) is not in {known_hosts}; after checking the fingerprint, add it \
         (ssh-keyscan -p PORT ADDRESS >> {known_hosts}) or, for a fresh cluster, set insecure_accept_new_host_keys"
    )]
    UnknownHostKey {
        /// `user@address:port`.
        host: String,
        /// `SHA256:...` of the offered key.
        fingerprint: String,
        /// The file that was checked.
        known_hosts: PathBuf,
    },
    /// "host key of {host} ({fingerprint}) does not match {known_hosts}; ...".
    #[error(
        "host key of {host} ({fingerprint}) does not match the key recorded in {known_hosts}: another machine answers \
         at that address, or it was reinstalled; remove the old line (ssh-keygen -R ADDRESS -f {known_hosts}) only \
         if you know which"
    )]
    HostKeyMismatch {
        /// `user@address:port`.
        host: String,
        /// `SHA256:...` of the offered key.
        fingerprint: String,
        /// The file that was checked.
        known_hosts: PathBuf,
    },
    /// "known hosts file {path} ({host}): {reason}".
    #[error("known hosts file {path} ({host}): {reason}")]
    KnownHosts {
        /// `user@address:port`.
        host: String,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// "key file {path} for {host} {reason}; ...".
    #[error(
        "key file {path} for {host} {reason}; fix `key_file` (on the host or at the top of the inventory), or leave \
         it out to use the ssh-agent"
    )]
    KeyFile {
        /// `user@address:port`.
        host: String,
        /// The private key file on this machine.
        path: PathBuf,
        /// What is wrong with it (missing, not a file, unreadable).
        reason: KeyFileProblem,
    },
    /// "{host} refused key authentication ({method}); check that ... authorized_keys ...", with the cause.
    #[error(
        "{host} refused key authentication ({method}); check that the public key is in ~/.ssh/authorized_keys of \
         that user on the host"
    )]
    Auth {
        /// `user@address:port`.
        host: String,
        /// `key file PATH` or `ssh-agent`.
        method: String,
        /// The cause.
        source: ssh2::Error,
    },
    /// "on {host}, `{command}`: {reason}".
    #[error("on {host}, `{command}`: {reason}")]
    Exec {
        /// `user@address:port`.
        host: String,
        /// The command.
        command: String,
        /// What went wrong (channel, read, exit status).
        reason: String,
    },
    /// "on {host}, `{command}` did not finish within {timeout:?} (killed); stderr so far: {stderr}".
    #[error("on {host}, `{command}` did not finish within {timeout:?} (killed); stderr so far: {stderr}")]
    Timeout {
        /// `user@address:port`.
        host: String,
        /// The command.
        command: String,
        /// The limit.
        timeout: Duration,
        /// What it printed on stdout before the limit.
        stdout: String,
        /// What it printed on stderr before the limit.
        stderr: String,
    },
    /// "on {host}, `{command}` exited with {status}; stderr: {stderr}".
    #[error("on {host}, `{command}` exited with {status}; stderr: {stderr}")]
    Failed {
        /// `user@address:port`.
        host: String,
        /// The command.
        command: String,
        /// Its exit status.
        status: i32,
        /// Its stderr (trimmed).
        stderr: String,
    },
    /// "{action} {path} on {host}: {reason}".
    #[error("{action} {path} on {host}: {reason}")]
    Transfer {
        /// `user@address:port`.
        host: String,
        /// `upload to`, `download of`, ...
        action: &'static str,
        /// The remote path.
        path: String,
        /// What went wrong (local or remote).
        reason: String,
        /// Whether the cause is a file on this machine (the session is then still usable).
        local: bool,
    },
}

impl SshError {
    /// Whether the session may be broken after this error (the pool then reconnects rather than reuse it): true for
    /// everything except a command that ran and exited non-zero and a transfer that failed on a local file.
    pub fn may_break_session(&self) -> bool {
        !matches!(self, SshError::Failed { .. } | SshError::Transfer { local: true, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_remote_causes_may_break_the_session() {
        let transfer = |local| SshError::Transfer {
            host: "h".into(),
            action: "upload to",
            path: "/r".into(),
            reason: "x".into(),
            local,
        };
        assert!(!transfer(true).may_break_session());
        assert!(transfer(false).may_break_session());
        let failed = SshError::Failed { host: "h".into(), command: "false".into(), status: 1, stderr: String::new() };
        assert!(!failed.may_break_session());
    }
}
