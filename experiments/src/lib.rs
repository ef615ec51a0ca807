//! Experiment specs and runners (filled by the experiments issues).
