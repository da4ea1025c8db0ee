//! Atomic file writes: a temporary file in the same directory, flushed, then renamed over the target.

use std::path::Path;

use serde::Serialize;

use crate::{RunError, io_err};

/// Writes `bytes` to `path` atomically (creating its directory): readers see the old file or the
/// new one, never a part. The one implementation is `vrl_cache::write_atomic`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err("cannot create directory", dir))?;
    Ok(vrl_cache::write_atomic(path, bytes)?)
}

/// Writes `value` as pretty JSON (with a final newline) to `path`, atomically.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), RunError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| RunError::Json { path: path.to_path_buf(), message: e.to_string() })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.json");
        write_json_atomic(&p, &serde_json::json!({"a": 1})).unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let e = write_atomic(&dir.path().join("file/inner"), b"x").unwrap_err();
        assert!(e.to_string().contains("file/inner") || e.to_string().contains("file"), "{e}");
    }
}
