//! A real containerd for tests: its own root, state folder and socket under temporary folders, the CRI plugin
//! off, stopped when dropped together with every shim it started, its mounts and its folders. Needs root and
//! the `containerd` package (scripts/test.sh installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::script::PATIENCE;

/// A running containerd.
pub struct ContainerdDaemon {
    child: Child,
    dir: PathBuf,
    state: PathBuf,
    socket: PathBuf,
}

impl ContainerdDaemon {
    /// Starts one and waits until it answers; panics saying what to install or that root is needed.
    pub fn start() -> Self {
        assert!(nix::unistd::geteuid().is_root(), "containerd tests need root (run them through scripts/test.sh)");
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let tag = format!("{}-{}", std::process::id(), STARTED.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(format!("containerd-test-{tag}"));
        // The socket path must stay under the 108 bytes of a Unix socket address.
        let state = PathBuf::from(format!("/run/ctrd-test-{tag}"));
        let socket = state.join("containerd.sock");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let config = dir.join("config.toml");
        let text = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}\"\n",
            dir.join("root").display(),
            state.display(),
            socket.display(),
            state.join("ttrpc.sock").display(),
        );
        std::fs::write(&config, text).unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let log = std::fs::File::create(dir.join("containerd.log")).expect("containerd's log file");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run containerd ({e}): install containerd (apt-get install containerd)"));
        let mut daemon = Self { child, dir, state, socket };
        daemon.wait_until_it_answers();
        daemon
    }

    /// Its process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its root folder (images, snapshots, metadata).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// Runs `ctr --address <socket> -n <namespace> ARGS` and returns its stdout; panics with its stderr.
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> String {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", namespace])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ctr ({e}): install containerd"));
        assert!(output.status.success(), "ctr {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Imports an OCI archive into `namespace` (and unpacks it for the default snapshotter).
    pub fn import(&self, namespace: &str, archive: &Path) {
        let archive = archive.to_str().expect("a UTF-8 path");
        self.ctr(namespace, &["images", "import", archive]);
    }

    /// Packages `binary` (a copy without debug sections: a debug build is ten times larger) as the image
    /// `name` and imports it into `namespace`.
    pub fn import_binary(&self, namespace: &str, name: &str, binary: &Path) {
        use crate::worker::runtime::containerd::archive;
        let copy = self.dir.join(binary.file_name().expect("a file name"));
        std::fs::copy(binary, &copy).unwrap_or_else(|e| panic!("copying {}: {e}", binary.display()));
        let stripped = Command::new("strip").arg("--strip-debug").arg(&copy).status();
        assert!(stripped.is_ok_and(|s| s.success()), "strip failed on {}", copy.display());
        let mut files = archive::with_libraries(&copy).expect("the binary's libraries");
        files[0].path = format!("/{}", binary.file_name().and_then(|n| n.to_str()).unwrap_or("binary"));
        let command = [files[0].path.clone()];
        let tar = self.dir.join("image.oci.tar");
        archive::write(&tar, name, &files, &command).expect("writing the image archive");
        self.import(namespace, &tar);
    }

    fn wait_until_it_answers(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
                panic!("containerd exited ({status}) before it answered: {log}");
            }
            let version = Command::new("ctr").arg("--address").arg(&self.socket).arg("version").output();
            if version.is_ok_and(|output| output.status.success()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("containerd did not answer on {} within {PATIENCE:?}", self.socket.display());
    }

    /// The shims this containerd started (they outlive it): their command lines name its socket.
    fn shims(&self) -> Vec<i32> {
        let socket = self.socket.display().to_string();
        let Ok(processes) = std::fs::read_dir("/proc") else { return Vec::new() };
        processes
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                cmdline.contains("containerd-shim") && cmdline.contains(&socket)
            })
            .collect()
    }
}

impl Drop for ContainerdDaemon {
    fn drop(&mut self) {
        for shim in self.shims() {
            let _ = kill(Pid::from_raw(shim), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        unmount_under(&[&self.dir, &self.state]);
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Lazily unmounts everything mounted below these folders (rootfs overlays of tasks a failed test left).
fn unmount_under(folders: &[&Path]) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter(|target| folders.iter().any(|folder| Path::new(target).starts_with(folder)))
        .collect();
    // Deepest first.
    targets.sort_by_key(|target| std::cmp::Reverse(target.len()));
    for target in targets {
        let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
    }
}
