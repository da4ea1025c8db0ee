//! Every model against timm: fixtures made by `python/model_reference.py` hold timm's weights (by
//! their timm keys), an input and timm's logits in eval and train mode; vrl's model must load the
//! weights by the same keys and give the same logits. `param_counts.json` holds timm's parameter
//! count of every model at its default configuration; vrl's must be equal. For the first case of each
//! family the fixture also holds timm's gradients of a fixed linear function of the logits.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{Device, Tensor, nn};
use vrl_models::ModelArgs;
use vrl_models::weights::{load_into_varstore, load_safetensors};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models")
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let scale = b.abs().max().double_value(&[]).max(1.0);
    (a - b).abs().max().double_value(&[]) / scale
}

#[test]
fn logits_match_timm() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no fixtures in {}", fixtures().display());
    let mut failures = Vec::new();
    for path in &cases {
        let (tensors, meta) = load_safetensors(path).unwrap();
        let name = &meta["vrl_model"];
        let args: ModelArgs = serde_json::from_str(&meta["vrl_args"]).unwrap();
        let state: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("state/").map(|k| (k.to_string(), v.shallow_clone())))
            .collect();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = vrl_models::create(name, &vs.root(), &args).unwrap();
        if let Err(e) = load_into_varstore(&vs, &state, path) {
            failures.push(format!("{}: {e}", path.display()));
            continue;
        }
        let x = &tensors["input"];
        let eval = tch::no_grad(|| model.forward_t(x, false));
        let train = tch::no_grad(|| model.forward_t(x, true));
        // float32 through a few dozen layers: differences of summation order stay near 1e-5.
        for (mode, ours, theirs) in
            [("eval", &eval, &tensors["logits_eval"]), ("train", &train, &tensors["logits_train"])]
        {
            if ours.size() != theirs.size() {
                failures.push(format!(
                    "{}: {mode} logits shape {:?}, timm {:?}",
                    path.display(),
                    ours.size(),
                    theirs.size()
                ));
                continue;
            }
            let d = max_rel_diff(ours, theirs);
            if d > 1e-4 {
                failures.push(format!(
                    "{} ({name}): {mode} logits differ from timm by {d:.2e} (relative)",
                    path.display()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// For the first case of each family: gradients of `sum(w * logits)` in train mode, parameter by parameter.
#[test]
fn gradients_match_timm() {
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    paths.sort();
    for path in &paths {
        let (tensors, meta) = load_safetensors(path).unwrap();
        let Some(weight) = tensors.get("loss_weight") else { continue };
        let args: ModelArgs = serde_json::from_str(&meta["vrl_args"]).unwrap();
        let state: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("state/").map(|k| (k.to_string(), v.shallow_clone())))
            .collect();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = vrl_models::create(&meta["vrl_model"], &vs.root(), &args).unwrap();
        load_into_varstore(&vs, &state, path).unwrap();
        (model.forward_t(&tensors["input"], true) * weight).sum(tch::Kind::Float).backward();
        let vars = vs.variables();
        let scale = tensors
            .iter()
            .filter(|(k, _)| k.starts_with("grad/"))
            .map(|(_, g)| g.abs().max().double_value(&[]))
            .fold(1e-6, f64::max);
        for (key, expected) in tensors.iter().filter_map(|(k, v)| k.strip_prefix("grad/").map(|k| (k, v))) {
            let ours = vars[key].grad();
            if !ours.defined() {
                failures.push(format!("{}: no gradient for `{key}`", path.display()));
                continue;
            }
            let d = (&ours - expected).abs().max().double_value(&[]) / scale;
            if d > 1e-4 {
                failures.push(format!(
                    "{}: gradient of `{key}` differs from timm by {d:.2e} (relative)",
                    path.display()
                ));
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixtures carry gradients");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn parameter_counts_match_timm() {
    let text = std::fs::read_to_string(fixtures().join("param_counts.json")).unwrap();
    let counts: HashMap<String, i64> = serde_json::from_str(&text).unwrap();
    assert!(!counts.is_empty(), "param_counts.json lists no model");
    let mut failures = Vec::new();
    for (name, expected) in &counts {
        match vrl_models::num_params(name, &ModelArgs::default()) {
            Ok(n) if n == *expected => {}
            Ok(n) => failures.push(format!("{name}: {n} parameters, timm has {expected}")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
