//! The experiment files of a directory: every `*.toml` read on its own, so that one broken or
//! duplicated file is reported where it matters (when listed, or when asked for) and does not hide
//! the others.
//!
//! ```
//! use vrl_config::Catalog;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let exp = |name: &str| format!("[experiment]\nname = \"{name}\"\ndescription = \"d\"\n[config]\n");
//! std::fs::write(dir.path().join("a.toml"), exp("a")).unwrap();
//! std::fs::write(dir.path().join("b.toml"), "[[[").unwrap();
//! let catalog = Catalog::load(dir.path()).unwrap();
//! assert_eq!(catalog.get("a").unwrap().name, "a");
//! assert!(catalog.get("b").unwrap_err().to_string().contains("b.toml"));
//! assert_eq!(catalog.problems.len(), 1);
//! ```

use std::path::{Path, PathBuf};

use crate::{ConfigError, ExperimentFile};

/// Names that no experiment file may take: `tour` runs every experiment.
pub const RESERVED_NAMES: &[&str] = &["tour"];

/// The experiment files of one directory.
#[derive(Debug)]
pub struct Catalog {
    /// The directory.
    pub dir: PathBuf,
    /// Files that were read and whose names are unique, sorted by path.
    pub files: Vec<ExperimentFile>,
    /// Files that could not be used: unreadable, invalid, a reserved name, or a name taken twice.
    pub problems: Vec<Problem>,
}

/// One experiment file that could not be used.
#[derive(Debug)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// The experiment it declares, or else its file stem: what a user would ask for.
    pub name: String,
    /// Why.
    pub error: ConfigError,
}

impl Catalog {
    /// Reads every `*.toml` in `dir`. Only a directory that cannot be listed is an error; a file that
    /// cannot be used becomes a [`Problem`].
    ///
    /// # Errors
    /// [`ConfigError::ExperimentsDir`] when `dir` cannot be listed.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|source| ConfigError::ExperimentsDir { path: dir.into(), source })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut parsed = Vec::new();
        let mut problems = Vec::new();
        for path in paths {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            match ExperimentFile::load(&path) {
                Ok(f) if RESERVED_NAMES.contains(&f.name.as_str()) => {
                    let message =
                        format!("the experiment name `{}` is reserved (`vrl experiment tour`)", f.name);
                    problems.push(Problem {
                        name: f.name,
                        error: ConfigError::Parse { path: path.clone(), message },
                        path,
                    });
                }
                Ok(f) => parsed.push(f),
                Err(error) => {
                    let name = declared_name(&path).unwrap_or(stem);
                    problems.push(Problem { path, name, error });
                }
            }
        }
        let files = drop_duplicates(parsed, &mut problems);
        Ok(Catalog { dir: dir.to_path_buf(), files, problems })
    }

    /// The experiment called `name`.
    ///
    /// # Errors
    /// The file's own error when the file that declares `name` (or is called `name.toml`) cannot be
    /// used; [`ConfigError::UnknownExperiment`] listing the available ones otherwise.
    pub fn get(&self, name: &str) -> Result<&ExperimentFile, ConfigError> {
        if let Some(f) = self.files.iter().find(|f| f.name == name) {
            return Ok(f);
        }
        let stem = |p: &Problem| p.path.file_stem().is_some_and(|s| s.to_string_lossy() == name);
        if let Some(p) = self.problems.iter().find(|p| p.name == name || stem(p)) {
            return Err(p.error.clone_message());
        }
        Err(ConfigError::UnknownExperiment {
            name: name.to_string(),
            dir: self.dir.clone(),
            available: self.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
            unusable: self.problems.len(),
        })
    }
}

/// The `[experiment] name` of a file that could not be used, where its TOML can still be read.
fn declared_name(path: &Path) -> Option<String> {
    let table: toml::Table = std::fs::read_to_string(path).ok()?.parse().ok()?;
    table.get("experiment")?.get("name")?.as_str().map(str::to_owned)
}

/// Keeps the files whose experiment name no other file declares; each clash becomes a problem of
/// every file involved, naming the first two.
fn drop_duplicates(parsed: Vec<ExperimentFile>, problems: &mut Vec<Problem>) -> Vec<ExperimentFile> {
    let mut files = Vec::new();
    for f in &parsed {
        let same: Vec<&ExperimentFile> = parsed.iter().filter(|o| o.name == f.name).collect();
        if same.len() == 1 {
            files.push(f.clone());
            continue;
        }
        problems.push(Problem {
            path: f.path.clone(),
            name: f.name.clone(),
            error: ConfigError::DuplicateExperiment {
                name: f.name.clone(),
                first: same[0].path.clone(),
                second: same[1].path.clone(),
            },
        });
    }
    files
}

impl ConfigError {
    /// The same error, for a second caller (`std::io::Error` is not `Clone`; its message is kept).
    fn clone_message(&self) -> ConfigError {
        match self {
            ConfigError::Io { path, source } => {
                ConfigError::Parse { path: path.clone(), message: format!("cannot read it: {source}") }
            }
            ConfigError::Parse { path, message } => {
                ConfigError::Parse { path: path.clone(), message: message.clone() }
            }
            ConfigError::DuplicateExperiment { name, first, second } => ConfigError::DuplicateExperiment {
                name: name.clone(),
                first: first.clone(),
                second: second.clone(),
            },
            other => ConfigError::Parse { path: PathBuf::new(), message: other.to_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(name: &str) -> String {
        format!("[experiment]\nname = \"{name}\"\ndescription = \"d\"\n[config]\n")
    }

    #[test]
    fn a_duplicate_name_names_both_files_and_hides_neither_other_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("one.toml"), exp("same")).unwrap();
        std::fs::write(dir.path().join("two.toml"), exp("same")).unwrap();
        std::fs::write(dir.path().join("other.toml"), exp("other")).unwrap();
        let c = Catalog::load(dir.path()).unwrap();
        assert_eq!(c.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["other"]);
        assert_eq!(c.problems.len(), 2);
        let e = c.get("same").unwrap_err().to_string();
        assert!(e.contains("one.toml") && e.contains("two.toml") && e.contains("`same`"), "{e}");
    }

    #[test]
    fn a_malformed_file_is_reported_when_asked_for_and_disables_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.toml"), exp("good")).unwrap();
        std::fs::write(dir.path().join("bad.toml"), "[experiment\nname=").unwrap();
        std::fs::write(dir.path().join("tour.toml"), exp("tour")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not an experiment").unwrap();
        let c = Catalog::load(dir.path()).unwrap();
        assert_eq!(c.get("good").unwrap().name, "good");
        let e = c.get("bad").unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("invalid"), "{e}");
        assert!(c.get("tour").unwrap_err().to_string().contains("reserved"));
        let e = c.get("nope").unwrap_err().to_string();
        assert!(e.contains("`nope`") && e.contains("available: good") && e.contains("2 files"), "{e}");
        assert_eq!(c.problems.len(), 2);
    }

    #[test]
    fn an_unreadable_directory_is_an_error_naming_it() {
        let e = Catalog::load(Path::new("/nonexistent/experiments")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/experiments"), "{e}");
    }
}
