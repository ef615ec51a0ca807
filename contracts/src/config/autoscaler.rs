//! The per-function autoscaler's settings (Knative KPA style; the policy itself is the orchestrator's
//! `control_plane::autoscaler`), with the same lower bounds as Knative's config validation.

use std::time::Duration;

/// Autoscaling settings (YAML, every field has a default).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoscalerConfig {
    /// Length of the window whose average concurrency drives stable-mode decisions.
    #[serde(with = "humantime_serde")]
    pub stable_window: Duration,
    /// Length of the short window whose average detects bursts (panic mode).
    #[serde(with = "humantime_serde")]
    pub panic_window: Duration,
    /// Panic when the panic-window demand reaches this multiple of the ready sandboxes (2.0 = 200%).
    pub panic_threshold: f64,
    /// Concurrent requests one sandbox should serve.
    pub target_concurrency: f64,
    /// At most this many times the ready sandboxes may be asked for in one decision.
    pub max_scale_up_rate: f64,
    /// At most the ready sandboxes divided by this may be released in one decision.
    pub max_scale_down_rate: f64,
    /// Interval between samples (and decisions); also the averaging bucket width.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        Self {
            stable_window: Duration::from_secs(60),
            panic_window: Duration::from_secs(6),
            panic_threshold: 2.0,
            target_concurrency: 1.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            tick: Duration::from_secs(2),
        }
    }
}

/// An invalid [`AutoscalerConfig`] value; every message names the offending key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AutoscalerConfigError {
    /// "`{key}` must be greater than zero"
    #[error("`{key}` must be greater than zero")]
    ZeroDuration {
        /// The configuration key.
        key: &'static str,
    },
    /// "`panic_window` ({panic:?}) must not be longer than `stable_window` ({stable:?})"
    #[error("`panic_window` ({panic:?}) must not be longer than `stable_window` ({stable:?})")]
    PanicWindowTooLong {
        /// The configured panic window.
        panic: Duration,
        /// The configured stable window.
        stable: Duration,
    },
    /// "`{key}` = {value} must be a finite number greater than {bound}"
    #[error("`{key}` = {value} must be a finite number greater than {bound}")]
    NotAbove {
        /// The configuration key.
        key: &'static str,
        /// The rejected value.
        value: f64,
        /// The exclusive lower bound.
        bound: f64,
    },
}

impl AutoscalerConfig {
    /// Checks every field, reporting the first bad key.
    pub fn validate(&self) -> Result<(), AutoscalerConfigError> {
        for (key, value) in
            [("stable_window", self.stable_window), ("panic_window", self.panic_window), ("tick", self.tick)]
        {
            if value.is_zero() {
                return Err(AutoscalerConfigError::ZeroDuration { key });
            }
        }
        if self.panic_window > self.stable_window {
            return Err(AutoscalerConfigError::PanicWindowTooLong {
                panic: self.panic_window,
                stable: self.stable_window,
            });
        }
        // Same lower bounds as Knative's config validation: a rate of 1 would freeze scaling in that
        // direction, a threshold of 1 would panic on any load above target.
        for (key, value, bound) in [
            ("panic_threshold", self.panic_threshold, 1.0),
            ("target_concurrency", self.target_concurrency, 0.0),
            ("max_scale_up_rate", self.max_scale_up_rate, 1.0),
            ("max_scale_down_rate", self.max_scale_down_rate, 1.0),
        ] {
            // Written so that NaN fails too.
            if !(value.is_finite() && value > bound) {
                return Err(AutoscalerConfigError::NotAbove { key, value, bound });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn default_config_is_valid() {
        assert_eq!(AutoscalerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn validation_names_the_bad_key() {
        let base = AutoscalerConfig::default;
        let cases: [(AutoscalerConfig, &str); 11] = [
            (AutoscalerConfig { stable_window: Duration::ZERO, ..base() }, "stable_window"),
            (AutoscalerConfig { panic_window: Duration::ZERO, ..base() }, "panic_window"),
            (AutoscalerConfig { panic_window: secs(61), ..base() }, "panic_window"),
            (AutoscalerConfig { tick: Duration::ZERO, ..base() }, "tick"),
            (AutoscalerConfig { panic_threshold: 1.0, ..base() }, "panic_threshold"),
            (AutoscalerConfig { target_concurrency: 0.0, ..base() }, "target_concurrency"),
            (AutoscalerConfig { target_concurrency: f64::NAN, ..base() }, "target_concurrency"),
            (AutoscalerConfig { max_scale_up_rate: 1.0, ..base() }, "max_scale_up_rate"),
            (AutoscalerConfig { max_scale_up_rate: f64::INFINITY, ..base() }, "max_scale_up_rate"),
            (AutoscalerConfig { max_scale_down_rate: 1.0, ..base() }, "max_scale_down_rate"),
            (AutoscalerConfig { max_scale_down_rate: -2.0, ..base() }, "max_scale_down_rate"),
        ];
        for (config, key) in cases {
            let err = config.validate().expect_err(key);
            assert!(err.to_string().contains(key), "{err} should name {key}");
        }
        // A panic window equal to the stable window is allowed.
        let equal = AutoscalerConfig { panic_window: secs(60), ..base() };
        assert_eq!(equal.validate(), Ok(()));
    }

    #[test]
    fn error_messages() {
        assert_eq!(AutoscalerConfigError::ZeroDuration { key: "tick" }.to_string(), "`tick` must be greater than zero");
        assert_eq!(
            AutoscalerConfigError::PanicWindowTooLong { panic: secs(10), stable: secs(6) }.to_string(),
            "`panic_window` (10s) must not be longer than `stable_window` (6s)"
        );
        assert_eq!(
            AutoscalerConfigError::NotAbove { key: "max_scale_down_rate", value: 0.5, bound: 1.0 }.to_string(),
            "`max_scale_down_rate` = 0.5 must be a finite number greater than 1"
        );
    }

    #[test]
    fn config_serde_uses_defaults_and_humantime() {
        let c: AutoscalerConfig =
            serde_json::from_str(r#"{"stable_window": "30s", "panic_threshold": 3.0}"#).expect("valid json");
        assert_eq!(
            c,
            AutoscalerConfig { stable_window: secs(30), panic_threshold: 3.0, ..AutoscalerConfig::default() }
        );
        let json = serde_json::to_string(&AutoscalerConfig::default()).expect("serializes");
        assert!(json.contains(r#""stable_window":"1m""#), "{json}");
        let back: AutoscalerConfig = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back, AutoscalerConfig::default());
        assert!(serde_json::from_str::<AutoscalerConfig>(r#"{"stable_windw": "30s"}"#).is_err());
    }

    #[test]
    fn config_from_yaml() {
        let c: AutoscalerConfig =
            crate::yaml::parse("panic_window: 4s\ntick: 500ms\nmax_scale_up_rate: 10\n").expect("valid yaml");
        assert_eq!(
            c,
            AutoscalerConfig {
                panic_window: secs(4),
                tick: Duration::from_millis(500),
                max_scale_up_rate: 10.0,
                ..AutoscalerConfig::default()
            }
        );
        assert_eq!(c.validate(), Ok(()));
    }
}
