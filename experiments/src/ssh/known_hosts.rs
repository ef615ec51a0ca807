//! Host key verification against an OpenSSH known_hosts file.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ssh2::{CheckResult, HashType, KnownHostFileKind, KnownHostKeyFormat};

use super::SshError;
use super::session::Destination;

/// Serialises appends to known_hosts files: the pool connects to many new hosts at once.
static APPEND: Mutex<()> = Mutex::new(());

/// Checks the key `session` was offered against `path`; an unknown key is recorded when `accept_new` (never a
/// mismatched one: that is what known_hosts exists to catch).
pub(super) fn verify(
    session: &ssh2::Session,
    destination: &Destination,
    path: &Path,
    accept_new: bool,
) -> Result<(), SshError> {
    let host = destination.to_string();
    let known_hosts_error = |reason: String| SshError::KnownHosts { host: host.clone(), path: path.into(), reason };
    let (key, key_type) = session.host_key().ok_or_else(|| known_hosts_error("the host offered no host key".into()))?;
    let fingerprint = session.host_key_hash(HashType::Sha256).map(fingerprint).unwrap_or_default();
    let mut known = session.known_hosts().map_err(|e| known_hosts_error(e.to_string()))?;
    if path.exists() {
        known
            .read_file(path, KnownHostFileKind::OpenSSH)
            .map_err(|e| known_hosts_error(format!("cannot read: {e}")))?;
    }
    match known.check_port(&destination.address, destination.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(SshError::HostKeyMismatch { host, fingerprint, known_hosts: path.into() }),
        CheckResult::NotFound if accept_new => {
            tracing::warn!(host = %host, %fingerprint, known_hosts = %path.display(), "accepting a new host key");
            let line = known_hosts_line(session, &known_hosts_name(destination), key, key_type.into())
                .map_err(|e| known_hosts_error(format!("cannot record the key: {e}")))?;
            append(path, &line).map_err(|e| known_hosts_error(format!("cannot append: {e}")))
        }
        CheckResult::NotFound => Err(SshError::UnknownHostKey { host, fingerprint, known_hosts: path.into() }),
        CheckResult::Failure => Err(known_hosts_error("libssh2 could not check the key".into())),
    }
}

/// The name known_hosts files use: the bare address on port 22, `[address]:port` otherwise.
pub(super) fn known_hosts_name(destination: &Destination) -> String {
    if destination.port == 22 {
        destination.address.clone()
    } else {
        format!("[{}]:{}", destination.address, destination.port)
    }
}

/// One known_hosts line for `key`, formatted by libssh2 (it does the key type name and the base64).
fn known_hosts_line(
    session: &ssh2::Session,
    name: &str,
    key: &[u8],
    format: KnownHostKeyFormat,
) -> Result<String, ssh2::Error> {
    let mut fresh = session.known_hosts()?;
    fresh.add(name, key, "", format)?;
    let hosts = fresh.hosts()?;
    let not_recorded = || ssh2::Error::new(ssh2::ErrorCode::Session(-1), "libssh2 did not record the key");
    let host = hosts.first().ok_or_else(not_recorded)?;
    fresh.write_string(host, KnownHostFileKind::OpenSSH)
}

fn append(path: &Path, line: &str) -> std::io::Result<()> {
    let _guard = APPEND.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let line = line.trim_end();
    writeln!(file, "{line}")
}

/// `SHA256:<unpadded base64>`, as `ssh-keygen -l` and ssh print it.
pub(super) fn fingerprint(sha256: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(port: u16) -> Destination {
        Destination { user: "root".into(), address: "10.0.0.1".into(), port }
    }

    #[test]
    fn port_22_uses_the_bare_address() {
        assert_eq!(known_hosts_name(&destination(22)), "10.0.0.1");
        assert_eq!(known_hosts_name(&destination(2222)), "[10.0.0.1]:2222");
    }

    #[test]
    fn fingerprint_is_unpadded_base64() {
        // RFC 4648 test vectors, without the padding.
        assert_eq!(fingerprint(b"f"), "SHA256:Zg");
        assert_eq!(fingerprint(b"fo"), "SHA256:Zm8");
        assert_eq!(fingerprint(b"foo"), "SHA256:Zm9v");
        assert_eq!(fingerprint(b"foobar"), "SHA256:Zm9vYmFy");
    }

    #[test]
    fn appending_creates_the_file_and_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        append(&path, "a ssh-ed25519 AAAA\n").unwrap();
        append(&path, "b ssh-ed25519 BBBB").unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), "a ssh-ed25519 AAAA\nb ssh-ed25519 BBBB\n");
    }
}
