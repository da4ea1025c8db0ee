//! Temporary files that a killed process left in a run directory.
//!
//! Every file vrl writes goes through a temporary `.<name>.tmp.<pid>.<n>` beside it
//! (`vrl_cache::write_atomic`), renamed over the target when complete. A process killed between the
//! two leaves the temporary behind; the next start removes those whose process is gone.

use std::path::{Path, PathBuf};

/// The process id in the name of a temporary file, `.<name>.tmp.<pid>.<n>`.
fn temporary_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp.")?;
    let (pid, n) = tail.split_once('.')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether process `pid` is alive (on Linux, `/proc/<pid>` exists; elsewhere, assumed alive).
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Removes the temporary files under `dir` (recursively, not following links) whose writing process
/// is no longer alive, and returns them.
pub fn remove_stale_temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return removed };
    for entry in entries.filter_map(Result::ok) {
        let Ok(kind) = entry.file_type() else { continue };
        let path = entry.path();
        if kind.is_dir() {
            removed.extend(remove_stale_temporaries(&path));
            continue;
        }
        let stale = entry.file_name().to_str().and_then(temporary_pid).is_some_and(|pid| !alive(pid));
        if kind.is_file() && stale && std::fs::remove_file(&path).is_ok() {
            tracing::info!("removed {}, left by a process that was stopped while writing it", path.display());
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_temporaries() {
        assert_eq!(temporary_pid(".results.json.tmp.123.0"), Some(123));
        assert_eq!(temporary_pid(".ckpt-0000000010.safetensors.tmp.9.41"), Some(9));
        assert_eq!(temporary_pid("results.json.tmp.123.0"), None);
        assert_eq!(temporary_pid(".x.tmp.abc.0"), None);
        assert_eq!(temporary_pid(".x.tmp.1"), None);
        assert_eq!(temporary_pid("results.json"), None);
    }

    #[test]
    fn only_the_temporaries_of_dead_processes_go() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("checkpoints");
        std::fs::create_dir_all(&sub).unwrap();
        // No process has a pid above the kernel's limit (2^22).
        let dead = ".ckpt.safetensors.tmp.4194304999.0";
        let mine = format!(".results.json.tmp.{}.3", std::process::id());
        for name in [dead, mine.as_str(), "results.json", ".hidden"] {
            std::fs::write(sub.join(name), b"x").unwrap();
        }
        std::fs::write(dir.path().join(dead), b"x").unwrap();
        let mut removed = remove_stale_temporaries(dir.path());
        removed.sort();
        assert_eq!(removed, [dir.path().join(dead), sub.join(dead)]);
        assert!(
            sub.join(&mine).exists() && sub.join("results.json").exists() && sub.join(".hidden").exists()
        );
        assert!(remove_stale_temporaries(&dir.path().join("absent")).is_empty());
    }
}
