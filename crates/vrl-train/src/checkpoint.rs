//! Checkpoints: named tensor groups plus a JSON header in one safetensors file.
//!
//! A checkpoint of a run at step `s` is `ckpt-<s, 10 digits>.safetensors` in the run's `checkpoints/`
//! directory. Tensors are stored as `<group>/<name>` (`model/conv1.weight`, `optim/conv1.weight.exp_avg`);
//! the header (step, epoch, position in the epoch, seeds, anything the study needs) is JSON in the
//! safetensors metadata under `vrl`. Files are written atomically and only the newest `keep` are kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tch::Tensor;
pub use vrl_models::weights::{
    TensorMap, WeightsError as CheckpointError, file_err, load_into_varstore, load_safetensors,
    save_safetensors, to_safetensors_bytes,
};

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// The file it came from.
    pub path: PathBuf,
    /// The step it was taken at.
    pub step: u64,
    /// The study's header.
    pub header: serde_json::Value,
    groups: HashMap<String, HashMap<String, Tensor>>,
}

impl Checkpoint {
    /// The file name of the checkpoint at `step`.
    pub fn file_name(step: u64) -> String {
        format!("ckpt-{step:010}.safetensors")
    }

    /// Saves a checkpoint at `step` into `dir` and removes all but the newest `keep` checkpoints.
    pub fn save<H: Serialize>(
        dir: &Path,
        step: u64,
        header: &H,
        groups: &[(&str, Vec<(String, Tensor)>)],
        keep: usize,
    ) -> Result<PathBuf, CheckpointError> {
        let path = dir.join(Self::file_name(step));
        let header = serde_json::json!({ "step": step, "state": header });
        let mut tensors = Vec::new();
        for (group, list) in groups {
            for (name, t) in list {
                tensors.push((format!("{group}/{name}"), t.shallow_clone()));
            }
        }
        let meta = HashMap::from([("vrl".to_string(), header.to_string())]);
        let bytes = to_safetensors_bytes(&tensors, Some(meta)).map_err(|e| file_err(&path, e))?;
        vrl_models::weights::write_atomic(&path, &bytes)?;
        let mut all = Self::list(dir)?;
        while all.len() > keep.max(1) {
            let (_, old) = all.remove(0);
            let _ = std::fs::remove_file(&old);
        }
        Ok(path)
    }

    /// The checkpoints in `dir`, oldest first.
    pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
        let mut out: Vec<(u64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let step = name.strip_prefix("ckpt-")?.strip_suffix(".safetensors")?.parse().ok()?;
                Some((step, e.path()))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Loads the newest checkpoint in `dir` that can be read; unreadable ones are reported and skipped.
    pub fn latest(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        for (_, path) in Self::list(dir)?.into_iter().rev() {
            match Self::load(&path) {
                Ok(c) => return Ok(Some(c)),
                Err(e) => tracing::warn!("skipping unreadable checkpoint: {e}"),
            }
        }
        Ok(None)
    }

    /// Loads one checkpoint file.
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let (tensors, meta) = load_safetensors(path)?;
        let header: serde_json::Value = meta
            .get("vrl")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| file_err(path, "not a vrl checkpoint (no `vrl` metadata)"))?;
        let step = header["step"].as_u64().ok_or_else(|| file_err(path, "checkpoint header has no step"))?;
        let mut groups: HashMap<String, HashMap<String, Tensor>> = HashMap::new();
        for (name, t) in tensors {
            let (group, rest) = name
                .split_once('/')
                .ok_or_else(|| file_err(path, format!("tensor `{name}` has no group")))?;
            groups.entry(group.to_string()).or_default().insert(rest.to_string(), t);
        }
        Ok(Checkpoint { path: path.to_path_buf(), step, header: header["state"].clone(), groups })
    }

    /// The study's header, deserialized.
    pub fn state<H: DeserializeOwned>(&self) -> Result<H, CheckpointError> {
        serde_json::from_value(self.header.clone())
            .map_err(|e| file_err(&self.path, format!("checkpoint header: {e}")))
    }

    /// The tensors of a group (empty if absent).
    pub fn group(&self, name: &str) -> HashMap<String, Tensor> {
        self.groups
            .get(name)
            .map(|g| g.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, nn};

    #[test]
    fn save_load_keep_and_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let _l = nn::linear(vs.root() / "fc", 3, 2, Default::default());
        let weights = || -> Vec<(String, Tensor)> { vs.variables().into_iter().collect() };
        for step in [5u64, 10, 15] {
            let extra = vec![("step".to_string(), Tensor::from(step as i64))];
            Checkpoint::save(
                dir.path(),
                step,
                &serde_json::json!({"epoch": 1}),
                &[("model", weights()), ("optim", extra)],
                2,
            )
            .unwrap();
        }
        let list = Checkpoint::list(dir.path()).unwrap();
        assert_eq!(list.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![10, 15]);
        // A torn newest file is skipped.
        std::fs::write(dir.path().join(Checkpoint::file_name(20)), b"garbage").unwrap();
        let c = Checkpoint::latest(dir.path()).unwrap().unwrap();
        assert_eq!(c.step, 15);
        assert_eq!(c.header["epoch"], 1);
        assert_eq!(c.group("optim")["step"].int64_value(&[]), 15);

        let vs2 = nn::VarStore::new(Device::Cpu);
        let _l2 = nn::linear(vs2.root() / "fc", 3, 2, Default::default());
        load_into_varstore(&vs2, &c.group("model"), &c.path).unwrap();
        let a = vs.variables()["fc.weight"].shallow_clone();
        let b = vs2.variables()["fc.weight"].shallow_clone();
        assert!(a.equal(&b));

        let vs3 = nn::VarStore::new(Device::Cpu);
        let _l3 = nn::linear(vs3.root() / "fc", 4, 2, Default::default());
        let _l4 = nn::linear(vs3.root() / "head", 4, 2, Default::default());
        let e = load_into_varstore(&vs3, &c.group("model"), &c.path).unwrap_err().to_string();
        assert!(e.contains("shape mismatch: fc.weight: file [2, 3], model [2, 4]"), "{e}");
        assert!(e.contains("missing: head.bias"), "{e}");
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        std::fs::write(&p, [1u8, 2, 3]).unwrap();
        let e = load_safetensors(&p).unwrap_err().to_string();
        assert!(e.contains("w.safetensors") && e.contains("not a valid safetensors"), "{e}");
    }
}
