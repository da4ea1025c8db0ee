//! End-to-end tests of the `vrl` binary on small data the tests make: resume after SIGKILL and SIGTERM
//! gives exactly the results of an uninterrupted run, and bad input exits with status 2 and a message.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::{experiments_dir, make_data};

const VRL: &str = env!("CARGO_BIN_EXE_vrl");

fn vrl(runs: &Path, data: &Path, extra: &[&str], fault: Option<&str>) -> Output {
    let mut cmd = Command::new(VRL);
    cmd.args(["experiment", "mnist", "--runs-dir"])
        .arg(runs)
        .arg("--experiments-dir")
        .arg(experiments_dir())
        .arg("--set")
        .arg(format!("data.dir={}", data.display()));
    for s in [
        "device=cpu",
        "threads=1",
        "train.epochs=2",
        "train.batch_size=32",
        "train.log_every=5",
        "train.checkpoint_every=7",
        "train.schedule.warmup_steps=5",
        "model.args.widths=[4, 8]",
    ] {
        cmd.args(["--set", s]);
    }
    cmd.args(extra);
    cmd.env("RUST_LOG", "warn");
    match fault {
        Some(f) => cmd.env("VRL_FAULT", f),
        None => cmd.env_remove("VRL_FAULT"),
    };
    cmd.output().unwrap()
}

fn run_dir(runs: &Path) -> PathBuf {
    let latest = runs.join("mnist/latest");
    runs.join("mnist").join(std::fs::read_link(latest).unwrap())
}

/// Everything a run produced that must not depend on interruptions: results (without wall-clock
/// timing), the merged metrics, and the final weights of each optimizer.
fn fingerprint(runs: &Path) -> (serde_json::Value, String, Vec<Vec<u8>>) {
    let dir = run_dir(runs);
    let mut results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    results.as_object_mut().unwrap().remove("timing");
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let weights = ["sgd", "adamw"]
        .iter()
        .map(|o| std::fs::read(dir.join(o).join("model.safetensors")).unwrap())
        .collect();
    (results, metrics, weights)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn interrupted_runs_resume_to_identical_results() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    make_data(&data, 600, 200);

    let reference = tmp.path().join("reference");
    let out = vrl(&reference, &data, &[], None);
    assert!(out.status.success(), "uninterrupted run failed: {}", stderr(&out));
    let expected = fingerprint(&reference);
    let acc = expected.0["test_accuracy"]["sgd"].as_f64().unwrap();
    assert!(acc > 0.5, "the toy task should be learnt: {}", expected.0);
    assert!(expected.1.lines().count() > 10);

    // SIGKILL between checkpoints (last one at step 21, a metrics line at 25 that must be dropped).
    let killed = tmp.path().join("killed");
    let out = vrl(&killed, &data, &[], Some("kill@26"));
    assert_eq!(out.status.signal(), Some(9), "expected death by SIGKILL: {}", stderr(&out));
    assert!(!run_dir(&killed).join("results.json").exists());
    let out = vrl(&killed, &data, &[], None);
    assert!(out.status.success(), "resumed run failed: {}", stderr(&out));
    assert_eq!(
        fingerprint(&killed),
        expected,
        "a run killed at step 26 and resumed differs from an uninterrupted one"
    );

    // SIGTERM: checkpoint at the very step, exit status 75, then resume.
    let termed = tmp.path().join("termed");
    let out = vrl(&termed, &data, &[], Some("term@10"));
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("SIGTERM"), "{}", stderr(&out));
    assert!(run_dir(&termed).join("sgd/checkpoints/ckpt-0000000010.safetensors").exists());
    let out = vrl(&termed, &data, &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fingerprint(&termed), expected, "a run stopped by SIGTERM and resumed differs");

    // A finished run is reported, not repeated; --fresh starts over and ends the same.
    let out = vrl(&reference, &data, &[], None);
    assert!(out.status.success() && stderr(&out).contains("already finished"), "{}", stderr(&out));
    let out = vrl(&reference, &data, &["--fresh"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fingerprint(&reference), expected);
    for f in ["config.toml", "meta.json", "report.md", "loss.svg", "test_accuracy.svg"] {
        assert!(run_dir(&reference).join(f).exists(), "{f} missing");
    }
}

fn assert_user_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "expected exit status 2, got {:?}: {err}", out.status);
    for n in needles {
        assert!(err.contains(n), "message lacks `{n}`: {err}");
    }
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
}

#[test]
fn bad_input_exits_2_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    make_data(&data, 64, 16);
    let runs = tmp.path().join("runs");

    assert_user_error(&vrl(&runs, &data, &["--set", "train.lrr=0.1"], None), &["train.lrr", "unknown field"]);
    assert_user_error(
        &vrl(&runs, &data, &["--set", "train.epochs=many"], None),
        &["train.epochs", "expected u64"],
    );
    assert_user_error(
        &vrl(&runs, &data, &["--set", "optimizers=[{name='adamz', hparams={}}]"], None),
        &["unknown optimizer `adamz`"],
    );
    assert_user_error(
        &vrl(&runs, &data, &["--set", "optimizers=[{name='sgd', hparams={momentun=0.9}}]"], None),
        &["momentun"],
    );
    assert_user_error(
        &vrl(&runs, &data, &["--set", "model.name=resnet9000"], None),
        &["unknown model `resnet9000`"],
    );
    assert_user_error(&vrl(&runs, &data, &["--preset", "huge"], None), &["no preset `huge`"]);
    assert_user_error(&vrl(&runs, &data, &["--set", "device=tpu"], None), &["device `tpu`"]);
    assert_user_error(
        &vrl(&runs, &data, &["--set", "precision=fp64"], None),
        &["precision", "`fp64`", "expected `fp32` or `bf16`"],
    );
    assert_user_error(&vrl(&runs, &data, &["--set", "precision=fp16"], None), &["`fp16`", "gradient scaler"]);
    assert_user_error(&vrl(&runs, &data, &["--device", "tpu"], None), &["--device", "device `tpu`"]);
    if !tch::Cuda::is_available() {
        assert_user_error(&vrl(&runs, &data, &["--device", "cuda"], None), &["CUDA is not available"]);
    }

    // Truncated data: the file and what was wrong are named.
    let labels = data.join("t10k-labels-idx1-ubyte");
    let bytes = std::fs::read(&labels).unwrap();
    std::fs::write(&labels, &bytes[..bytes.len() - 3]).unwrap();
    assert_user_error(&vrl(&runs, &data, &[], None), &["t10k-labels-idx1-ubyte", "truncated"]);
    std::fs::write(data.join("train-images-idx3-ubyte"), b"\x00\x00\x08\x01garbage").unwrap();
    assert_user_error(&vrl(&runs, &data, &[], None), &["train-images-idx3-ubyte", "magic number"]);

    let out = Command::new(VRL)
        .args(["experiment", "nope", "--experiments-dir"])
        .arg(experiments_dir())
        .output()
        .unwrap();
    assert_user_error(&out, &["unknown experiment `nope`", "mnist"]);
}

#[test]
fn doctor_reports_versions_and_linked_cuda_library() {
    let out = Command::new(VRL).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("LibTorch   2.11.0"), "{text}");
    assert!(text.contains("threads"), "{text}");
    // The wheel is a CUDA build: libtorch_cuda must be linked even on a machine without a GPU,
    // so that CUDA is found where there is one.
    if text.contains("built with CUDA") {
        assert!(text.contains("(libtorch_cuda linked)"), "{text}");
    }
}

#[test]
fn models_forward_runs_and_rejects_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("x.npy");
    let output = tmp.path().join("y.npy");
    tch::Tensor::zeros([2, 1, 28, 28], (tch::Kind::Float, tch::Device::Cpu)).write_npy(&input).unwrap();
    let forward = |extra: &[&str]| {
        Command::new(VRL)
            .args(["models", "forward", "--model", "mnist_cnn", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = forward(&["--set", "model.num_classes=3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(tch::Tensor::read_npy(&output).unwrap().size(), [2, 3]);

    assert_user_error(&forward(&["--set", "model.num_clases=3"]), &["num_clases"]);
    assert_user_error(&forward(&["--set", "num_classes=3"]), &["model."]);

    let weights = tmp.path().join("w.safetensors");
    let foo = tch::Tensor::ones([2], (tch::Kind::Float, tch::Device::Cpu));
    tch::Tensor::write_safetensors(&[("foo", &foo)], &weights).unwrap();
    let w = weights.to_str().unwrap();
    assert_user_error(
        &forward(&["--weights", w]),
        &["w.safetensors", "unexpected: foo", "missing: conv1.weight"],
    );
    std::fs::write(&weights, b"not safetensors").unwrap();
    assert_user_error(&forward(&["--weights", w]), &["w.safetensors", "not a valid safetensors"]);

    std::fs::write(&input, b"garbage").unwrap();
    assert_user_error(&forward(&[]), &["x.npy"]);
    let out = Command::new(VRL)
        .args(["models", "forward", "--model", "resnet9000", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert_user_error(&out, &["unknown model `resnet9000`"]);
}

#[test]
fn optim_replay_matches_hand_computed_sgd_momentum() {
    let tmp = tempfile::tempdir().unwrap();
    let (params, grads, output) = (
        tmp.path().join("p.safetensors"),
        tmp.path().join("g.safetensors"),
        tmp.path().join("o.safetensors"),
    );
    // `w` float64 [2, 2], `b` float32 [2]; three steps of gradients.
    let w0 = [1.0, -2.0, 0.5, 3.0];
    let b0 = [0.25f32, -0.75];
    let gw = [[0.1, 0.2, -0.3, 0.4], [-0.5, 0.6, 0.7, -0.8], [0.9, -1.0, 1.1, 1.2]];
    let gb = [[1.0f32, -1.0], [0.5, 0.5], [-2.0, 0.25]];
    let w = tch::Tensor::from_slice(&w0).reshape([2, 2]);
    let b = tch::Tensor::from_slice(&b0);
    tch::Tensor::write_safetensors(&[("w", &w), ("b", &b)], &params).unwrap();
    let mut named: Vec<(String, tch::Tensor)> = Vec::new();
    for k in 0..3 {
        named.push((format!("{k}/w"), tch::Tensor::from_slice(&gw[k]).reshape([2, 2])));
        named.push((format!("{k}/b"), tch::Tensor::from_slice(&gb[k])));
    }
    let refs: Vec<(&str, &tch::Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
    tch::Tensor::write_safetensors(&refs, &grads).unwrap();
    let replay = |extra: &[&str]| {
        Command::new(VRL)
            .args(["optim", "replay", "--params"])
            .arg(&params)
            .arg("--grads")
            .arg(&grads)
            .arg("--output")
            .arg(&output)
            .args(extra)
            .output()
            .unwrap()
    };
    let out =
        replay(&["--optimizer", "SGD", "--hparam", "lr=0.1", "--hparam", "momentum=0.9", "--steps", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // torch.optim.SGD: buf ← g at the first step, then buf ← 0.9 buf + g; θ ← θ − 0.1 buf.
    let sgd = |theta: &mut [f64], grads: &[Vec<f64>]| {
        let mut buf = vec![0.0; theta.len()];
        for (k, g) in grads.iter().enumerate() {
            for i in 0..theta.len() {
                buf[i] = if k == 0 { g[i] } else { 0.9 * buf[i] + g[i] };
                theta[i] -= 0.1 * buf[i];
            }
        }
    };
    let mut w_want = w0.to_vec();
    sgd(&mut w_want, &gw.iter().map(|g| g.to_vec()).collect::<Vec<_>>());
    let mut b_want: Vec<f64> = b0.iter().map(|&x| x as f64).collect();
    sgd(&mut b_want, &gb.iter().map(|g| g.iter().map(|&x| x as f64).collect()).collect::<Vec<_>>());

    let result: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(&output).unwrap().into_iter().collect();
    assert_eq!(result.len(), 2);
    let (w1, b1) = (&result["w"], &result["b"]);
    assert_eq!((w1.kind(), w1.size()), (tch::Kind::Double, vec![2, 2]));
    assert_eq!((b1.kind(), b1.size()), (tch::Kind::Float, vec![2]));
    let w1: Vec<f64> = Vec::try_from(&w1.reshape([-1])).unwrap();
    let b1: Vec<f32> = Vec::try_from(b1).unwrap();
    for (got, want) in w1.iter().zip(&w_want) {
        assert!((got - want).abs() < 1e-12, "w: {got} vs {want}");
    }
    for (got, want) in b1.iter().zip(&b_want) {
        assert!((*got as f64 - want).abs() < 1e-6, "b: {got} vs {want}");
    }

    // Bad input: a missing gradient names the key and the parameter; unknown optimizer; bad value.
    assert_user_error(
        &replay(&["--optimizer", "sgd", "--hparam", "momentum=0.9", "--steps", "4"]),
        &["g.safetensors", "missing gradient `3/b`", "parameter `b`"],
    );
    assert_user_error(
        &replay(&["--optimizer", "sgdd", "--steps", "1"]),
        &["unknown optimizer `sgdd`", "adamw"],
    );
    assert_user_error(
        &replay(&["--optimizer", "sgd", "--hparam", "momentum=2", "--steps", "1"]),
        &["momentum"],
    );
    assert_user_error(
        &replay(&["--optimizer", "sgd", "--hparam", "momentom=0.9", "--steps", "1"]),
        &["momentom"],
    );
}

/// `vrl optim replay` with second-order estimates (`hessian/{k}/{param}`), checked against Sophia's
/// formula by hand, and its refusals of bad input: each names the file, the tensor or the value.
#[test]
fn optim_replay_takes_hessian_estimates_and_rejects_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name);
    let write = |name: &str, tensors: &[(&str, tch::Tensor)]| {
        let refs: Vec<(&str, &tch::Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        tch::Tensor::write_safetensors(&refs, path(name)).unwrap();
    };
    let w0 = [1.0, -2.0, 0.5, 3.0];
    write("p.safetensors", &[("w", tch::Tensor::from_slice(&w0).reshape([2, 2]))]);
    let g = [[0.1, 0.2, -0.3, 0.4], [-0.5, 0.6, 0.7, -0.8]];
    let h = [[2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0]];
    let t = |x: &[f64; 4]| tch::Tensor::from_slice(x).reshape([2, 2]);
    let good = [("0/w", t(&g[0])), ("1/w", t(&g[1])), ("hessian/0/w", t(&h[0])), ("hessian/1/w", t(&h[1]))];
    write("g.safetensors", &good);
    let replay = |grads: &str, extra: &[&str]| {
        Command::new(VRL)
            .args(["optim", "replay", "--params"])
            .arg(path("p.safetensors"))
            .arg("--grads")
            .arg(path(grads))
            .arg("--output")
            .arg(path("o.safetensors"))
            .args(extra)
            .output()
            .unwrap()
    };
    let sophia = ["--optimizer", "Sophia", "--hparam", "update_period=1", "--hparam", "p=1", "--steps", "2"];
    let out = replay("g.safetensors", &[&sophia[..], &["--hparam", "lr=0.1"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    // SophiaH: m ← 0.96 m + 0.04 g, h ← 0.99 h + 0.01 ĥ, θ ← θ − η clamp(m / h, ±1).
    let mut want = w0;
    let (mut m, mut hm) = ([0.0; 4], [0.0; 4]);
    for k in 0..2 {
        for i in 0..4 {
            m[i] = 0.96 * m[i] + 0.04 * g[k][i];
            hm[i] = 0.99 * hm[i] + 0.01 * h[k][i];
            want[i] -= 0.1 * (m[i] / hm[i]).clamp(-1.0, 1.0);
        }
    }
    let result: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(path("o.safetensors")).unwrap().into_iter().collect();
    let got: Vec<f64> = Vec::try_from(&result["w"].reshape([-1])).unwrap();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-12, "sophia replay: {got:?} vs {want:?}");
    }

    // Without the estimates Sophia cannot step, and says which tensor is missing.
    write("g_first_order.safetensors", &[("0/w", t(&g[0])), ("1/w", t(&g[1]))]);
    assert_user_error(
        &replay("g_first_order.safetensors", &sophia),
        &["g_first_order.safetensors", "`sophia` needs a Hessian-diagonal estimate", "missing `hessian/0/w`"],
    );
    // A tensor that names no parameter (here a misspelt one) is refused, listing the parameters.
    write("g_typo.safetensors", &[("0/w", t(&g[0])), ("0/weight", t(&g[0]))]);
    assert_user_error(
        &replay("g_typo.safetensors", &["--optimizer", "sgd", "--steps", "1"]),
        &["g_typo.safetensors", "tensor `0/weight`", "parameter of --params (w)"],
    );
    // A non-finite gradient: refused at its step, naming the parameter.
    let mut bad = g[1];
    bad[2] = f64::NAN;
    write("g_nan.safetensors", &[("0/w", t(&g[0])), ("1/w", t(&bad))]);
    assert_user_error(
        &replay("g_nan.safetensors", &["--optimizer", "adamw", "--steps", "2"]),
        &["g_nan.safetensors, step 1", "gradient of `w` is not finite"],
    );
    // A non-finite Hessian estimate.
    let bad_h = good.iter().map(|(n, t)| (*n, t.copy())).collect::<Vec<_>>();
    let _ = bad_h[3].1.view(-1).get(0).fill_(f64::INFINITY);
    write("g_bad_h.safetensors", &bad_h);
    assert_user_error(
        &replay("g_bad_h.safetensors", &sophia),
        &["g_bad_h.safetensors, step 1", "estimate for `w` is not finite"],
    );
    // A gradient of the wrong shape; a negative learning rate; an unknown hyper-parameter.
    write("g_shape.safetensors", &[("0/w", tch::Tensor::from_slice(&g[0]))]);
    assert_user_error(
        &replay("g_shape.safetensors", &["--optimizer", "sgd", "--steps", "1"]),
        &["gradient `0/w` has shape [4]", "[2, 2]"],
    );
    assert_user_error(
        &replay("g.safetensors", &["--optimizer", "adamw", "--hparam", "lr=-0.1", "--steps", "1"]),
        &["`adamw`", "`lr`", "-0.1"],
    );
    assert_user_error(
        &replay("g.safetensors", &["--optimizer", "lion", "--hparam", "momentum=0.9", "--steps", "1"]),
        &["`momentum`", "unknown hyper-parameter", "betas"],
    );
}

#[test]
fn the_mnist_study_runs_end_to_end_in_bf16() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    make_data(&data, 300, 100);
    let runs = tmp.path().join("runs");
    let out = vrl(&runs, &data, &["--set", "precision=bf16"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = run_dir(&runs);
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(config.contains("precision = \"bf16\""), "{config}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    for opt in ["sgd", "adamw"] {
        assert_eq!(results["optimizers"][opt]["status"], "ok", "{results}");
        let loss = results["optimizers"][opt]["test_loss"].as_f64().unwrap();
        assert!(loss.is_finite(), "{results}");
    }
    let acc = results["test_accuracy"]["sgd"].as_f64().unwrap();
    assert!(acc > 0.5, "the toy task should be learnt in bf16 too: {results}");
}

#[test]
fn a_diverging_optimizer_is_recorded_and_the_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    make_data(&data, 200, 50);
    let runs = tmp.path().join("runs");
    let out = vrl(
        &runs,
        &data,
        &[
            "--set",
            "optimizers=[{name='sgd', hparams={lr=1e12, momentum=0.9}}, {name='adamw', hparams={lr=1e-3}}]",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = run_dir(&runs);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["optimizers"]["sgd"]["status"], "diverged", "{results}");
    assert!(results["optimizers"]["sgd"]["diverged_at_step"].as_u64().is_some());
    assert_eq!(results["optimizers"]["adamw"]["status"], "ok", "{results}");
}

#[test]
fn inspect_layers_writes_one_row_per_weight_and_rejects_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vrl-layerstats/tests/fixtures/layerstats_reference.safetensors");
    let csv = tmp.path().join("stats.csv");
    let inspect = |weights: &Path, extra: &[&str]| {
        Command::new(VRL).args(["inspect", "layers", "--weights"]).arg(weights).args(extra).output().unwrap()
    };
    let out = inspect(&fixture, &["--output", csv.to_str().unwrap(), "--top-k", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("name,shape,alpha,entropy,l2,pca_topk_energy,top_k,"));
    let rows: Vec<&str> = lines.collect();
    // 17 weights of rank 2 or 4; the bias and the 1-D samples are left out.
    assert_eq!(rows.len(), 17, "{text}");
    let tiny = rows.iter().find(|r| r.starts_with("dense_tiny.weight,10x5,,")).expect("dense_tiny row");
    assert!(tiny.ends_with(
        ",not_fitted,too few eigenvalues to fit a power law (5 above the threshold 1e-5; need 8)"
    ));
    assert!(rows.iter().all(|r| r.split(',').nth(6) == Some("3")), "{text}");
    // Without --output the same table goes to standard output.
    let out = inspect(&fixture, &["--top-k", "3"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), text);

    let bytes = std::fs::read(&fixture).unwrap();
    let cut = tmp.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_user_error(&inspect(&cut, &[]), &["cut.safetensors", "not a valid safetensors"]);
    assert_user_error(
        &inspect(&tmp.path().join("none.safetensors"), &[]),
        &["none.safetensors", "cannot read"],
    );
    assert_user_error(&inspect(&fixture, &["--top-k", "0"]), &["top_k"]);
}

#[test]
fn bench_model_step_takes_a_device_and_refuses_a_missing_one() {
    let bench = |extra: &[&str]| {
        Command::new(VRL)
            .args(["bench", "model-step", "--model", "mnist_cnn", "--set", "model.num_classes=10"])
            .args(["--set", "model.img_size=28", "--set", "model.in_chans=1"])
            .args(["--batch-size", "2", "--seconds", "0", "--json"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = bench(&["--device", "cpu"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(json["device"], "cpu");
    assert!(json["images_per_sec"].as_f64().unwrap() > 0.0);
    // No machine has a hundredth GPU: refused on every machine, naming the value.
    assert_user_error(&bench(&["--device", "cuda:99"]), &["cuda:99"]);
    assert_user_error(&bench(&["--device", "tpu"]), &["tpu", "expected"]);
}
