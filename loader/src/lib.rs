//! The trace-driven, open-loop load generator (filled by the loader issue).
