//! Weights as safetensors files with PyTorch / timm state-dict keys: read, write (atomically), and
//! load into a model's variables with every missing, unexpected or wrongly shaped tensor listed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use tch::{Kind, Tensor, nn::VarStore};

/// Errors while saving or loading checkpoints and weights. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file or directory could not be written (a full disk, a read-only file system): not a
    /// fault of the input, so the CLI exits 1 rather than 2.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The tensors in a file do not match what they are loaded into.
    #[error("{path}: weights do not match the model:\n{details}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// One line per missing, unexpected or wrongly shaped tensor.
        details: String,
    },
}

/// A [`WeightsError::File`] for `path`.
pub fn file_err(path: &Path, message: impl std::fmt::Display) -> WeightsError {
    WeightsError::File { path: path.to_path_buf(), message: message.to_string() }
}

fn dtype(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        _ => return None,
    })
}

fn kind(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

/// Serializes named tensors (moved to the CPU) and string metadata to safetensors bytes.
pub fn to_safetensors_bytes(
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, String> {
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(tch::Device::Cpu).contiguous();
        let dt =
            dtype(t.kind()).ok_or_else(|| format!("tensor `{name}` has unsupported kind {:?}", t.kind()))?;
        let numel = t.numel();
        let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, numel).map_err(|e| format!("tensor `{name}`: {e}"))?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        buffers.push((name.clone(), dt, shape, data));
    }
    let views = buffers
        .iter()
        .map(|(name, dt, shape, data)| {
            TensorView::new(*dt, shape.clone(), data).map(|v| (name.clone(), v)).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, metadata).map_err(|e| e.to_string())
}

/// Writes named tensors to a safetensors file, atomically.
pub fn save_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), WeightsError> {
    let bytes = to_safetensors_bytes(tensors, None).map_err(|e| file_err(path, e))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WeightsError> {
    let write_err = |path: &Path, reason: String| WeightsError::Write { path: path.to_path_buf(), reason };
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e.to_string()))?;
    }
    vrl_cache::write_atomic(path, bytes).map_err(|e| write_err(path, with_sources(&e)))
}

/// An error's message followed by those of its sources (where the operating system's reason is).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Tensors by name.
pub type TensorMap = HashMap<String, Tensor>;

/// Reads every tensor of a safetensors file, and its metadata.
pub fn load_safetensors(path: &Path) -> Result<(TensorMap, HashMap<String, String>), WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| file_err(path, format!("not a valid safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| file_err(path, format!("not a valid safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in st.iter() {
        let k = kind(view.dtype()).ok_or_else(|| {
            file_err(path, format!("tensor `{name}` has unsupported dtype {:?}", view.dtype()))
        })?;
        let size = checked_size(view.shape(), k, view.data().len())
            .map_err(|why| file_err(path, format!("tensor `{name}`: {why}")))?;
        let t = Tensor::f_from_data_size(view.data(), &size, k)
            .map_err(|e| file_err(path, format!("`{name}`: {e}")))?;
        out.insert(name.to_string(), t);
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// The shape as LibTorch sizes, checked against the bytes there are: every dimension fits an `i64`
/// and the elements fill exactly `bytes` (tch copies what the shape says without looking).
fn checked_size(shape: &[usize], kind: Kind, bytes: usize) -> Result<Vec<i64>, String> {
    let size: Vec<i64> = shape
        .iter()
        .map(|&d| i64::try_from(d).map_err(|_| format!("dimension {d} of shape {shape:?} is too large")))
        .collect::<Result<_, _>>()?;
    let need = shape
        .iter()
        .try_fold(kind.elt_size_in_bytes(), |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    if need != bytes {
        return Err(format!("shape {shape:?} needs {need} bytes, the file holds {bytes}"));
    }
    Ok(size)
}

/// Copies `tensors` into the variables of `vs` (names and shapes must match exactly). On a mismatch
/// nothing is copied and the error lists every missing, unexpected and wrongly shaped tensor.
pub fn load_into_varstore(
    vs: &VarStore,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<(), WeightsError> {
    load_with_head(vs, tensors, path, &[]).map(|_| ())
}

/// Like [`load_into_varstore`], but tensors under the classifier prefixes `head` (e.g. `["fc."]`,
/// `["head."]`) whose shapes differ — a checkpoint with another `num_classes` — are skipped and keep
/// their fresh initialisation, as timm does. Returns the names of the skipped tensors.
pub fn load_with_head(
    vs: &VarStore,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
    head: &[&str],
) -> Result<Vec<String>, WeightsError> {
    let vars = vs.variables();
    let mut details = Vec::new();
    let mut skipped = Vec::new();
    let names: BTreeSet<&String> = vars.keys().chain(tensors.keys()).collect();
    for name in names {
        match (vars.get(name), tensors.get(name)) {
            (Some(_), None) => details.push(format!("  missing: {name}")),
            (None, Some(_)) => details.push(format!("  unexpected: {name}")),
            (Some(v), Some(t)) if v.size() != t.size() && head.iter().any(|h| name.starts_with(h)) => {
                skipped.push(name.clone())
            }
            (Some(v), Some(t)) if v.size() != t.size() => {
                details.push(format!("  shape mismatch: {name}: file {:?}, model {:?}", t.size(), v.size()))
            }
            _ => {}
        }
    }
    if !details.is_empty() {
        return Err(WeightsError::Mismatch { path: path.to_path_buf(), details: details.join("\n") });
    }
    let _guard = tch::no_grad_guard();
    for (name, v) in vars {
        if skipped.contains(&name) {
            continue;
        }
        let mut v = v;
        v.f_copy_(&tensors[&name]).map_err(|e| file_err(path, format!("`{name}`: {e}")))?;
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelArgs, create};
    use tch::{Device, nn};

    #[test]
    fn another_num_classes_reinitialises_only_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let vs = nn::VarStore::new(Device::Cpu);
        let model = create("mnist_cnn", &vs.root(), &ModelArgs::default()).unwrap();
        let saved: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        save_safetensors(&path, &saved).unwrap();
        let (tensors, _) = load_safetensors(&path).unwrap();

        let vs3 = nn::VarStore::new(Device::Cpu);
        let three = ModelArgs { num_classes: Some(3), ..Default::default() };
        create("mnist_cnn", &vs3.root(), &three).unwrap();
        let err = load_into_varstore(&vs3, &tensors, &path).unwrap_err().to_string();
        assert!(err.contains("shape mismatch: fc.weight: file [10, 3136], model [3, 3136]"), "{err}");
        let mut skipped = load_with_head(&vs3, &tensors, &path, model.head_prefixes()).unwrap();
        skipped.sort();
        assert_eq!(skipped, ["fc.bias", "fc.weight"]);
        let v = vs3.variables();
        assert!(v["conv2.weight"].equal(&tensors["conv2.weight"]));
        assert_eq!(v["fc.weight"].size(), [3, 3136]);
    }
}
