//! The config file every component shares (TOML, or JSON like the original prototype's `burst.config.json`),
//! with one section per component: `[controller]`, `[worker]`, `[cli]`. Each component owns its section's type
//! and reads only that section; unknown keys in a section are errors, so a typo does not pass in silence.
//!
//! Precedence, everywhere: command-line flag, then `BURST_*` environment variable, then this file, then the
//! built-in default.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Reads section `section` of the config file at `path` (`.json` is JSON; anything else is TOML).
/// A missing section is the type's default.
pub fn load_section<T: DeserializeOwned + Default>(path: &Path, section: &str) -> Result<T, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    parse_section(path, &text, section)
}

fn parse_section<T: DeserializeOwned + Default>(path: &Path, text: &str, section: &str) -> Result<T, ConfigError> {
    let parse_err = |message: String| ConfigError::Parse { path: path.to_path_buf(), message };
    let value: serde_json::Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?
    } else {
        let table: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        serde_json::to_value(table).map_err(|e| parse_err(e.to_string()))?
    };
    match value.get(section) {
        None | Some(serde_json::Value::Null) => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| parse_err(format!("[{section}]: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Section {
        listen: Option<String>,
        slots: Option<u32>,
    }

    #[test]
    fn toml_and_json_sections_read_alike() {
        let toml = parse_section::<Section>(Path::new("b.toml"), "[worker]\nslots = 3\n", "worker").unwrap();
        let json = parse_section::<Section>(Path::new("b.json"), r#"{"worker":{"slots":3}}"#, "worker").unwrap();
        assert_eq!(toml, json);
        assert_eq!(toml.slots, Some(3));
    }

    #[test]
    fn a_missing_section_is_the_default() {
        let s = parse_section::<Section>(Path::new("b.toml"), "[cli]\n", "worker").unwrap();
        assert_eq!(s, Section::default());
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_section() {
        let err = parse_section::<Section>(Path::new("b.toml"), "[worker]\nslot = 3\n", "worker").unwrap_err();
        assert!(err.to_string().contains("[worker]"), "{err}");
        assert!(err.to_string().contains("slot"), "{err}");
    }
}
