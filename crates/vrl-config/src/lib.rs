//! Experiment files: one TOML file per experiment, with a complete default configuration, named presets
//! (`smoke` for a CPU, `paper` for the study's scale on CUDA) and `--set key.path=value` overrides.
//!
//! A study describes its configuration as a `serde` struct with `#[serde(deny_unknown_fields)]`;
//! [`ExperimentFile::resolve`] merges the defaults, the preset and the overrides and deserializes the
//! result, so an unknown key or a wrongly typed value is reported with its full key path and the type
//! that was expected.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use vrl_config::{ExperimentFile, Override};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Train { lr: f64, epochs: u32 }
//! #[derive(Debug, Serialize, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config { seed: u64, train: Train }
//!
//! let file = ExperimentFile::parse(r#"
//!     [experiment]
//!     name = "demo"
//!     description = "A demo."
//!     [config]
//!     seed = 0
//!     train = { lr = 0.1, epochs = 10 }
//!     [presets.smoke]
//!     description = "tiny"
//!     config = { train = { epochs = 1 } }
//! "#, "demo.toml").unwrap();
//!
//! let resolved = file
//!     .resolve::<Config>(Some("smoke"), &[Override::parse("train.lr=0.05").unwrap()])
//!     .unwrap();
//! assert_eq!(resolved.config.train.epochs, 1);
//! assert_eq!(resolved.config.train.lr, 0.05);
//!
//! let err = file
//!     .resolve::<Config>(Some("smoke"), &[Override::parse("train.lrr=1").unwrap()])
//!     .unwrap_err();
//! assert!(err.to_string().contains("train.lrr"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

mod catalog;
mod names;
pub use catalog::{Catalog, Problem, RESERVED_NAMES};
pub use names::{MAX_NAME_LEN, check_name};
mod range;
pub use range::{
    MAX_BATCH_SIZE, MAX_EPOCHS, MAX_EXAMPLES, MAX_IMAGE_SIZE, MAX_SAMPLES, MAX_SECONDS, MAX_SIZE, MAX_STEPS,
    MAX_THREADS, check_range, check_ranges, total_steps,
};
pub mod seed;

/// Everything that can go wrong while reading an experiment file or applying overrides.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The experiment file could not be read.
    #[error("cannot read experiment file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The directory of experiment files could not be listed.
    #[error("cannot read the experiments directory {path}: {source}")]
    ExperimentsDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Two experiment files declare the same experiment name.
    #[error(
        "experiment `{name}` is declared by two files, {first} and {second}; rename one (`[experiment] name`)"
    )]
    DuplicateExperiment {
        /// The name.
        name: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// No experiment file declares the name asked for.
    #[error(
        "unknown experiment `{name}`; available: {available}, tour (files in {dir}{})",
        if *unusable > 0 { format!("; {unusable} files there cannot be used: `vrl experiment` lists them") } else { String::new() }
    )]
    UnknownExperiment {
        /// The name asked for.
        name: String,
        /// The directory of experiment files.
        dir: PathBuf,
        /// The experiments that can run, comma-separated.
        available: String,
        /// How many files in the directory cannot be used.
        unusable: usize,
    },
    /// The file is not valid TOML or lacks a required section.
    #[error("experiment file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The preset named on the command line is not in the file.
    #[error("experiment `{experiment}` has no preset `{preset}`; available presets: {available}")]
    UnknownPreset {
        /// The experiment.
        experiment: String,
        /// The preset asked for.
        preset: String,
        /// The presets the file defines, comma-separated.
        available: String,
    },
    /// An override is not of the form `key.path=value`.
    #[error("override `{text}` is invalid: {message} (expected `key.path=value`, e.g. `train.lr=0.1`)")]
    BadOverride {
        /// The override as given.
        text: String,
        /// What was wrong.
        message: String,
    },
    /// The merged configuration does not fit the study's configuration type.
    #[error("config key `{key}` in experiment `{experiment}`: {message}")]
    Invalid {
        /// The experiment.
        experiment: String,
        /// The full key path, e.g. `train.lr`.
        key: String,
        /// What was wrong, including the expected type.
        message: String,
    },
}

/// One `--set key.path=value` override. The value is read as a TOML value (`0.1`, `true`, `"text"`,
/// `[1, 2]`); anything that is not valid TOML is taken as a string, so `--set device=cuda` works.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Key path segments, e.g. `["train", "lr"]`.
    pub path: Vec<String>,
    /// The value to set.
    pub value: Value,
}

impl Override {
    /// Parses `key.path=value`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad =
            |message: &str| ConfigError::BadOverride { text: text.to_string(), message: message.into() };
        let (key, raw) = text.split_once('=').ok_or_else(|| bad("no `=`"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(bad("empty key"));
        }
        let path: Vec<String> = key.split('.').map(|s| s.trim().to_string()).collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(bad("empty segment in key path"));
        }
        let raw = raw.trim();
        let value = match format!("v = {raw}").parse::<Table>() {
            Ok(mut t) if !raw.is_empty() => t.remove("v").ok_or_else(|| bad("no value"))?,
            _ => Value::String(raw.to_string()),
        };
        Ok(Override { path, value })
    }

    /// The dotted key, e.g. `train.lr`.
    pub fn key(&self) -> String {
        self.path.join(".")
    }
}

impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key(), self.value)
    }
}

/// A named preset: a partial configuration merged over the defaults.
#[derive(Debug, Clone)]
pub struct Preset {
    /// What the preset is for (shown by `vrl experiment`).
    pub description: String,
    /// The partial configuration.
    pub config: Table,
}

/// An experiment file: metadata, default configuration and presets.
#[derive(Debug, Clone)]
pub struct ExperimentFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Experiment name (`[experiment] name`).
    pub name: String,
    /// One-line description.
    pub description: String,
    /// The study that runs it (`[experiment] study`, else the name).
    pub study: String,
    /// The preset used when none is named (`[experiment] default_preset`, else `smoke`).
    pub default_preset: String,
    /// The complete default configuration (`[config]`).
    pub defaults: Table,
    /// Presets by name (`[presets.NAME]`).
    pub presets: BTreeMap<String, Preset>,
}

/// A configuration after defaults, preset and overrides were merged and checked.
#[derive(Debug, Clone)]
pub struct Resolved<T> {
    /// The typed configuration.
    pub config: T,
    /// The preset that was applied.
    pub preset: String,
    /// The overrides, in the order given.
    pub overrides: Vec<Override>,
    /// The configuration as TOML, with every default filled in (what `config.toml` of a run holds).
    pub toml: String,
}

impl<T> Resolved<T> {
    /// A run id derived from the preset and the overrides (not from the clock), so that the same
    /// command finds its run again: `smoke` without overrides, else `smoke-<16 hex digits>` of a
    /// hash of the normalised overrides (last one wins per key, sorted by key).
    pub fn run_id(&self) -> String {
        run_id(&self.preset, &self.overrides)
    }
}

/// See [`Resolved::run_id`].
pub fn run_id(preset: &str, overrides: &[Override]) -> String {
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for o in overrides {
        last.insert(o.key(), o.value.to_string());
    }
    if last.is_empty() {
        return preset.to_string();
    }
    let mut canonical = String::new();
    for (k, v) in &last {
        let _ = writeln!(canonical, "{k}={v}");
    }
    format!("{preset}-{:016x}", fnv1a64(canonical.as_bytes()))
}

/// FNV-1a, 64 bit: small, stable across platforms and releases (unlike `std`'s hasher).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl ExperimentFile {
    /// Reads and parses an experiment file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parses an experiment file from text; `path` is used in messages.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref().to_path_buf();
        let parse_err = |message: String| ConfigError::Parse { path: path.clone(), message };
        let mut root: Table = text.parse().map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        for key in root.keys() {
            if !["experiment", "config", "presets"].contains(&key.as_str()) {
                return Err(parse_err(format!(
                    "unknown top-level section `{key}` (expected `experiment`, `config`, `presets`)"
                )));
            }
        }
        let mut meta = take_table(&mut root, "experiment").map_err(&parse_err)?;
        let name = take_string(&mut meta, "experiment.name").map_err(&parse_err)?;
        check_name("experiment.name", &name).map_err(&parse_err)?;
        let description = take_string(&mut meta, "experiment.description").map_err(&parse_err)?;
        let default_preset = match meta.remove("default_preset") {
            None => "smoke".to_string(),
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(parse_err(format!(
                    "`experiment.default_preset` must be a string, found {}",
                    other.type_str()
                )));
            }
        };
        let study = match meta.remove("study") {
            None => name.clone(),
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(parse_err(format!(
                    "`experiment.study` must be a string, found {}",
                    other.type_str()
                )));
            }
        };
        if let Some(key) = meta.keys().next() {
            return Err(parse_err(format!(
                "unknown key `experiment.{key}` (expected `name`, `description`, `study`, `default_preset`)"
            )));
        }
        let defaults = take_table(&mut root, "config").map_err(&parse_err)?;
        let mut presets = BTreeMap::new();
        if let Some(value) = root.remove("presets") {
            let Value::Table(table) = value else {
                return Err(parse_err("`presets` must be a table of presets".into()));
            };
            for (preset_name, value) in table {
                check_name("[presets] name", &preset_name).map_err(&parse_err)?;
                let Value::Table(mut preset) = value else {
                    return Err(parse_err(format!("`presets.{preset_name}` must be a table")));
                };
                let description = take_string(&mut preset, &format!("presets.{preset_name}.description"))
                    .map_err(&parse_err)?;
                let config = match preset.remove("config") {
                    None => Table::new(),
                    Some(Value::Table(t)) => t,
                    Some(_) => {
                        return Err(parse_err(format!("`presets.{preset_name}.config` must be a table")));
                    }
                };
                if let Some(key) = preset.keys().next() {
                    return Err(parse_err(format!(
                        "unknown key `presets.{preset_name}.{key}` (expected `description`, `config`)"
                    )));
                }
                presets.insert(preset_name, Preset { description, config });
            }
        }
        check_name("experiment.default_preset", &default_preset).map_err(&parse_err)?;
        if !presets.contains_key(&default_preset) && !presets.is_empty() {
            return Err(parse_err(format!(
                "default preset `{default_preset}` is not defined under [presets]"
            )));
        }
        Ok(ExperimentFile { path, name, description, study, default_preset, defaults, presets })
    }

    /// Merges defaults, the preset (`None`: the default preset) and the overrides, in that order, and
    /// deserializes the result into `T`.
    pub fn resolve<T: DeserializeOwned + Serialize>(
        &self,
        preset: Option<&str>,
        overrides: &[Override],
    ) -> Result<Resolved<T>, ConfigError> {
        let preset_name = preset.unwrap_or(&self.default_preset).to_string();
        let mut table = self.defaults.clone();
        match self.presets.get(&preset_name) {
            Some(p) => merge(&mut table, &p.config),
            None if self.presets.is_empty() && preset.is_none() => {}
            None => {
                return Err(ConfigError::UnknownPreset {
                    experiment: self.name.clone(),
                    preset: preset_name,
                    available: self.presets.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        for o in overrides {
            set_path(&mut table, &o.path, o.value.clone()).map_err(|message| ConfigError::Invalid {
                experiment: self.name.clone(),
                key: o.key(),
                message,
            })?;
        }
        let config: T = from_table(table, &self.name)?;
        let toml = toml::to_string_pretty(&config).map_err(|e| ConfigError::Invalid {
            experiment: self.name.clone(),
            key: String::new(),
            message: format!("cannot be written back as TOML: {e}"),
        })?;
        Ok(Resolved { config, preset: preset_name, overrides: overrides.to_vec(), toml })
    }
}

/// Deserializes a table into `T`, naming the full key path of the first problem.
pub fn from_table<T: DeserializeOwned>(table: Table, experiment: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize::<_, T>(Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner().message().to_string();
        // serde names the unknown field itself; make the path point at it too.
        let key = match unknown_field(&inner) {
            Some(field) if key == "." => field.to_string(),
            Some(field) if !key.ends_with(field) => format!("{key}.{field}"),
            _ => key,
        };
        ConfigError::Invalid { experiment: experiment.to_string(), key, message: inner }
    })
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else is replaced.
pub fn merge(base: &mut Table, over: &Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Sets `path` in `table`, creating intermediate tables; fails if an intermediate key holds a non-table.
pub fn set_path(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key path")?;
    let mut cur = table;
    for (i, seg) in parents.iter().enumerate() {
        let entry = cur.entry(seg.clone()).or_insert_with(|| Value::Table(Table::new()));
        cur = match entry {
            Value::Table(t) => t,
            other => {
                return Err(format!(
                    "`{}` is a {}, not a table, so it has no key `{}`",
                    path[..=i].join("."),
                    other.type_str(),
                    path[i + 1]
                ));
            }
        };
    }
    cur.insert(last.clone(), value);
    Ok(())
}

fn take_table(t: &mut Table, key: &str) -> Result<Table, String> {
    match t.remove(key) {
        Some(Value::Table(t)) => Ok(t),
        Some(other) => Err(format!("`{key}` must be a table, found {}", other.type_str())),
        None => Err(format!("missing section `[{key}]`")),
    }
}

fn take_string(t: &mut Table, key: &str) -> Result<String, String> {
    let short = key.rsplit('.').next().unwrap_or(key);
    match t.remove(short) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("`{key}` must be a string, found {}", other.type_str())),
        None => Err(format!("missing key `{key}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Opt {
        name: String,
        lr: f64,
        #[serde(default)]
        nesterov: bool,
    }
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        seed: u64,
        device: String,
        optimizers: Vec<Opt>,
        train: Train,
    }
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Train {
        epochs: u32,
        batch_size: usize,
    }

    const FILE: &str = r#"
        [experiment]
        name = "t"
        description = "test"
        [config]
        seed = 1
        device = "auto"
        train = { epochs = 3, batch_size = 64 }
        [[config.optimizers]]
        name = "sgd"
        lr = 0.1
        [presets.smoke]
        description = "small"
        config = { train = { epochs = 1 } }
        [presets.paper]
        description = "big"
        config = { train = { epochs = 200 } }
    "#;

    fn file() -> ExperimentFile {
        ExperimentFile::parse(FILE, "t.toml").unwrap()
    }

    fn set(s: &str) -> Override {
        Override::parse(s).unwrap()
    }

    #[test]
    fn presets_and_overrides_merge_in_order() {
        let r = file().resolve::<Cfg>(Some("paper"), &[set("train.epochs=7"), set("device=cuda")]).unwrap();
        assert_eq!(r.config.train, Train { epochs: 7, batch_size: 64 });
        assert_eq!(r.config.device, "cuda");
        let r = file().resolve::<Cfg>(None, &[]).unwrap();
        assert_eq!(r.preset, "smoke");
        assert_eq!(r.config.train.epochs, 1);
        assert!(r.toml.contains("nesterov = false"), "defaults are written out: {}", r.toml);
    }

    #[test]
    fn unknown_key_names_full_path() {
        let e = file().resolve::<Cfg>(None, &[set("train.epochz=2")]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`train.epochz`"), "{msg}");
        assert!(msg.contains("expected `epochs` or `batch_size`"), "{msg}");
        let e = file().resolve::<Cfg>(None, &[set("bogus=2")]).unwrap_err();
        assert!(e.to_string().contains("`bogus`"), "{e}");
    }

    #[test]
    fn wrong_type_names_path_and_expected_type() {
        let e = file().resolve::<Cfg>(None, &[set("train.batch_size=big")]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`train.batch_size`"), "{msg}");
        assert!(msg.contains("expected usize"), "{msg}");
        let e = file().resolve::<Cfg>(None, &[set("optimizers=[{name='x', lr='fast'}]")]).unwrap_err();
        assert!(e.to_string().contains("optimizers[0].lr"), "{e}");
        let e = file().resolve::<Cfg>(None, &[set("seed.x=1")]).unwrap_err();
        assert!(e.to_string().contains("`seed` is a integer, not a table"), "{e}");
    }

    #[test]
    fn integers_are_accepted_for_floats() {
        let r = file().resolve::<Cfg>(None, &[set("optimizers=[{name='x', lr=1}]")]).unwrap();
        assert_eq!(r.config.optimizers[0].lr, 1.0);
    }

    #[test]
    fn unknown_preset_lists_available() {
        let e = file().resolve::<Cfg>(Some("huge"), &[]).unwrap_err();
        assert_eq!(e.to_string(), "experiment `t` has no preset `huge`; available presets: paper, smoke");
    }

    #[test]
    fn bad_overrides() {
        assert!(Override::parse("noequals").is_err());
        assert!(Override::parse("=1").is_err());
        assert!(Override::parse("a..b=1").is_err());
        assert_eq!(set("a=").value, Value::String(String::new()));
        assert_eq!(set("a=[1, 2]").value, Value::Array(vec![Value::Integer(1), Value::Integer(2)]));
        assert_eq!(set("a.b = 0.5").path, vec!["a", "b"]);
    }

    #[test]
    fn run_id_is_stable_and_normalised() {
        assert_eq!(run_id("smoke", &[]), "smoke");
        let a = run_id("smoke", &[set("train.epochs=2"), set("device=cpu")]);
        let b = run_id("smoke", &[set("device=\"cpu\""), set("train.epochs=1"), set("train.epochs=2")]);
        assert_eq!(a, b);
        assert_ne!(a, run_id("smoke", &[set("train.epochs=3"), set("device=cpu")]));
        assert!(a.starts_with("smoke-") && a.len() == "smoke-".len() + 16);
    }

    #[test]
    fn malformed_files_are_reported_with_path() {
        let e = ExperimentFile::parse("[experiment]\nname = 1\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("x.toml") && e.to_string().contains("experiment.name"), "{e}");
        let e = ExperimentFile::parse("[[[", "y.toml").unwrap_err();
        assert!(e.to_string().contains("y.toml"), "{e}");
        let e =
            ExperimentFile::parse("[experiment]\nname='a'\ndescription='b'\n[config]\n[extra]\n", "z.toml")
                .unwrap_err();
        assert!(e.to_string().contains("`extra`"), "{e}");
        let e = ExperimentFile::parse("[experiment]\nname='../../x'\ndescription='b'\n[config]\n", "n.toml")
            .unwrap_err();
        assert!(e.to_string().contains("n.toml") && e.to_string().contains("`experiment.name`"), "{e}");
        let e = ExperimentFile::parse(
            "[experiment]\nname='a'\ndescription='b'\n[config]\n[presets.'/tmp']\ndescription='x'\n",
            "p.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("`/tmp`"), "{e}");
        let e = ExperimentFile::load(Path::new("/nonexistent/exp.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/exp.toml"), "{e}");
    }
}
