//! One authenticated SSH connection to one host: commands with timeouts, SFTP uploads and downloads.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use sha2::{Digest, Sha256};
use ssh2::{BlockDirections, MethodType, OpenFlags, OpenType};

use super::error::{ConnectFailure, KeyFileProblem};
use super::{SshError, known_hosts, shell_quote};

/// Key exchanges in order of preference, pinned because a run opens one connection per host: post-quantum hybrids
/// (OpenSSH's client default) cost far more per connection than curve25519-sha256 (see shared docs). libssh2 1.11
/// has none yet and already picks curve25519 against OpenSSH 9.2; the pin keeps it so when libssh2 adds them.
const KEX_PREFERENCE: &str = "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,\
                              diffie-hellman-group14-sha256,diffie-hellman-group16-sha512";

/// How long one wait for the socket lasts while a command runs (bounds how late a timeout is noticed).
const POLL_SLICE: Duration = Duration::from_millis(100);

/// Where to connect: `user@address:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The login user.
    pub user: String,
    /// Host name or IP address.
    pub address: String,
    /// The SSH port.
    pub port: u16,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.address.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.address, self.port)
        } else {
            write!(f, "{}@{}:{}", self.user, self.address, self.port)
        }
    }
}

/// How to connect and authenticate.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The private key; `None` asks the ssh-agent (`SSH_AUTH_SOCK`).
    pub key_file: Option<PathBuf>,
    /// The known_hosts file the host key must be in.
    pub known_hosts: PathBuf,
    /// Accept and record a host key that is not in `known_hosts` (fresh clusters only; a mismatched key is still
    /// refused).
    pub insecure_accept_new_host_keys: bool,
    /// Limit for the TCP connect.
    pub connect_timeout: Duration,
    /// Limit for each blocking protocol step (handshake, authentication, each SFTP operation).
    pub io_timeout: Duration,
}

impl Default for SessionOptions {
    /// The user's `~/.ssh/known_hosts`, the agent, strict host keys, 10 s connect, 60 s per step.
    fn default() -> Self {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
        SessionOptions {
            key_file: None,
            known_hosts: home.join(".ssh/known_hosts"),
            insecure_accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(60),
        }
    }
}

/// What a command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status (a command killed by a signal reports -1).
    pub status: i32,
    /// Everything it printed on stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it printed on stderr (lossy UTF-8).
    pub stderr: String,
}

impl CommandOutput {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// An authenticated connection to one host. Blocking: call it from `spawn_blocking` in async code.
pub struct Session {
    inner: ssh2::Session,
    /// A second handle on the session's socket, to wait for it while reading without blocking.
    socket: TcpStream,
    destination: Destination,
    io_timeout: Duration,
    sftp: Option<ssh2::Sftp>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("destination", &self.destination).finish_non_exhaustive()
    }
}

impl Session {
    /// Connects, checks the host key against `options.known_hosts` and authenticates with the key file or agent.
    pub fn connect(destination: &Destination, options: &SessionOptions) -> Result<Self, SshError> {
        let host = destination.to_string();
        // Checked before connecting: a path that is wrong here is not the host's refusal.
        let key_file = options.key_file.as_deref().map(super::expand_home);
        if let Some(path) = &key_file {
            check_key_file(path).map_err(|reason| SshError::KeyFile {
                host: host.clone(),
                path: path.clone(),
                reason,
            })?;
        }
        let socket = tcp_connect(destination, options.connect_timeout)
            .map_err(|reason| SshError::Connect { host: host.clone(), reason })?;
        let handshake_error = |source| SshError::Handshake { host: host.clone(), source };
        let mut inner = ssh2::Session::new().map_err(handshake_error)?;
        inner.set_timeout(millis(options.io_timeout));
        inner.method_pref(MethodType::Kex, KEX_PREFERENCE).map_err(handshake_error)?;
        let handle = socket
            .try_clone()
            .map_err(|error| SshError::Connect { host: host.clone(), reason: ConnectFailure::Socket { error } })?;
        inner.set_tcp_stream(handle);
        inner.handshake().map_err(handshake_error)?;
        let known_hosts = super::expand_home(&options.known_hosts);
        known_hosts::verify(&inner, destination, &known_hosts, options.insecure_accept_new_host_keys)?;
        authenticate(&inner, destination, key_file.as_deref())?;
        Ok(Session { inner, socket, destination: destination.clone(), io_timeout: options.io_timeout, sftp: None })
    }

    /// The host this session talks to.
    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// Runs `command` with the user's shell on the host and collects its output; after `timeout` the command's
    /// process group is killed on the host and [`SshError::Timeout`] returned. A non-zero exit is not an error here.
    /// The login shell must be POSIX-like (`sh`, `bash`, `dash`): the command is prefixed with `echo $$ >&2;`.
    /// Background processes meant to outlive a timed-out command must leave its process group (`setsid`).
    pub fn exec(&mut self, command: &str, timeout: Duration) -> Result<CommandOutput, SshError> {
        let (status, stdout, stderr) = self.run(command, timeout)?;
        Ok(CommandOutput { status, stdout: lossy(stdout), stderr })
    }

    /// Like [`Session::exec`], but a non-zero exit status is an [`SshError::Failed`].
    pub fn exec_ok(&mut self, command: &str, timeout: Duration) -> Result<CommandOutput, SshError> {
        let output = self.exec(command, timeout)?;
        if output.success() { Ok(output) } else { Err(self.failed(command, output.status, &output.stderr)) }
    }

    /// Like [`Session::exec_ok`], but returns stdout's bytes as the host sent them, for callers that count bytes
    /// (decoding would change the length of invalid UTF-8 or of a character cut at the end).
    pub fn exec_ok_bytes(&mut self, command: &str, timeout: Duration) -> Result<Vec<u8>, SshError> {
        let (status, stdout, stderr) = self.run(command, timeout)?;
        if status == 0 { Ok(stdout) } else { Err(self.failed(command, status, &stderr)) }
    }

    fn failed(&self, command: &str, status: i32, stderr: &str) -> SshError {
        SshError::Failed {
            host: self.destination.to_string(),
            command: command.into(),
            status,
            stderr: stderr.trim().into(),
        }
    }

    /// [`Session::exec`] with stdout undecoded: `(status, stdout, stderr)`.
    fn run(&mut self, command: &str, timeout: Duration) -> Result<(i32, Vec<u8>, String), SshError> {
        // sshd makes the command's shell a session and process-group leader; its PID ($$) lets a timeout kill the
        // whole group. It arrives as the first stderr line and is removed from the output.
        let wrapped = format!("echo $$ >&2; {command}");
        let host = self.destination.to_string();
        let exec_error = |reason: String| SshError::Exec { host: host.clone(), command: command.into(), reason };
        let mut channel =
            self.inner.channel_session().map_err(|e| exec_error(format!("cannot open a channel: {e}")))?;
        channel.exec(&wrapped).map_err(|e| exec_error(format!("cannot start: {e}")))?;
        let deadline = Instant::now() + timeout;
        self.inner.set_blocking(false);
        let read = self.read_until_eof(&mut channel, deadline);
        self.inner.set_blocking(true);
        let (stdout, stderr, finished) = read.map_err(|e| exec_error(format!("cannot read its output: {e}")))?;
        let (pid, stderr) = split_pid_line(&lossy(stderr));
        if !finished {
            // sshd answers a channel close only once the command has exited, so kill first, then close.
            if let Some(pid) = pid {
                self.kill_group(pid);
                let _ = channel.close();
            } else {
                // Nothing to kill by: drop the channel without waiting for the command.
                self.inner.set_blocking(false);
                drop(channel);
                self.inner.set_blocking(true);
            }
            return Err(SshError::Timeout {
                host: self.destination.to_string(),
                command: command.into(),
                timeout,
                stdout: lossy(stdout),
                stderr: stderr.trim().into(),
            });
        }
        channel.wait_close().map_err(|e| exec_error(format!("cannot close the channel: {e}")))?;
        let status = match channel.exit_signal() {
            Ok(signal) if signal.exit_signal.is_some() => -1,
            _ => channel.exit_status().map_err(|e| exec_error(format!("no exit status: {e}")))?,
        };
        Ok((status, stdout, stderr))
    }

    /// Uploads `local` to `remote` with permissions `mode` (e.g. `0o755`) over SFTP, creating its folder; skipped
    /// when the remote file's sha256 already matches (its mode is still set). Returns whether bytes were sent.
    /// The file is written next to `remote` and renamed over it, so a running binary can be replaced.
    pub fn upload(&mut self, local: &Path, remote: &str, mode: u32) -> Result<bool, SshError> {
        let host = self.destination.to_string();
        let transfer_error = |fault: Fault| fault.into_error(&host, "upload to", remote);
        let local_sum = sha256_file(local)
            .map_err(|e| transfer_error(Fault::Local(format!("cannot read {}: {e}", local.display()))))?;
        let quoted = shell_quote(remote);
        let folder = remote.rsplit_once('/').map(|(folder, _)| folder).filter(|f| !f.is_empty()).unwrap_or("/");
        let probe = format!(
            "mkdir -p -- {folder} && if [ -f {quoted} ]; then chmod {mode:o} -- {quoted} && sha256sum -- {quoted}; fi",
            folder = shell_quote(folder)
        );
        let remote_sum = self.exec_ok(&probe, self.io_timeout)?.stdout;
        if remote_sum.split_whitespace().next() == Some(local_sum.as_str()) {
            return Ok(false);
        }
        let partial = format!("{remote}.partial");
        self.send_file(local, &partial, mode).map_err(transfer_error)?;
        let sftp = self.sftp().map_err(|e| transfer_error(Fault::Remote(format!("cannot start SFTP: {e}"))))?;
        // OpenSSH's SFTP rename refuses to replace an existing file.
        let _ = sftp.unlink(Path::new(remote));
        sftp.rename(Path::new(&partial), Path::new(remote), None)
            .map_err(|e| transfer_error(Fault::Remote(format!("cannot rename {partial} into place: {e}"))))?;
        Ok(true)
    }

    /// Downloads `remote` into `local` over SFTP (creating `local`'s folder; written to `local.partial` and renamed,
    /// so a failed download leaves no truncated file). Returns the number of bytes.
    pub fn download(&mut self, remote: &str, local: &Path) -> Result<u64, SshError> {
        let host = self.destination.to_string();
        let transfer_error = |fault: Fault| fault.into_error(&host, "download of", remote);
        let remote_error = |reason: String| transfer_error(Fault::Remote(reason));
        let local_error = |e: std::io::Error| transfer_error(Fault::Local(format!("into {}: {e}", local.display())));
        let sftp = self.sftp().map_err(|e| remote_error(format!("cannot start SFTP: {e}")))?;
        let mut source = sftp.open(Path::new(remote)).map_err(|e| remote_error(format!("cannot open: {e}")))?;
        if let Some(folder) = local.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)
                .map_err(|e| transfer_error(Fault::Local(format!("cannot create {}: {e}", folder.display()))))?;
        }
        let mut partial_name = local.as_os_str().to_owned();
        partial_name.push(".partial");
        let partial = PathBuf::from(partial_name);
        let mut sink = std::fs::File::create(&partial).map_err(local_error)?;
        // Read and write apart (not io::copy) so that an error says which side failed.
        let mut buffer = vec![0u8; TRANSFER_CHUNK];
        let mut bytes = 0;
        loop {
            let read = match source.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(remote_error(format!("cannot read: {e}"))),
            };
            sink.write_all(&buffer[..read]).map_err(local_error)?;
            bytes += read as u64;
        }
        drop(sink);
        std::fs::rename(&partial, local).map_err(local_error)?;
        Ok(bytes)
    }

    /// Reads stdout and stderr until the command closes them or the deadline passes (`finished == false`).
    /// Both streams are drained as data comes: reading one while the other fills the channel window would stall.
    fn read_until_eof(
        &self,
        channel: &mut ssh2::Channel,
        deadline: Instant,
    ) -> std::io::Result<(Vec<u8>, Vec<u8>, bool)> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            let mut progressed = read_available(channel, &mut buffer, &mut stdout)?;
            progressed |= read_available(&mut channel.stderr(), &mut buffer, &mut stderr)?;
            if progressed {
                continue;
            }
            if channel.eof() {
                return Ok((stdout, stderr, true));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok((stdout, stderr, false));
            }
            self.wait_for_socket((deadline - now).min(POLL_SLICE))?;
        }
    }

    /// Waits until the socket can move data in the direction libssh2 is waiting for, or `limit` passes.
    fn wait_for_socket(&self, limit: Duration) -> std::io::Result<()> {
        let mut flags = PollFlags::POLLIN;
        if matches!(self.inner.block_directions(), BlockDirections::Outbound | BlockDirections::Both) {
            flags |= PollFlags::POLLOUT;
        }
        let mut fds = [PollFd::new(self.socket.as_fd(), flags)];
        let timeout = PollTimeout::try_from(limit).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Kills the process group of a timed-out command (best effort: the command already failed).
    fn kill_group(&mut self, pid: u32) {
        let kill = format!("kill -KILL -- -{pid} 2>/dev/null; kill -KILL {pid} 2>/dev/null; true");
        let result = self.inner.channel_session().and_then(|mut channel| {
            channel.exec(&kill)?;
            let mut ignored = String::new();
            let _ = channel.read_to_string(&mut ignored);
            channel.wait_close()
        });
        if let Err(error) = result {
            tracing::warn!(host = %self.destination, pid, %error, "could not kill a timed-out command");
        }
    }

    fn sftp(&mut self) -> Result<&ssh2::Sftp, ssh2::Error> {
        if self.sftp.is_none() {
            self.sftp = Some(self.inner.sftp()?);
        }
        Ok(self.sftp.as_ref().expect("just set"))
    }

    fn send_file(&mut self, local: &Path, remote: &str, mode: u32) -> Result<(), Fault> {
        let cannot_read = |e: std::io::Error| Fault::Local(format!("cannot read {}: {e}", local.display()));
        let mut source = std::fs::File::open(local).map_err(cannot_read)?;
        let sftp = self.sftp().map_err(|e| Fault::Remote(format!("cannot start SFTP: {e}")))?;
        let flags = OpenFlags::WRITE | OpenFlags::TRUNCATE;
        let mut sink = sftp
            .open_mode(Path::new(remote), flags, mode as i32, OpenType::File)
            .map_err(|e| Fault::Remote(format!("cannot create {remote}: {e}")))?;
        // Large writes let libssh2 keep many SFTP packets in flight; std::io::copy's 8 KiB ones wait for acks.
        let mut buffer = vec![0u8; TRANSFER_CHUNK];
        loop {
            let read = source.read(&mut buffer).map_err(cannot_read)?;
            if read == 0 {
                break;
            }
            sink.write_all(&buffer[..read]).map_err(|e| Fault::Remote(format!("cannot write {remote}: {e}")))?;
        }
        // The creation mode passes through the SFTP server's umask; set it explicitly.
        let stat = ssh2::FileStat { size: None, uid: None, gid: None, perm: Some(mode), atime: None, mtime: None };
        sink.setstat(stat).map_err(|e| Fault::Remote(format!("cannot chmod {remote}: {e}")))?;
        sink.close().map_err(|e| Fault::Remote(format!("cannot close {remote}: {e}")))
    }
}

/// Bytes handed to libssh2 per SFTP read or write.
const TRANSFER_CHUNK: usize = 1 << 20;

/// Which side a transfer failed on: a local file's failure leaves the session usable.
enum Fault {
    /// Reading or writing a file on this machine.
    Local(String),
    /// The SFTP channel or the host's file.
    Remote(String),
}

impl Fault {
    fn into_error(self, host: &str, action: &'static str, path: &str) -> SshError {
        let (local, reason) = match self {
            Fault::Local(reason) => (true, reason),
            Fault::Remote(reason) => (false, reason),
        };
        SshError::Transfer { host: host.into(), action, path: path.into(), reason, local }
    }
}

fn tcp_connect(destination: &Destination, timeout: Duration) -> Result<TcpStream, ConnectFailure> {
    let addresses = (destination.address.as_str(), destination.port)
        .to_socket_addrs()
        .map_err(|error| ConnectFailure::Resolve { address: destination.address.clone(), error })?;
    let mut last = ConnectFailure::NoAddress { address: destination.address.clone() };
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(socket) => {
                // Commands are small request/response exchanges: no Nagle delay.
                let _ = socket.set_nodelay(true);
                return Ok(socket);
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => last = ConnectFailure::NoAnswer { address, timeout },
            Err(error) => last = ConnectFailure::Refused { address, error },
        }
    }
    Err(last)
}

fn authenticate(session: &ssh2::Session, destination: &Destination, key_file: Option<&Path>) -> Result<(), SshError> {
    let host = destination.to_string();
    let (method, result) = match key_file {
        Some(key) => {
            let method = format!("key file {}", key.display());
            let result = session.userauth_pubkey_file(&destination.user, None, key, None);
            (method, result)
        }
        None => ("ssh-agent".to_string(), session.userauth_agent(&destination.user)),
    };
    match result {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) => {
            let source = ssh2::Error::new(ssh2::ErrorCode::Session(-18), "not authenticated after the key was offered");
            Err(SshError::Auth { host, method, source })
        }
        Err(source) => Err(SshError::Auth { host, method, source }),
    }
}

/// Why the private key at `path` cannot be used from this machine, if it cannot.
fn check_key_file(path: &Path) -> Result<(), KeyFileProblem> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {
            std::fs::File::open(path).map(drop).map_err(|error| KeyFileProblem::Unreadable { error })
        }
        Ok(_) => Err(KeyFileProblem::NotAFile),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(KeyFileProblem::Missing),
        Err(error) => Err(KeyFileProblem::Unreadable { error }),
    }
}

/// Appends what `stream` has now; `Ok(false)` when nothing was available.
fn read_available(stream: &mut impl Read, buffer: &mut [u8], into: &mut Vec<u8>) -> std::io::Result<bool> {
    match stream.read(buffer) {
        Ok(0) => Ok(false),
        Ok(n) => {
            into.extend_from_slice(&buffer[..n]);
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// Splits the PID line the wrapper prints first on stderr from the command's own stderr.
fn split_pid_line(stderr: &str) -> (Option<u32>, String) {
    match stderr.split_once('\n') {
        Some((first, rest)) => match first.trim().parse() {
            Ok(pid) => (Some(pid), rest.to_string()),
            Err(_) => (None, stderr.to_string()),
        },
        None => (stderr.trim().parse().ok(), String::new()),
    }
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// Hex sha256 of a local file, as `sha256sum` prints it.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_print_as_user_at_address_port() {
        let d = Destination { user: "root".into(), address: "10.200.0.11".into(), port: 22 };
        assert_eq!(d.to_string(), "root@10.200.0.11:22");
        let d = Destination { user: "u".into(), address: "fe80::1".into(), port: 2222 };
        assert_eq!(d.to_string(), "u@[fe80::1]:2222");
    }

    #[test]
    fn the_pid_line_is_split_off() {
        assert_eq!(split_pid_line("123\nboom\n"), (Some(123), "boom\n".to_string()));
        assert_eq!(split_pid_line("123\n"), (Some(123), String::new()));
        assert_eq!(split_pid_line("not a pid\nx"), (None, "not a pid\nx".to_string()));
        assert_eq!(split_pid_line(""), (None, String::new()));
    }

    #[test]
    fn local_checksum_matches_sha256sum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "abc").unwrap();
        assert_eq!(sha256_file(&path).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn a_refused_connection_names_the_host() {
        // Port 1 on loopback: nothing listens there.
        let d = Destination { user: "root".into(), address: "127.0.0.1".into(), port: 1 };
        let error = Session::connect(&d, &SessionOptions::default()).unwrap_err();
        assert!(matches!(error, SshError::Connect { .. }), "{error}");
        assert!(error.to_string().contains("root@127.0.0.1:1"), "{error}");
    }

    #[test]
    fn a_missing_key_file_is_named_before_connecting() {
        // Port 1 on loopback would refuse: the key file is looked at first.
        let d = Destination { user: "root".into(), address: "127.0.0.1".into(), port: 1 };
        let options = SessionOptions { key_file: Some("/nonexistent/id_ed25519".into()), ..SessionOptions::default() };
        let error = Session::connect(&d, &options).unwrap_err();
        assert!(matches!(error, SshError::KeyFile { .. }), "{error}");
        let text = error.to_string();
        assert!(text.contains("/nonexistent/id_ed25519") && text.contains("does not exist on this machine"), "{text}");
        assert!(!text.contains("authorized_keys"), "{text}");
    }
}
