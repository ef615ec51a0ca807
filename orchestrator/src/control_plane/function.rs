//! A function's registered specification, and its parsing from the two registration APIs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a user registers: the function and how it scales.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Unique name; also the `Host` the data plane routes by, so a DNS label.
    pub name: String,
    /// The image; for the process runtime, an executable path (a bare name is looked up beside `dirigent`,
    /// then on `PATH`).
    pub image: String,
    /// Arguments to the image's entry point.
    #[serde(default)]
    pub args: Vec<String>,
    /// Port the function serves on inside its sandbox (the process runtime assigns its own).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Extra environment for the sandbox.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// CPU request per sandbox, millicores.
    #[serde(default)]
    pub cpu_millis: u64,
    /// Memory request per sandbox, MiB.
    #[serde(default)]
    pub memory_mib: u64,
    /// Fewest sandboxes, also with no traffic.
    #[serde(default)]
    pub min_scale: u32,
    /// Most sandboxes.
    #[serde(default = "default_max_scale")]
    pub max_scale: u32,
    /// Requests one sandbox serves at once.
    #[serde(default = "default_concurrency")]
    pub container_concurrency: u32,
    /// Scale to zero at the first autoscaler tick without traffic (the cold-start sweep's setting).
    #[serde(default)]
    pub cold_start_sweep: bool,
}

fn default_port() -> u16 {
    80
}

fn default_max_scale() -> u32 {
    1000
}

fn default_concurrency() -> u32 {
    1
}

/// A registration request is invalid; the message names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// a required field is missing
    #[error("missing field '{0}'")]
    Missing(&'static str),
    /// a field's value is not what it must be
    #[error("field '{field}': {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// the JSON body does not parse
    #[error("invalid JSON body: {0}")]
    Json(String),
}

fn invalid(field: &'static str, problem: impl Into<String>) -> SpecError {
    SpecError::Invalid { field, problem: problem.into() }
}

impl FunctionSpec {
    /// Checks the fields a parser cannot: the name's shape, scale bounds, concurrency.
    pub fn validate(&self) -> Result<(), SpecError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !self.name.starts_with('-')
            && !self.name.ends_with('-');
        if !name_ok {
            return Err(invalid("name", format!("'{}' is not a DNS label (a-z, 0-9, '-', at most 63)", self.name)));
        }
        if self.image.trim().is_empty() {
            return Err(SpecError::Missing("image"));
        }
        if self.min_scale > self.max_scale {
            return Err(invalid(
                "min_scale",
                format!("lower bound {} is above the upper bound {}", self.min_scale, self.max_scale),
            ));
        }
        if self.container_concurrency == 0 {
            return Err(invalid("container_concurrency", "must be at least 1"));
        }
        Ok(())
    }

    /// Parses `POST /v1/functions`.
    pub fn from_json(body: &[u8]) -> Result<Self, SpecError> {
        let spec: Self = serde_json::from_slice(body).map_err(|e| SpecError::Json(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Parses Dirigent's `POST /registerService` form (`name`, `image`, `port_forwarding` twice,
    /// `requested_cpu`, `requested_memory`, `scaling_upper_bound`, `scaling_lower_bound`, `cold_start_sweep`).
    ///
    /// The image may carry arguments after whitespace. Fields this API does not know are ignored, as
    /// Dirigent's own API does, so that newer loaders keep working.
    pub fn from_form(body: &[u8]) -> Result<Self, SpecError> {
        let fields: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|e| invalid("body", format!("not a form: {e}")))?;
        let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim());
        let name = get("name").ok_or(SpecError::Missing("name"))?.to_owned();
        let mut words = get("image").ok_or(SpecError::Missing("image"))?.split_whitespace().map(str::to_owned);
        let image = words.next().ok_or(SpecError::Missing("image"))?;
        let mut spec = Self {
            name,
            image,
            args: words.collect(),
            port: default_port(),
            env: BTreeMap::new(),
            cpu_millis: number(get("requested_cpu"), "requested_cpu")?.unwrap_or(0),
            memory_mib: number(get("requested_memory"), "requested_memory")?.unwrap_or(0),
            min_scale: number(get("scaling_lower_bound"), "scaling_lower_bound")?.unwrap_or(0),
            max_scale: number(get("scaling_upper_bound"), "scaling_upper_bound")?.unwrap_or(default_max_scale()),
            container_concurrency: default_concurrency(),
            cold_start_sweep: flag(get("cold_start_sweep"))?,
        };
        // port_forwarding comes twice: the port, then the protocol.
        let forwarding: Vec<&str> =
            fields.iter().filter(|(k, _)| k == "port_forwarding").map(|(_, v)| v.as_str()).collect();
        if let Some(port) = forwarding.iter().find_map(|v| v.trim().parse::<u16>().ok()) {
            spec.port = port;
        } else if let Some(bad) = forwarding.iter().find(|v| v.chars().all(|c| c.is_ascii_digit() || c == '-')) {
            return Err(invalid("port_forwarding", format!("'{bad}' is not a port (1-65535)")));
        }
        spec.validate()?;
        Ok(spec)
    }
}

fn number<T: std::str::FromStr>(value: Option<&str>, field: &'static str) -> Result<Option<T>, SpecError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| v.parse::<T>().map_err(|_| invalid(field, format!("'{v}' is not a non-negative whole number"))))
        .transpose()
}

fn flag(value: Option<&str>) -> Result<bool, SpecError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(invalid("cold_start_sweep", format!("'{other}' is not true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirigent_form_parses() {
        let body = b"name=trace-f&image=%2Fbin%2Ftrace-function+--x&port_forwarding=80&port_forwarding=tcp\
            &requested_cpu=100&requested_memory=256&scaling_upper_bound=4&scaling_lower_bound=1&cold_start_sweep=false";
        let spec = FunctionSpec::from_form(body).unwrap();
        assert_eq!(spec.name, "trace-f");
        assert_eq!(spec.image, "/bin/trace-function");
        assert_eq!(spec.args, ["--x"]);
        assert_eq!((spec.port, spec.cpu_millis, spec.memory_mib), (80, 100, 256));
        assert_eq!((spec.min_scale, spec.max_scale), (1, 4));
        assert!(!spec.cold_start_sweep);
    }

    #[test]
    fn form_errors_name_the_field() {
        let err = FunctionSpec::from_form(b"image=x").unwrap_err();
        assert_eq!(err.to_string(), "missing field 'name'");
        let err = FunctionSpec::from_form(b"name=f&image=x&requested_cpu=abc").unwrap_err();
        assert_eq!(err.to_string(), "field 'requested_cpu': 'abc' is not a non-negative whole number");
        let err = FunctionSpec::from_form(b"name=f&image=x&scaling_lower_bound=3&scaling_upper_bound=2").unwrap_err();
        assert!(err.to_string().starts_with("field 'min_scale'"), "{err}");
        let err = FunctionSpec::from_form(b"name=F_1&image=x").unwrap_err();
        assert!(err.to_string().starts_with("field 'name'"), "{err}");
        let err = FunctionSpec::from_form(b"name=f&image=x&port_forwarding=99999").unwrap_err();
        assert!(err.to_string().starts_with("field 'port_forwarding'"), "{err}");
    }

    #[test]
    fn json_rejects_unknown_fields_with_location() {
        let err = FunctionSpec::from_json(br#"{"name":"f","image":"x","replicas":3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `replicas`"), "{err}");
        let spec = FunctionSpec::from_json(br#"{"name":"f","image":"x","max_scale":2}"#).unwrap();
        assert_eq!((spec.max_scale, spec.container_concurrency), (2, 1));
    }
}
