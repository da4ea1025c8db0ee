//! Property tests of [`load_safetensors`] (weights, and checkpoints, which it reads) on untrusted
//! files, with a fixed budget of cases so that they run in CI in a few seconds: arbitrary bytes,
//! valid files with flipped bytes, cut short, or with header numbers (shapes, data offsets) and
//! dtypes changed load or fail without a panic, and whatever loads matches its header; a valid file
//! round-trips exactly.

#![allow(clippy::unwrap_used)] // tests: a failure is a test failure

use std::collections::HashMap;
use std::io::Write;

use proptest::prelude::*;
use safetensors::{Dtype, tensor::TensorView};
use serde_json::Value;
use tch::{Device, Kind, Tensor};
use vrl_models::weights::{TensorMap, WeightsError, load_safetensors, save_safetensors};

/// Dtypes vrl reads (and the tch kinds they become), and some it does not.
const DTYPES: [(Dtype, Option<Kind>); 12] = [
    (Dtype::BOOL, Some(Kind::Bool)),
    (Dtype::U8, Some(Kind::Uint8)),
    (Dtype::I8, Some(Kind::Int8)),
    (Dtype::I16, Some(Kind::Int16)),
    (Dtype::I32, Some(Kind::Int)),
    (Dtype::I64, Some(Kind::Int64)),
    (Dtype::BF16, Some(Kind::BFloat16)),
    (Dtype::F16, Some(Kind::Half)),
    (Dtype::F32, Some(Kind::Float)),
    (Dtype::F64, Some(Kind::Double)),
    (Dtype::U32, None),
    (Dtype::F8_E4M3, None),
];

/// Header strings a mutation may put in place of a dtype.
const DTYPE_NAMES: [&str; 8] = ["BOOL", "U8", "F16", "F32", "F64", "F4", "C64", "NOPE"];

/// `bytes` loaded through a file, as `vrl` loads weights.
fn load(bytes: &[u8]) -> Result<(TensorMap, HashMap<String, String>), WeightsError> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    load_safetensors(file.path())
}

/// A valid file with one tensor per `(dtype index, shape)`, named `t0`, `t1`, …, data from `seed`.
fn valid(specs: &[(usize, Vec<usize>)], seed: u8) -> Vec<u8> {
    let data: Vec<Vec<u8>> = specs
        .iter()
        .map(|(d, shape)| {
            let n = shape.iter().product::<usize>() * DTYPES[*d].0.bitsize() / 8;
            // Bool tensors hold 0 or 1; other bytes are arbitrary.
            let mask = if DTYPES[*d].0 == Dtype::BOOL { 1 } else { 0xff };
            (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) & mask).collect()
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = specs
        .iter()
        .zip(&data)
        .enumerate()
        .map(|(i, ((d, shape), bytes))| {
            (format!("t{i}"), TensorView::new(DTYPES[*d].0, shape.clone(), bytes).unwrap())
        })
        .collect();
    let meta = HashMap::from([("vrl".to_string(), "{\"step\": 3}".to_string())]);
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// The JSON header and the data of a safetensors file.
fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let text = serde_json::to_vec(header).unwrap();
    [&(text.len() as u64).to_le_bytes()[..], &text, data].concat()
}

/// Whatever loaded has, for each tensor, the shape and dtype its header declares.
fn assert_matches_header(bytes: &[u8], tensors: &TensorMap) {
    let (header, _) = split(bytes);
    for (name, t) in tensors {
        let shape: Vec<i64> =
            header[name]["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
        assert_eq!(t.size(), shape, "{name}");
    }
}

fn specs() -> impl Strategy<Value = Vec<(usize, Vec<usize>)>> {
    proptest::collection::vec((0usize..DTYPES.len(), proptest::collection::vec(0usize..4, 0..4)), 1..4)
}

/// Numbers a mutation may write into a header: small, boundary and huge.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..64,
        Just(u64::MAX),
        Just(1 << 63),
        Just((1 << 63) - 1),
        Just(1 << 62),
        Just(u64::from(u32::MAX) + 1),
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = load(&bytes);
        // With a header length that fits, so that the parser gets to the JSON.
        let framed = [&(bytes.len() as u64).to_le_bytes()[..], &bytes].concat();
        let _ = load(&framed);
    }

    #[test]
    fn flipped_and_cut_files_never_panic(
        specs in specs(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = valid(&specs, 7);
        let cut = cut.index(bytes.len());
        prop_assert!(load(&bytes[..cut]).is_err(), "a file cut at byte {cut} loaded");
        let mut flipped = bytes.clone();
        for (i, b) in &edits {
            let i = i.index(flipped.len());
            flipped[i] = *b;
        }
        let _ = load(&flipped);
    }

    #[test]
    fn changed_header_numbers_never_panic(
        specs in specs(),
        tensor in any::<prop::sample::Index>(),
        field in 0usize..3,
        position in any::<prop::sample::Index>(),
        value in number(),
        dtype in 0usize..DTYPE_NAMES.len(),
    ) {
        let bytes = valid(&specs, 1);
        let (mut header, data) = split(&bytes);
        let name = format!("t{}", tensor.index(specs.len()));
        let entry = &mut header[&name];
        match field {
            0 => entry["dtype"] = Value::from(DTYPE_NAMES[dtype]),
            1 => {
                let shape = entry["shape"].as_array_mut().unwrap();
                if shape.is_empty() {
                    shape.push(Value::from(value));
                } else {
                    let i = position.index(shape.len());
                    shape[i] = Value::from(value);
                }
            }
            _ => entry["data_offsets"][position.index(2)] = Value::from(value),
        }
        let mutated = join(&header, &data);
        if let Ok((tensors, _)) = load(&mutated) {
            assert_matches_header(&mutated, &tensors);
        }
    }

    #[test]
    fn valid_files_round_trip(specs in specs(), seed in any::<u8>()) {
        let bytes = valid(&specs, seed);
        let (header, data) = split(&bytes);
        let (tensors, meta) = load(&bytes).unwrap_or_else(|e| {
            // Only the dtypes vrl does not read are refused.
            assert!(specs.iter().any(|(d, _)| DTYPES[*d].1.is_none()), "{e}");
            (TensorMap::new(), HashMap::from([("vrl".to_string(), "{\"step\": 3}".to_string())]))
        });
        prop_assert_eq!(&meta["vrl"], "{\"step\": 3}");
        for (name, t) in &tensors {
            let i: usize = name[1..].parse().unwrap();
            let offsets = &header[name]["data_offsets"];
            let (s, e) = (offsets[0].as_u64().unwrap() as usize, offsets[1].as_u64().unwrap() as usize);
            prop_assert_eq!(Some(t.kind()), DTYPES[specs[i].0].1);
            let mut got = vec![0u8; e - s];
            t.copy_data_u8(&mut got, t.numel());
            prop_assert_eq!(&got[..], &data[s..e], "{}", name);
        }
    }
}

#[test]
fn saved_tensors_load_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let tensors = vec![
        ("a.weight".to_string(), Tensor::randn([3, 4], (Kind::Float, Device::Cpu))),
        ("a.bias".to_string(), Tensor::arange(5, (Kind::Int64, Device::Cpu))),
        ("b".to_string(), Tensor::ones([0, 2], (Kind::Half, Device::Cpu))),
    ];
    save_safetensors(&path, &tensors).unwrap();
    let (loaded, _) = load_safetensors(&path).unwrap();
    assert_eq!(loaded.len(), tensors.len());
    for (name, t) in &tensors {
        assert!(loaded[name].equal(t), "{name}");
    }
}

#[test]
fn empty_tensors_with_huge_dimensions_are_refused_or_empty() {
    // safetensors accepts these (zero elements); a dimension above i64::MAX must not reach LibTorch
    // as a negative size unchecked.
    for shape in [vec![0, u64::MAX], vec![0, 1 << 63], vec![1 << 62, 0, 1 << 62], vec![0, (1 << 63) - 1]] {
        let (mut header, data) = split(&valid(&[(8, vec![0])], 0));
        header["t0"]["shape"] = Value::from(shape.clone());
        match load(&join(&header, &data)) {
            Ok((tensors, _)) => assert_eq!(tensors["t0"].numel(), 0, "{shape:?}"),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("t0") && !e.contains("Exception raised from"), "{shape:?}: {e}");
                if shape.iter().any(|&d| d > i64::MAX as u64) {
                    assert!(e.contains("too large"), "{shape:?}: {e}");
                }
            }
        }
    }
}
