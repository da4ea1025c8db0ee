//! Every model against timm: `python/model_reference.py` (run by [`fixtures`] on first use) writes
//! fixtures that hold timm's weights (by their timm keys), an input and timm's logits in eval and train
//! mode; vrl's model must load the weights by the same keys and give the same logits.
//! `param_counts.json` holds timm's parameter count of every model at its default configuration; vrl's
//! must be equal. For the first case of each family the fixture also holds timm's gradients of a fixed
//! linear function of the logits.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tch::{Device, Tensor, nn};
use vrl_models::ModelArgs;
use vrl_models::weights::{load_into_varstore, load_safetensors};

/// What to do when the fixtures cannot be made.
const HINT: &str = "run `cargo xtask test`, which installs torch and the pins of python/requirements.txt \
                    (timm) into the venv and sets VRL_PYTHON";

/// The workspace root.
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().and_then(Path::parent).unwrap_or(manifest).to_path_buf()
}

/// The directory of fixtures for the current script, cases and pins: `python/model_reference.py`'s
/// output, generated once into `target/tmp/model-reference/<hash>/` (hash of the script, every case
/// file and `python/requirements.txt`), so a second run costs nothing and an edited case regenerates.
/// The test processes that nextest runs side by side take turns through a lock file; the first
/// generates, the others find the result.
fn fixtures() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| generate().unwrap_or_else(|e| panic!("cannot make the timm fixtures: {e}"))).clone()
}

/// The reference script's inputs, in a fixed order.
fn inputs(root: &Path) -> Result<Vec<PathBuf>, String> {
    let cases = root.join("python/model_cases");
    let mut files: Vec<PathBuf> = fs::read_dir(&cases)
        .map_err(|e| format!("cannot list {}: {e}", cases.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "py"))
        .collect();
    files.sort();
    files.insert(0, root.join("python/requirements.txt"));
    files.insert(0, root.join("python/model_reference.py"));
    Ok(files)
}

/// The venv's python: `$VRL_PYTHON` (set by `cargo xtask`), else the venv xtask makes in the cache.
fn python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("VRL_PYTHON").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let venv = vrl_cache::cache_dir().join("venv/bin/python");
    if venv.exists() {
        Ok(venv)
    } else {
        Err(format!("VRL_PYTHON is not set and there is no venv python at {}; {HINT}", venv.display()))
    }
}

fn generate() -> Result<PathBuf, String> {
    let root = root();
    let mut hash = Sha256::new();
    for path in inputs(&root)? {
        let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let name = path.strip_prefix(&root).unwrap_or(&path).to_string_lossy().into_owned();
        hash.update(format!("{name}\0{}\0", bytes.len()));
        hash.update(&bytes);
    }
    let hash: String = hash.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("model-reference");
    let dir = base.join(&hash);
    let done = dir.join("param_counts.json");
    if done.exists() {
        return Ok(dir);
    }
    fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    let lock_path = base.join(".lock");
    let lock =
        fs::File::create(&lock_path).map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    if done.exists() {
        return Ok(dir); // another test process made them while this one waited
    }
    let python = python()?;
    let tmp = base.join(format!("{hash}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    let start = Instant::now();
    let out = Command::new(&python)
        .arg(root.join("python/model_reference.py"))
        .arg("--out")
        .arg(&tmp)
        .current_dir(&root)
        .output()
        .map_err(|e| format!("cannot run {}: {e}; {HINT}", python.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "`{} python/model_reference.py --out {}` failed ({}):\n{}\n{HINT}",
            python.display(),
            tmp.display(),
            out.status,
            tail.join("\n")
        ));
    }
    // Older generations (other hashes) go; the new one appears whole, by a rename.
    for entry in fs::read_dir(&base).map_err(|e| format!("cannot list {}: {e}", base.display()))?.flatten() {
        let p = entry.path();
        if p != tmp && p != lock_path {
            let _ = fs::remove_dir_all(&p);
        }
    }
    fs::rename(&tmp, &dir)
        .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), dir.display()))?;
    eprintln!("generated the timm fixtures in {} in {:.1} s", dir.display(), start.elapsed().as_secs_f64());
    Ok(dir)
}

/// For a fixture with stochastic depth (metadata `train_seed`): seeds LibTorch's CPU generator as
/// the script seeded torch's before its train-mode forward, so that the per-sample masks are the
/// same draws (tch and torch share LibTorch's generator and its bernoulli kernel).
fn seed_train(meta: &HashMap<String, String>) {
    if let Some(seed) = meta.get("train_seed") {
        tch::manual_seed(seed.parse().unwrap());
    }
}

/// The fixture files, sorted.
fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    cases.sort();
    cases
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let scale = b.abs().max().double_value(&[]).max(1.0);
    (a - b).abs().max().double_value(&[]) / scale
}

#[test]
fn logits_match_timm() {
    let cases = cases();
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
        seed_train(&meta);
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
    for path in &cases() {
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
        seed_train(&meta);
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
    let text = fs::read_to_string(fixtures().join("param_counts.json")).unwrap();
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
