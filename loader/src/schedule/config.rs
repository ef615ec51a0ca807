//! Schedule configuration: inter-arrival distribution, seed, compression and clamping bounds.

use serde::{Deserialize, Serialize};

/// How a minute's invocation count becomes send times inside that minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IatDistribution {
    /// Poisson arrivals: exponential inter-arrival times rescaled to fill the minute (In-Vitro's `exponential`).
    #[default]
    Exponential,
    /// `n` independent uniform points in the minute, sorted.
    Uniform,
    /// Evenly spaced: one invocation every `60 s / n`.
    Equidistant,
}

/// Everything that shapes the schedule besides the trace itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// The one seed every random choice derives from.
    pub seed: u64,
    /// Inter-arrival distribution inside a minute.
    pub iat: IatDistribution,
    /// Rotate each function's arrivals in each minute by a random offset (wrapping inside the minute), as In-Vitro's
    /// `ShiftIAT` does, so that not every function fires at second 0.
    pub shift_within_minute: bool,
    /// Trace minutes per real minute (60 = one trace minute per real second); finite and > 0.
    pub compression: f64,
    /// Clamp for sampled execution times, milliseconds, `(min, max)` inclusive.
    pub duration_bounds_ms: (u32, u32),
    /// Clamp for sampled memory, MiB, `(min, max)` inclusive; `min` at least 1.
    pub memory_bounds_mib: (u32, u32),
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            iat: IatDistribution::Exponential,
            shift_within_minute: true,
            compression: 1.0,
            duration_bounds_ms: (1, 900_000),
            memory_bounds_mib: (1, 10_240),
        }
    }
}

/// A schedule config value that is out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleConfigError {
    /// "`compression` must be a finite number greater than 0 (trace minutes per real minute), got {0}".
    #[error("`compression` must be a finite number greater than 0 (trace minutes per real minute), got {0}")]
    Compression(f64),
    /// "`{key}` must be [min, max] with {floor} <= min <= max, got [{min}, {max}]".
    #[error("`{key}` must be [min, max] with {floor} <= min <= max, got [{min}, {max}]")]
    Bounds {
        /// The config key.
        key: &'static str,
        /// The smallest allowed `min`.
        floor: u32,
        /// The given minimum.
        min: u32,
        /// The given maximum.
        max: u32,
    },
}

impl ScheduleConfig {
    /// Checks every value's range; the error names the offending key.
    pub fn validate(&self) -> Result<(), ScheduleConfigError> {
        if !(self.compression.is_finite() && self.compression > 0.0) {
            return Err(ScheduleConfigError::Compression(self.compression));
        }
        check_bounds("duration_bounds_ms", 0, self.duration_bounds_ms)?;
        check_bounds("memory_bounds_mib", 1, self.memory_bounds_mib)?;
        Ok(())
    }
}

fn check_bounds(key: &'static str, floor: u32, (min, max): (u32, u32)) -> Result<(), ScheduleConfigError> {
    if min < floor || min > max {
        return Err(ScheduleConfigError::Bounds { key, floor, min, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_filled_in() {
        ScheduleConfig::default().validate().unwrap();
        let c: ScheduleConfig = serde_json::from_str(r#"{"seed": 7, "iat": "equidistant"}"#).unwrap();
        assert_eq!(c.seed, 7);
        assert_eq!(c.iat, IatDistribution::Equidistant);
        assert_eq!(c.compression, 1.0);
        assert_eq!(c.duration_bounds_ms, (1, 900_000));
    }

    #[test]
    fn unknown_keys_and_variants_are_rejected() {
        let e = serde_json::from_str::<ScheduleConfig>(r#"{"sed": 7}"#).unwrap_err().to_string();
        assert!(e.contains("sed"), "{e}");
        assert!(serde_json::from_str::<ScheduleConfig>(r#"{"iat": "Exponential"}"#).is_err());
        let c: ScheduleConfig = serde_json::from_str(r#"{"memory_bounds_mib": [128, 512]}"#).unwrap();
        assert_eq!(c.memory_bounds_mib, (128, 512));
    }

    #[test]
    fn validate_names_the_key() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let c = ScheduleConfig { compression: bad, ..Default::default() };
            assert!(c.validate().unwrap_err().to_string().contains("`compression`"));
        }
        let c = ScheduleConfig { duration_bounds_ms: (10, 5), ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("`duration_bounds_ms`"));
        let c = ScheduleConfig { memory_bounds_mib: (0, 5), ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("`memory_bounds_mib`"));
    }
}
