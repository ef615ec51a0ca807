//! The executables a run starts: `dirigent` and `trace-function` (and `loader`, which a cluster run starts on its
//! loader host), found on this machine.

use std::path::{Path, PathBuf};

/// Why the executables were not found.
#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    /// "dirigent and trace-function not found in {looked}; build them ... or set platform.bin_dir".
    #[error(
        "dirigent and trace-function not found in {looked}; build them with `cargo build --release -p orchestrator \
         --bins` or set platform.bin_dir"
    )]
    NotFound {
        /// The folders looked in, comma-separated.
        looked: String,
    },
    /// "a cluster run starts the loader on the loader host, but no loader binary is beside {dirigent}; ...".
    #[error(
        "a cluster run starts the loader on the loader host, but no loader binary is beside {dirigent}; build it \
         with `cargo build --release -p loader`",
        dirigent = .dirigent.display()
    )]
    NoLoader {
        /// The `dirigent` binary found.
        dirigent: PathBuf,
    },
}

/// The executables of the bundled orchestrator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Binaries {
    /// `dirigent`.
    pub dirigent: PathBuf,
    /// `trace-function`, the image every function runs.
    pub trace_function: PathBuf,
    /// `loader`, when it was built beside them (a cluster run starts it on the loader host).
    pub loader: Option<PathBuf>,
}

impl Binaries {
    /// Finds both in `dir`, else beside the running executable, else in `target/release`.
    pub fn locate(dir: Option<&Path>) -> Result<Self, BinariesError> {
        let candidates: Vec<PathBuf> = match dir {
            Some(dir) => vec![dir.to_owned()],
            None => {
                let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_owned));
                beside.into_iter().chain([PathBuf::from("target/release")]).collect()
            }
        };
        for dir in &candidates {
            let (dirigent, trace_function) = (dir.join("dirigent"), dir.join("trace-function"));
            if dirigent.is_file() && trace_function.is_file() {
                let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
                let loader = Some(dir.join("loader")).filter(|path| path.is_file()).map(absolute);
                return Ok(Binaries { dirigent: absolute(dirigent), trace_function: absolute(trace_function), loader });
            }
        }
        let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
        Err(BinariesError::NotFound { looked: looked.join(", ") })
    }

    /// The `loader` binary, which a cluster run needs.
    pub fn loader(&self) -> Result<&Path, BinariesError> {
        self.loader.as_deref().ok_or_else(|| BinariesError::NoLoader { dirigent: self.dirigent.clone() })
    }
}
