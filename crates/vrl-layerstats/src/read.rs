//! Weights from safetensors files, as f32.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::LayerStatsError;

/// A tensor as `(name, shape, row-major data)`.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// The 2-D and 4-D floating-point tensors of a safetensors file, in the file's order (by data offset),
/// as `(name, shape, data)` in f32: f16 and bf16 widened, f64 narrowed (WeightWatcher too reads
/// weights as float32). Other ranks and integer or boolean tensors are left out. A file that cannot
/// be read or is not valid safetensors (truncated, bad header) is an error naming it.
pub fn load_safetensors(path: &Path) -> Result<Vec<NamedTensor>, LayerStatsError> {
    let bytes = std::fs::read(path).map_err(|source| LayerStatsError::Io { path: path.into(), source })?;
    let invalid = |e: safetensors::SafeTensorError| LayerStatsError::Safetensors {
        path: path.into(),
        message: e.to_string(),
    };
    let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(invalid)?;
    let file = SafeTensors::deserialize(&bytes).map_err(invalid)?;
    let mut out = Vec::new();
    for name in metadata.offset_keys() {
        let view = file.tensor(&name).map_err(invalid)?;
        let shape = view.shape().to_vec();
        if !matches!(shape.len(), 2 | 4) {
            continue;
        }
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect(),
            Dtype::F16 => {
                raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            Dtype::BF16 => {
                raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            _ => continue,
        };
        out.push((name, shape, data));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    fn write(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).expect("view")))
            .collect();
        safetensors::serialize_to_file(views, None, path).expect("write");
    }

    #[test]
    fn converts_float_types_and_skips_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.safetensors");
        let f32s: Vec<u8> = [1.5f32, -2.0, 0.25, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let f64s: Vec<u8> = [1.5f64, -2.0, 0.25, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16s: Vec<u8> =
            [1.5f32, -2.0, 0.25, 4.0].iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        let bf16s: Vec<u8> =
            [1.5f32, -2.0, 0.25, 4.0].iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
        let ints: Vec<u8> = [1i64, 2, 3, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        write(
            &path,
            &[
                ("a32", Dtype::F32, vec![2, 2], f32s.clone()),
                ("b64", Dtype::F64, vec![1, 4, 1, 1], f64s),
                ("c16", Dtype::F16, vec![2, 2], f16s),
                ("dbf16", Dtype::BF16, vec![4, 1], bf16s),
                ("e_bias", Dtype::F32, vec![4], f32s),
                ("f_ids", Dtype::I64, vec![2, 2], ints),
            ],
        );
        let t = load_safetensors(&path).expect("read");
        let names: Vec<&str> = t.iter().map(|(n, _, _)| n.as_str()).collect();
        // The writer orders tensors by dtype, then name; the reader keeps the file's order.
        let bytes = std::fs::read(&path).expect("read");
        let in_file = SafeTensors::read_metadata(&bytes).expect("header").1.offset_keys();
        let expected: Vec<&str> =
            in_file.iter().map(String::as_str).filter(|n| !["e_bias", "f_ids"].contains(n)).collect();
        assert_eq!(names, expected);
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, ["a32", "b64", "c16", "dbf16"]);
        for (name, shape, data) in &t {
            assert_eq!(data, &[1.5, -2.0, 0.25, 4.0], "{name}");
            assert_eq!(shape.iter().product::<usize>(), 4);
        }
    }

    #[test]
    fn truncated_and_missing_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.safetensors");
        let f32s: Vec<u8> = [1.0f32; 64].iter().flat_map(|v| v.to_le_bytes()).collect();
        write(&path, &[("w", Dtype::F32, vec![8, 8], f32s)]);
        let bytes = std::fs::read(&path).expect("read");
        let cut = dir.path().join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 10]).expect("write");
        let err = load_safetensors(&cut).expect_err("truncated").to_string();
        assert!(err.contains("cut.safetensors") && err.contains("not a valid safetensors"), "{err}");
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"hello").expect("write");
        assert!(load_safetensors(&junk).expect_err("junk").to_string().contains("junk.safetensors"));
        let err = load_safetensors(&dir.path().join("missing.safetensors")).expect_err("missing").to_string();
        assert!(err.contains("cannot read") && err.contains("missing.safetensors"), "{err}");
    }
}
