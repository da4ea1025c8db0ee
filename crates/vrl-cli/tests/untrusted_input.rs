//! Untrusted input cannot crash `vrl`, make it read out of bounds or write outside where it was told
//! (issue 19): `.npy` files whose header promises more data than they hold, an `--output` that is a
//! directory or lies in a missing one, and a `--bins` that would size a 32 GB allocation all exit
//! with status 2 and a message naming the file or flag.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vrl_data::npy::{NpyArray, NpyData, decode_npy, encode_npy, encode_npy_f32};

const VRL: &str = env!("CARGO_BIN_EXE_vrl");

/// `vrl models forward` of a 3-class `mnist_cnn` on `input`, writing `output`, run in `cwd`.
fn forward(cwd: &Path, input: &Path, output: &Path) -> Output {
    Command::new(VRL)
        .current_dir(cwd)
        .args(["models", "forward", "--model", "mnist_cnn", "--set", "model.num_classes=3", "--input"])
        .arg(input)
        .arg("--output")
        .arg(output)
        .env("RUST_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

fn assert_user_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "expected exit status 2, got {:?}: {err}", out.status);
    for n in needles {
        assert!(err.contains(n), "message lacks `{n}`: {err}");
    }
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names
}

/// A valid float32 input `[2, 1, 28, 28]`.
fn input(dir: &Path) -> PathBuf {
    let path = dir.join("x.npy");
    std::fs::write(&path, encode_npy_f32(&[2, 1, 28, 28], &vec![0.25; 2 * 784])).unwrap();
    path
}

#[test]
fn forward_reads_and_writes_npy_files_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let input = input(tmp.path());
    // A relative --output lands in the working directory, written through a temporary file there.
    let out = forward(tmp.path(), &input, Path::new("y.npy"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let logits = decode_npy(&std::fs::read(tmp.path().join("y.npy")).unwrap()).unwrap();
    assert_eq!((logits.shape.as_slice(), logits.descr()), (&[2, 3][..], "<f4"));
    assert_eq!(listing(tmp.path()), [tmp.path().join("x.npy"), tmp.path().join("y.npy")]);

    // The 193-byte file of issue 19 (it crashed LibTorch's reader): a header for (8, 1, 28, 28) and
    // no data.
    let dict =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (8, 1, 28, 28), }}{}\n", " ".repeat(115));
    let header_only = [&b"\x93NUMPY\x01\x00\xb7\x00"[..], dict.as_bytes()].concat();
    assert_eq!(header_only.len(), 193);
    std::fs::write(&input, &header_only).unwrap();
    let output = tmp.path().join("z.npy");
    assert_user_error(&forward(tmp.path(), &input, &output), &["x.npy", "truncated", "needs 25088 bytes"]);
    // A valid file cut in half (LibTorch's reader read past its buffer).
    let valid = encode_npy_f32(&[2, 1, 28, 28], &vec![0.5; 2 * 784]);
    std::fs::write(&input, &valid[..valid.len() / 2]).unwrap();
    assert_user_error(&forward(tmp.path(), &input, &output), &["x.npy", "truncated", "needs 6272 bytes"]);
    // Not float32, not four dimensions.
    let f64s = NpyArray { shape: vec![1, 1, 28, 28], data: NpyData::F64(vec![0.0; 784]) };
    std::fs::write(&input, encode_npy(&f64s)).unwrap();
    assert_user_error(
        &forward(tmp.path(), &input, &output),
        &["x.npy", "'<f8'", "float32 array [N, C, H, W]"],
    );
    std::fs::write(&input, encode_npy_f32(&[784], &[0.0; 784])).unwrap();
    assert_user_error(&forward(tmp.path(), &input, &output), &["x.npy", "[784]"]);
    assert!(!output.exists());
}

#[test]
fn forward_output_must_be_a_file_in_an_existing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let input = input(tmp.path());
    let dir = tmp.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let before = (listing(tmp.path()), listing(&dir));
    // A directory: before the fix this wrote `out.npy.tmp` beside it (`/tmp.npy.tmp` for `/tmp`).
    assert_user_error(&forward(tmp.path(), &input, &dir), &["--output", "out", "is a directory"]);
    let missing = tmp.path().join("missing/y.npy");
    assert_user_error(&forward(tmp.path(), &input, &missing), &["--output", "missing", "does not exist"]);
    assert_eq!((listing(tmp.path()), listing(&dir)), before, "nothing may be written");
}

#[test]
fn disentanglement_bins_are_range_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let codes = tmp.path().join("c.npy");
    let factors = tmp.path().join("f.npy");
    let n = 12;
    let c: Vec<f32> = (0..2 * n).map(|i| (i * i % 7) as f32).collect();
    std::fs::write(&codes, encode_npy_f32(&[n, 2], &c)).unwrap();
    let f = NpyArray { shape: vec![n, 1], data: NpyData::I64((0..n as i64).map(|i| i % 3).collect()) };
    std::fs::write(&factors, encode_npy(&f)).unwrap();
    let metrics = |bins: &str| {
        Command::new(VRL)
            .args(["metrics", "disentanglement", "--metrics", "mig", "--bins", bins, "--codes"])
            .arg(&codes)
            .arg("--factors")
            .arg(&factors)
            .output()
            .unwrap()
    };
    // 4e9 bins aborted allocating 32 GB.
    assert_user_error(&metrics("4000000000"), &["--bins 4000000000", "from 2 to 100000"]);
    assert_user_error(&metrics("1"), &["--bins 1", "from 2 to 100000"]);
    let out = metrics("100000");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_input_of_the_wrong_shape_is_one_paragraph_naming_model_and_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rgb.npy");
    std::fs::write(&path, encode_npy_f32(&[2, 3, 28, 28], &vec![0.5; 2 * 3 * 784])).unwrap();
    let out = forward(tmp.path(), &path, Path::new("y.npy"));
    assert_user_error(&out, &["model `mnist_cnn`", "[2, 3, 28, 28]", "rgb.npy", "channels"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("Exception raised from") && !err.contains("frame #"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!tmp.path().join("y.npy").exists());
}

#[test]
fn every_output_flag_refuses_a_directory_before_reading_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let missing = tmp.path().join("absent.npy");
    let missing = missing.to_str().unwrap();
    for args in [
        vec!["inspect", "layers", "--weights", missing, "--output", dir],
        vec!["optim", "replay", "--optimizer", "sgd", "--params", missing, "--grads", missing],
        vec!["metrics", "disentanglement", "--codes", missing, "--factors", missing, "--output", dir],
    ] {
        let mut cmd = Command::new(VRL);
        cmd.args(&args);
        if args[0] == "optim" {
            cmd.args(["--steps", "1", "--output", dir]);
        }
        let out = cmd.env("RUST_LOG", "warn").env_remove("RUST_BACKTRACE").output().unwrap();
        assert_user_error(&out, &["--output", "is a directory"]);
    }
    assert_eq!(listing(tmp.path()), Vec::<PathBuf>::new());
}
