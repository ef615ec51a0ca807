//! Experiments on remote hosts over SSH (issue 5, in progress): what the runner does on each host, built on
//! [`crate::ssh`].

pub mod preflight;
