//! Turning a trace into a deterministic schedule of invocations.
