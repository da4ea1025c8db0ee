//! `cargo xtask bench`: criterion benches, then vrl against PyTorch eager (or another reference, such as
//! WeightWatcher for the layer statistics) on the same work, side by side.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::libtorch::TorchEnv;
use crate::{cmd, page};

/// One vrl-against-reference comparison. Both commands print, as the last line of stdout, one JSON
/// object such as `{"name":"mnist_train_step","batch_size":128,"threads":2,"images_per_sec":1234.5}`.
pub struct Comparison {
    /// The group `cargo xtask bench GROUP` selects (`train`, `data`, `models`, `layers`, `metrics`;
    /// `optim` is in [`STEP_TIMES`]).
    pub group: &'static str,
    /// The crate whose criterion benches belong to the group.
    pub package: &'static str,
    /// Name in the table.
    pub name: &'static str,
    /// Arguments of `target/release/vrl`.
    pub vrl_args: &'static [&'static str],
    /// The reference script, relative to the workspace root, run with the venv's python.
    pub python_script: &'static str,
    /// Arguments of the script.
    pub python_args: &'static [&'static str],
    /// The JSON key compared; higher is better.
    pub metric: &'static str,
    /// What the script runs, for the table.
    pub reference: &'static str,
    /// Runs once before the rounds: installs the reference, writes the inputs.
    pub prepare: Option<fn(&Path, &TorchEnv) -> Result<()>>,
    /// Keys of the reference's JSON line in the last round to print under the table.
    pub report: &'static [&'static str],
}

/// The weights `bench layers` reads (written by `python/bench_layerstats.py --make-weights`).
const RESNET50: &str = "target/bench/resnet50.safetensors";

/// The codes and factors `bench metrics` reads (written by `python/bench_disentangle.py --make-data`).
const METRICS_CODES: &str = "target/bench/metrics_codes.npy";
const METRICS_FACTORS: &str = "target/bench/metrics_factors.npy";

/// One `models` row: `vrl bench model-step` against `python/bench_model_step.py` with the same
/// arguments (the model, then any `--set model.KEY=VALUE` or `--precision P` pairs), 100 classes,
/// batch 64 (or `batch = N;` first), 2 threads.
macro_rules! model_step_comparison {
    ($name:literal, $model:literal $(, $arg:literal)*) => {
        model_step_comparison!(batch = "64"; $name, $model $(, $arg)*)
    };
    (batch = $batch:literal; $name:literal, $model:literal $(, $arg:literal)*) => {
        Comparison {
            group: "models",
            package: "vrl-models",
            name: $name,
            vrl_args: &[
                "bench",
                "model-step",
                "--model",
                $model,
                $($arg,)*
                "--set",
                "model.num_classes=100",
                "--batch-size",
                $batch,
                "--threads",
                "2",
                "--json",
            ],
            python_script: "python/bench_model_step.py",
            python_args: &[
                "--model",
                $model,
                $($arg,)*
                "--set",
                "model.num_classes=100",
                "--batch-size",
                $batch,
                "--threads",
                "2",
                "--json",
            ],
            metric: "images_per_sec",
            reference: "timm",
            prepare: None,
            report: &[],
        }
    };
}

/// One disentanglement metric, vrl against `python/disentangle_reference.py` (disentanglement_lib's
/// code on numpy + scikit-learn), on 10,000 × 10 codes and five factors with dSprites' sizes; DCI
/// scores shape and scale (3 and 6 values; all five would take scikit-learn minutes per round).
macro_rules! metrics_comparison {
    ($metric:literal) => {
        Comparison {
            group: "metrics",
            package: "vrl-disentangle",
            name: concat!("metrics_", $metric),
            vrl_args: &[
                "bench",
                "metrics",
                "--metric",
                $metric,
                "--codes",
                METRICS_CODES,
                "--factors",
                METRICS_FACTORS,
                "--dci-factors",
                "0,1",
                "--output",
                concat!("target/bench/metrics_vrl_", $metric, ".json"),
                "--json",
            ],
            python_script: "python/bench_disentangle.py",
            python_args: &[
                "--metric",
                $metric,
                "--codes",
                METRICS_CODES,
                "--factors",
                METRICS_FACTORS,
                "--dci-factors",
                "0,1",
                "--compare",
                concat!("target/bench/metrics_vrl_", $metric, ".json"),
                "--json",
            ],
            metric: "evaluations_per_sec",
            reference: "scikit-learn",
            prepare: Some(prepare_metrics),
            report: &["vrl_seconds", "seconds", "speedup", "max_abs_delta", "score"],
        }
    };
}

/// The comparisons `cargo xtask bench` runs; add rows here.
pub const COMPARISONS: &[Comparison] = &[
    Comparison {
        group: "train",
        package: "vrl-mnist",
        name: "mnist_train_step",
        vrl_args: &["bench", "mnist-step", "--json"],
        python_script: "python/bench_mnist_step.py",
        python_args: &["--json"],
        metric: "images_per_sec",
        reference: "PyTorch",
        prepare: None,
        report: &[],
    },
    Comparison {
        group: "data",
        package: "vrl-loader",
        name: "cifar_loader",
        vrl_args: &["bench", "data", "--json"],
        python_script: "python/bench_data_loader.py",
        python_args: &["--json"],
        metric: "images_per_sec",
        reference: "PyTorch",
        prepare: None,
        report: &[],
    },
    Comparison {
        group: "layers",
        package: "vrl-layerstats",
        name: "layerstats_resnet50",
        vrl_args: &[
            "bench",
            "layers",
            "--weights",
            RESNET50,
            "--output",
            "target/bench/layerstats_vrl.csv",
            "--json",
        ],
        python_script: "python/bench_layerstats.py",
        python_args: &["--weights", RESNET50, "--compare", "target/bench/layerstats_vrl.csv", "--json"],
        metric: "layers_per_sec",
        reference: "WeightWatcher",
        prepare: Some(prepare_layers),
        report: &["layers", "fitted", "both_fitted", "max_abs_dalpha", "fitted_only_vrl", "fitted_only_ww"],
    },
    metrics_comparison!("mig"),
    metrics_comparison!("sap"),
    metrics_comparison!("dci"),
    // One training step (forward, cross-entropy, backward, AdamW) of a zoo model against timm's, at
    // 32x32, batch 64, 100 classes, 2 threads on both sides.
    model_step_comparison!("resnet18_step", "resnet18"),
    model_step_comparison!(
        "vit_tiny_step",
        "vit_tiny_patch16_224",
        "--set",
        "model.img_size=32",
        "--set",
        "model.patch_size=4"
    ),
    model_step_comparison!("convnext_atto_step", "convnext_atto"),
    // ViT-S/16 in bf16 autocast (forward and loss; float32 weights and AdamW) against timm under
    // torch.autocast, at 16x16 with 4x4 patches (17 tokens), batch 4: on CPUs without native bf16
    // (AVX2 only, no AVX512-BF16 or AMX) LibTorch's bf16 matmuls are several times slower than
    // float32 ones, on both sides, and 30 steps at 32x32 / batch 16 took over ten minutes.
    model_step_comparison!(
        batch = "4";
        "vit_small_bf16_step",
        "vit_small_patch16_224",
        "--set",
        "model.img_size=16",
        "--set",
        "model.patch_size=4",
        "--precision",
        "bf16"
    ),
];

/// The WeightWatcher version `bench layers` compares with, installed into the venv for this bench only
/// (the tests read a committed fixture written by `python/layerstats_reference.py`).
pub const WEIGHTWATCHER_VERSION: &str = "0.7.7";

/// Installs weightwatcher [`WEIGHTWATCHER_VERSION`] into the venv if needed, and writes the ResNet-50
/// weights (timm, random initialisation, seed 0) once.
fn prepare_layers(root: &Path, env: &TorchEnv) -> Result<()> {
    let check = format!(
        "import sys, weightwatcher; sys.exit(weightwatcher.__version__ != '{WEIGHTWATCHER_VERSION}')"
    );
    if !cmd::succeeds(env.apply(Command::new(&env.python).args(["-c", &check]))) {
        cmd::note(format!("installing weightwatcher {WEIGHTWATCHER_VERSION} into the venv"));
        let mut pip = Command::new(&env.python);
        pip.args(["-m", "pip", "install", "--disable-pip-version-check"])
            .arg(format!("weightwatcher=={WEIGHTWATCHER_VERSION}"));
        cmd::run(env.apply(&mut pip))
            .with_context(|| format!("cannot install weightwatcher {WEIGHTWATCHER_VERSION}"))?;
    }
    let weights = root.join(RESNET50);
    if !weights.exists() {
        if let Some(dir) = weights.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut make = Command::new(&env.python);
        make.arg(root.join("python/bench_layerstats.py"))
            .arg("--make-weights")
            .arg(&weights)
            .current_dir(root);
        cmd::run(env.apply(&mut make)).context("cannot write the ResNet-50 weights")?;
    }
    Ok(())
}

/// One optimizer-step comparison (`cargo xtask bench optim`): `vrl bench optim-step` against
/// `python/bench_optim_step.py`, 2 threads each, timed in milliseconds per step (lower is better).
/// vrl prints `ms` (median step), `min_ms` (fastest step) and `bound_ms`, the memory-bandwidth bound
/// of the update (the bytes it must move ÷ the copy bandwidth measured in the same run); the script
/// prints, per reference, its median and fastest step (`null` where the reference lacks the optimizer).
pub struct StepTime {
    /// The row's name.
    pub name: &'static str,
    /// The optimizer's name for both sides.
    pub optimizer: &'static str,
}

/// The group and crate of the [`STEP_TIMES`] rows.
const STEP_TIME_GROUP: (&str, &str) = ("optim", "vrl-optim");

/// The optimizer steps `cargo xtask bench optim` times over ResNet-50's parameter shapes.
pub const STEP_TIMES: &[StepTime] = &[
    StepTime { name: "optim_step_sgd_momentum", optimizer: "sgd" },
    StepTime { name: "optim_step_adamw", optimizer: "adamw" },
    StepTime { name: "optim_step_lamb", optimizer: "lamb" },
    StepTime { name: "optim_step_lion", optimizer: "lion" },
    StepTime { name: "optim_step_adan", optimizer: "adan" },
];

/// The references of the step-time rows, as `(column title, key of the median, key of the fastest
/// step)` in the script's line: `torch_ms` is the better of `foreach=True` and `False`;
/// `torch_fused_ms` (torch's own fused CPU kernels) is shown for information.
const STEP_TIME_REFERENCES: &[(&str, &str, &str)] = &[
    ("torch.optim", "torch_ms", "torch_min_ms"),
    ("pytorch-optimizer", "pytorch_optimizer_ms", "pytorch_optimizer_min_ms"),
    ("torch fused", "torch_fused_ms", "torch_fused_min_ms"),
];

/// Whether `group` names a group of benches.
pub fn is_group(group: &str) -> bool {
    COMPARISONS.iter().any(|c| c.group == group) || STEP_TIME_GROUP.0 == group
}

/// The crates whose criterion benches belong to `group` (all groups when `None`).
pub fn packages(group: Option<&str>) -> Vec<&'static str> {
    let mut packages: Vec<&str> = selected(group).iter().map(|c| c.package).collect();
    if group.is_none_or(|g| g == STEP_TIME_GROUP.0) {
        packages.push(STEP_TIME_GROUP.1);
    }
    packages.sort_unstable();
    packages.dedup();
    packages
}

/// The scikit-learn version `bench metrics` compares with (`python/disentangle_reference.py`'s pin).
pub const SCIKIT_LEARN_VERSION: &str = "1.9.1";

/// Installs scikit-learn [`SCIKIT_LEARN_VERSION`] into the venv if needed, and writes the codes and
/// factors once.
fn prepare_metrics(root: &Path, env: &TorchEnv) -> Result<()> {
    let check = format!("import sys, sklearn; sys.exit(sklearn.__version__ != '{SCIKIT_LEARN_VERSION}')");
    if !cmd::succeeds(env.apply(Command::new(&env.python).args(["-c", &check]))) {
        cmd::note(format!("installing scikit-learn {SCIKIT_LEARN_VERSION} into the venv"));
        let mut pip = Command::new(&env.python);
        pip.args(["-m", "pip", "install", "--disable-pip-version-check"])
            .arg(format!("scikit-learn=={SCIKIT_LEARN_VERSION}"));
        cmd::run(env.apply(&mut pip))
            .with_context(|| format!("cannot install scikit-learn {SCIKIT_LEARN_VERSION}"))?;
    }
    if !(root.join(METRICS_CODES).exists() && root.join(METRICS_FACTORS).exists()) {
        let mut make = Command::new(&env.python);
        make.arg(root.join("python/bench_disentangle.py"))
            .arg("--make-data")
            .arg(root.join("target/bench"))
            .current_dir(root);
        cmd::run(env.apply(&mut make)).context("cannot write the codes and factors for bench metrics")?;
    }
    Ok(())
}

/// The comparisons of `group` (all when `None`).
pub fn selected(group: Option<&str>) -> Vec<&'static Comparison> {
    COMPARISONS.iter().filter(|c| group.is_none_or(|g| c.group == g)).collect()
}

/// Runs every comparison `rounds` times, alternating vrl and the reference, and prints medians and
/// ratios. Each group's table is also kept as a section of `docs/benchmarks.md` ([`page`]), which is
/// then written again from the sections of every group measured so far.
pub fn compare(root: &Path, vrl: &Path, env: &TorchEnv, rounds: usize, group: Option<&str>) -> Result<()> {
    let mut sections = Vec::new();
    if group.is_none_or(|g| g != STEP_TIME_GROUP.0) {
        for g in GROUP_ORDER.iter().filter(|g| **g != STEP_TIME_GROUP.0 && group.is_none_or(|x| x == **g)) {
            let load = page::load_average();
            let md = compare_rates(root, vrl, env, rounds, g)?;
            sections.push(page::Section::new(g, rounds, load, md));
        }
    }
    if group.is_none_or(|g| g == STEP_TIME_GROUP.0) {
        let load = page::load_average();
        let md = compare_step_times(root, vrl, env, rounds)?;
        sections.push(page::Section::new(STEP_TIME_GROUP.0, rounds, load, md));
    }
    for section in &sections {
        section.save(root)?;
    }
    page::write(root, env)
}

/// The groups, in the order of the benchmarks page.
pub const GROUP_ORDER: &[&str] = &["train", "data", "models", "optim", "layers", "metrics"];

/// The [`COMPARISONS`] of `group`: a rate each side prints, higher is better. Prints the table and
/// returns it as Markdown.
fn compare_rates(root: &Path, vrl: &Path, env: &TorchEnv, rounds: usize, group: &str) -> Result<String> {
    let mut rows = Vec::new();
    for c in selected(Some(group)) {
        if let Some(prepare) = c.prepare {
            prepare(root, env).with_context(|| format!("{}: cannot prepare the comparison", c.name))?;
        }
        let (mut ours, mut theirs, mut last) = (Vec::new(), Vec::new(), String::new());
        for round in 1..=rounds {
            cmd::note(format!("{}: round {round}/{rounds}", c.name));
            let mut v = Command::new(vrl);
            v.args(c.vrl_args).current_dir(root);
            let (value, _) =
                metric(env.apply(&mut v), c.metric).with_context(|| format!("{}: vrl run failed", c.name))?;
            ours.push(value);
            let mut p = Command::new(&env.python);
            p.arg(root.join(c.python_script)).args(c.python_args).current_dir(root);
            let (value, line) = metric(env.apply(&mut p), c.metric)
                .with_context(|| format!("{}: {} run failed", c.name, c.reference))?;
            theirs.push(value);
            last = line;
        }
        rows.push((c, median(&mut ours), median(&mut theirs), ours, theirs, last));
    }
    println!();
    println!(
        "{:<24} {:>14} {:>14} {:<16} {:>9}  reference",
        "benchmark", "vrl", "reference", "unit", "vrl/ref"
    );
    for (c, ours, theirs, _, _, _) in &rows {
        let unit = c.metric.replace("_per_sec", "/s");
        println!(
            "{:<24} {ours:>14.2} {theirs:>14.2} {unit:<16} {:>8.2}x  {}",
            c.name,
            ours / theirs,
            c.reference
        );
    }
    println!("(medians of {rounds} alternating rounds; every round:)");
    for (c, _, _, ours, theirs, _) in &rows {
        println!("  {}: vrl {ours:.2?}, {} {theirs:.2?}", c.name, c.reference);
    }
    let mut md = String::from("| benchmark | vrl | reference | unit | vrl / reference | reference is |\n");
    md.push_str("|---|---:|---:|---|---:|---|\n");
    for (c, ours, theirs, _, _, _) in &rows {
        let unit = c.metric.replace("_per_sec", "/s");
        md.push_str(&format!(
            "| {} | {ours:.2} | {theirs:.2} | {unit} | **{:.2}×** | {} |\n",
            c.name,
            ours / theirs,
            c.reference
        ));
    }
    md.push('\n');
    for (c, _, _, _, _, last) in rows.iter().filter(|r| !r.0.report.is_empty()) {
        let figures: Vec<String> = c
            .report
            .iter()
            .map(|k| format!("{k} {}", json_number(last, k).map_or_else(|| "n/a".to_string(), short)))
            .collect();
        println!("  {} (last round, from {}): {}", c.name, c.reference, figures.join(", "));
        md.push_str(&format!("- {} (last round, from {}): {}\n", c.name, c.reference, figures.join(", ")));
    }
    Ok(md)
}

/// Times every [`STEP_TIMES`] row `rounds` times, alternating vrl and the references, and prints each
/// reference's step time with its speed-up (reference ÷ vrl) and vrl against the bandwidth bound; a
/// second table does the same for the fastest steps, a guide when the machine is busy. Returns the
/// first table as Markdown.
fn compare_step_times(root: &Path, vrl: &Path, env: &TorchEnv, rounds: usize) -> Result<String> {
    let references = STEP_TIME_REFERENCES;
    let mut rows = Vec::new();
    for row in STEP_TIMES {
        let mut python_keys: Vec<&str> = references.iter().map(|(_, key, _)| *key).collect();
        python_keys.extend(references.iter().map(|(_, _, min)| *min));
        let (mut ours, mut theirs) = (Rounds::new(&["ms", "bound_ms", "min_ms"]), Rounds::new(&python_keys));
        let common = ["--optimizer", row.optimizer, "--threads", "2", "--seconds", "2", "--json"];
        for round in 1..=rounds {
            cmd::note(format!("{}: round {round}/{rounds}", row.name));
            let mut v = Command::new(vrl);
            v.args(["bench", "optim-step"]).args(common).current_dir(root);
            let line =
                last_line(env.apply(&mut v)).with_context(|| format!("{}: vrl run failed", row.name))?;
            ours.push(&line, true).with_context(|| format!("{}: vrl", row.name))?;
            let mut p = Command::new(&env.python);
            p.arg(root.join("python/bench_optim_step.py")).args(common).current_dir(root);
            let line =
                last_line(env.apply(&mut p)).with_context(|| format!("{}: PyTorch run failed", row.name))?;
            theirs.push(&line, false).with_context(|| format!("{}: PyTorch", row.name))?;
        }
        rows.push((row.name, ours, theirs));
    }
    let n = references.len();
    let mut md = String::from("| median step, ms (speed-up of vrl) | vrl |");
    for (t, ..) in references {
        md.push_str(&format!(" {t} |"));
    }
    md.push_str(" bound | vrl / bound |\n|---|---:|");
    md.push_str(&"---:|".repeat(n + 2));
    md.push('\n');
    for (name, ours, theirs) in &rows {
        let ms = ours.median(0).unwrap_or(f64::NAN);
        md.push_str(&format!("| {name} | {ms:.2} |"));
        for k in 0..n {
            md.push_str(&match theirs.median(k) {
                Some(t) => format!(" {t:.2} (**{:.2}×**) |", t / ms),
                None => " – |".into(),
            });
        }
        let bound = ours.median(1).unwrap_or(f64::NAN);
        md.push_str(&format!(" {bound:.2} | {:.2}× |\n", ms / bound));
    }
    md.push_str(
        "\nSpeed-up = reference ms ÷ vrl ms (above 1: vrl is faster). Bound = bytes the update must move ÷ \
         the copy bandwidth vrl measured in the same run. torch.optim is the better of `foreach=True` and \
         `False`; torch fused (`fused=True`, not torch.optim's default) is shown for information.\n",
    );
    for (title, ours_k, theirs_offset) in [("step (ms; speed-up)", 0, 0), ("fastest step", 2, n)] {
        println!();
        let mut header = format!("{title:<24} {:>9}", "vrl");
        for (t, ..) in references {
            header.push_str(&format!(" {t:>24}"));
        }
        header.push_str(&format!(" {:>9} {:>10}", "bound", "vrl/bound"));
        println!("{header}");
        for (name, ours, theirs) in &rows {
            let ms = ours.median(ours_k).unwrap_or(f64::NAN);
            let mut line = format!("{name:<24} {ms:>9.2}");
            for k in 0..n {
                line.push_str(&match theirs.median(theirs_offset + k) {
                    Some(t) => format!(" {:>24}", format!("{t:.2} ({:.2}x)", t / ms)),
                    None => format!(" {:>24}", "-"),
                });
            }
            let bound = ours.median(1).unwrap_or(f64::NAN);
            line.push_str(&format!(" {bound:>9.2} {:>9.2}x", ms / bound));
            println!("{line}");
        }
    }
    println!(
        "(medians over {rounds} alternating rounds of each run's median step, then of its fastest step; \
         speed-up = reference ms / vrl ms; bound = bytes the update must move / copy bandwidth \
         measured by vrl in the same run; every round's medians:)"
    );
    for (name, ours, theirs) in &rows {
        let refs: Vec<String> = references
            .iter()
            .enumerate()
            .map(|(k, (t, ..))| format!("{t} {:.2?}", theirs.values(k)))
            .collect();
        println!("  {name}: vrl {:.2?}, bound {:.2?}, {}", ours.values(0), ours.values(1), refs.join(", "));
    }
    Ok(md)
}

/// The numbers of one side of a step-time comparison, per key and round (`None` where a line had
/// `null`).
struct Rounds {
    keys: Vec<&'static str>,
    values: Vec<Vec<Option<f64>>>,
}

impl Rounds {
    fn new(keys: &[&'static str]) -> Self {
        Rounds { keys: keys.to_vec(), values: vec![Vec::new(); keys.len()] }
    }

    /// Reads every key from `line`; with `required`, a key without a number is an error (without, a
    /// key must still be present, as a number or `null`).
    fn push(&mut self, line: &str, required: bool) -> Result<()> {
        for (key, values) in self.keys.iter().zip(&mut self.values) {
            let value = json_number(line, key);
            if value.is_none() && (required || !line.contains(&format!("\"{key}\""))) {
                anyhow::bail!("no number \"{key}\" in the last line of stdout: {line}");
            }
            values.push(value);
        }
        Ok(())
    }

    /// The rounds of key `k` that have a number.
    fn values(&self, k: usize) -> Vec<f64> {
        self.values[k].iter().flatten().copied().collect()
    }

    /// The median of key `k`'s numbers, if any.
    fn median(&self, k: usize) -> Option<f64> {
        let mut v = self.values(k);
        (!v.is_empty()).then(|| median(&mut v))
    }
}

/// Runs `cmd`, echoes the last non-empty line of its stdout to stderr and returns it.
fn last_line(cmd: &mut Command) -> Result<String> {
    let out = cmd::output(cmd)?;
    let line = out.lines().rev().find(|l| !l.trim().is_empty()).context("no output on stdout")?;
    eprintln!("    {line}");
    Ok(line.to_string())
}

/// A number for the report: small ones in scientific notation.
fn short(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 { format!("{v:.2e}") } else { v.to_string() }
}

/// Runs `cmd` and reads `key` from the last non-empty line of its stdout; returns the value and the line.
fn metric(cmd: &mut Command, key: &str) -> Result<(f64, String)> {
    let out = cmd::output(cmd)?;
    let line = out.lines().rev().find(|l| !l.trim().is_empty()).context("no output on stdout")?;
    let value = json_number(line, key)
        .with_context(|| format!("no number \"{key}\" in the last line of stdout: {line}"))?;
    eprintln!("    {line}");
    Ok((value, line.to_string()))
}

/// The number value of `"key"` in a flat one-line JSON object (enough for the benchmark lines).
pub fn json_number(line: &str, key: &str) -> Option<f64> {
    let pattern = format!("\"{key}\"");
    let rest = &line[line.find(&pattern)? + pattern.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest.find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c))).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers() {
        let line = r#"{"name":"mnist_train_step","batch_size":128,"threads":2,"images_per_sec":1234.5}"#;
        assert_eq!(json_number(line, "images_per_sec"), Some(1234.5));
        assert_eq!(json_number(line, "batch_size"), Some(128.0));
        assert_eq!(json_number(r#"{"images_per_sec": 1e3 }"#, "images_per_sec"), Some(1000.0));
        assert_eq!(json_number(line, "missing"), None);
    }

    #[test]
    fn reports_small_numbers_briefly() {
        assert_eq!(short(1.0522427373871324e-10), "1.05e-10");
        assert_eq!(short(54.0), "54");
        assert_eq!(short(0.0), "0");
    }

    #[test]
    fn rounds_read_keys_and_nulls() {
        let mut r = Rounds::new(&["torch_ms", "pytorch_optimizer_ms"]);
        r.push(r#"{"torch_ms": 12.5, "pytorch_optimizer_ms": null}"#, false).unwrap();
        r.push(r#"{"torch_ms": 10.5, "pytorch_optimizer_ms": null}"#, false).unwrap();
        assert_eq!(r.median(0), Some(11.5));
        assert_eq!(r.median(1), None);
        assert!(r.push(r#"{"torch_ms": 1}"#, false).is_err(), "a missing key is an error");
        assert!(Rounds::new(&["ms"]).push(r#"{"ms": null}"#, true).is_err());
    }

    #[test]
    fn groups_and_packages() {
        assert!(is_group("optim") && is_group("layers") && !is_group("nope"));
        for c in COMPARISONS {
            assert!(GROUP_ORDER.contains(&c.group), "{} is not on the benchmarks page", c.group);
        }
        assert_eq!(packages(Some("optim")), vec!["vrl-optim"]);
        assert!(packages(None).contains(&"vrl-optim"));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
