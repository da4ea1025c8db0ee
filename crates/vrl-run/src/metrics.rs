//! `metrics.jsonl`: one JSON object per logged step.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{RunError, io_err, write_atomic};

/// An append-only log of JSON objects, one per line, each with a `step` field.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens `path` for appending. With `resume_step = Some(s)`, lines whose `step` is greater than
    /// `s`, and a torn last line, are dropped first (the file is rewritten atomically). With `None`,
    /// an existing file is emptied: the run starts from scratch.
    pub fn open(path: &Path, resume_step: Option<u64>) -> Result<Self, RunError> {
        let kept = match resume_step {
            None => Vec::new(),
            Some(s) => read_metrics(path)
                .unwrap_or_default()
                .into_iter()
                .filter(|v| v.get("step").and_then(|x| x.as_u64()).is_none_or(|step| step <= s))
                .collect(),
        };
        let mut text = String::new();
        for v in &kept {
            text.push_str(&v.to_string());
            text.push('\n');
        }
        write_atomic(path, text.as_bytes())?;
        let file =
            std::fs::OpenOptions::new().append(true).open(path).map_err(io_err("cannot open", path))?;
        Ok(MetricsLog { path: path.to_path_buf(), file })
    }

    /// Appends one entry as a single line (one `write` call, so a crash leaves at most a torn last line,
    /// which [`MetricsLog::open`] drops).
    pub fn log<T: Serialize + ?Sized>(&mut self, entry: &T) -> Result<(), RunError> {
        let mut line = serde_json::to_string(entry)
            .map_err(|e| RunError::Json { path: self.path.clone(), message: e.to_string() })?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(io_err("cannot append to", &self.path))?;
        tracing::debug!(target: "vrl::metrics", "{}", line.trim_end());
        Ok(())
    }

    /// Flushes the file to disk (called before a checkpoint is written).
    pub fn sync(&mut self) -> Result<(), RunError> {
        self.file.sync_data().map_err(io_err("cannot sync", &self.path))
    }
}

/// Reads every complete line of a metrics file; a torn or unparsable line ends the read.
pub fn read_metrics(path: &Path) -> Result<Vec<serde_json::Value>, RunError> {
    let text = std::fs::read_to_string(path).map_err(io_err("cannot read", path))?;
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break;
        }
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resume_truncates_to_checkpoint_step() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&p, None).unwrap();
        for step in 1..=5 {
            log.log(&json!({"step": step, "loss": 1.0 / step as f64})).unwrap();
        }
        drop(log);
        // A torn line, as a SIGKILL in the middle of a write would leave.
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"{\"step\": 6, \"lo").unwrap();
        let mut log = MetricsLog::open(&p, Some(3)).unwrap();
        log.log(&json!({"step": 4, "loss": 0.25})).unwrap();
        let steps: Vec<u64> = read_metrics(&p).unwrap().iter().map(|v| v["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
        MetricsLog::open(&p, None).unwrap();
        assert!(read_metrics(&p).unwrap().is_empty());
    }

    #[test]
    fn every_float_reads_back_to_the_same_bits() {
        // serde_json's default parser may land one unit in the last place off; `float_roundtrip`
        // (enabled for the workspace) makes a re-read metrics or results file write the same bytes.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..200_000 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let x = f64::from_bits(state);
            if !x.is_finite() {
                continue;
            }
            let text = serde_json::to_string(&json!({ "x": x })).unwrap();
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back["x"].as_f64().unwrap().to_bits(), x.to_bits(), "{text}");
        }
    }
}
