//! Metrics, plots, reports and the regression gate (filled by the analysis issue).
