//! `cargo xtask bench`: criterion benches, then vrl against PyTorch eager on the same work, side by side.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::cmd;
use crate::libtorch::TorchEnv;

/// One vrl-against-PyTorch comparison. Both commands print, as the last line of stdout, one JSON object
/// such as `{"name":"mnist_train_step","batch_size":128,"threads":2,"images_per_sec":1234.5}`.
pub struct Comparison {
    /// The group `cargo xtask bench GROUP` selects (`train`, `data`, `models`).
    pub group: &'static str,
    /// The crate whose criterion benches belong to the group.
    pub package: &'static str,
    /// Name in the table.
    pub name: &'static str,
    /// Arguments of `target/release/vrl`.
    pub vrl_args: &'static [&'static str],
    /// The PyTorch script, relative to the workspace root, run with the venv's python.
    pub python_script: &'static str,
    /// Arguments of the script.
    pub python_args: &'static [&'static str],
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
    },
    Comparison {
        group: "data",
        package: "vrl-loader",
        name: "cifar_loader",
        vrl_args: &["bench", "data", "--json"],
        python_script: "python/bench_data_loader.py",
        python_args: &["--json"],
    },
    // One training step (forward, cross-entropy, backward, AdamW) of a zoo model against timm's, at
    // 32x32, batch 64, 100 classes, 2 threads on both sides.
    Comparison {
        group: "models",
        package: "vrl-models",
        name: "resnet18_step",
        vrl_args: &[
            "bench",
            "model-step",
            "--model",
            "resnet18",
            "--set",
            "model.num_classes=100",
            "--batch-size",
            "64",
            "--threads",
            "2",
            "--json",
        ],
        python_script: "python/bench_model_step.py",
        python_args: &[
            "--model",
            "resnet18",
            "--set",
            "model.num_classes=100",
            "--batch-size",
            "64",
            "--threads",
            "2",
            "--json",
        ],
    },
    Comparison {
        group: "models",
        package: "vrl-models",
        name: "vit_tiny_step",
        vrl_args: &[
            "bench",
            "model-step",
            "--model",
            "vit_tiny_patch16_224",
            "--set",
            "model.img_size=32",
            "--set",
            "model.patch_size=4",
            "--set",
            "model.num_classes=100",
            "--batch-size",
            "64",
            "--threads",
            "2",
            "--json",
        ],
        python_script: "python/bench_model_step.py",
        python_args: &[
            "--model",
            "vit_tiny_patch16_224",
            "--set",
            "model.img_size=32",
            "--set",
            "model.patch_size=4",
            "--set",
            "model.num_classes=100",
            "--batch-size",
            "64",
            "--threads",
            "2",
            "--json",
        ],
    },
    Comparison {
        group: "models",
        package: "vrl-models",
        name: "convnext_atto_step",
        vrl_args: &[
            "bench",
            "model-step",
            "--model",
            "convnext_atto",
            "--set",
            "model.num_classes=100",
            "--batch-size",
            "64",
            "--threads",
            "2",
            "--json",
        ],
        python_script: "python/bench_model_step.py",
        python_args: &[
            "--model",
            "convnext_atto",
            "--set",
            "model.num_classes=100",
            "--batch-size",
            "64",
            "--threads",
            "2",
            "--json",
        ],
    },
];

/// The comparisons of `group` (all when `None`).
pub fn selected(group: Option<&str>) -> Vec<&'static Comparison> {
    COMPARISONS.iter().filter(|c| group.is_none_or(|g| c.group == g)).collect()
}

/// Runs every comparison `rounds` times, alternating vrl and PyTorch, and prints medians and ratios.
pub fn compare(root: &Path, vrl: &Path, env: &TorchEnv, rounds: usize, group: Option<&str>) -> Result<()> {
    let mut rows = Vec::new();
    for c in selected(group) {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            cmd::note(format!("{}: round {round}/{rounds}", c.name));
            let mut v = Command::new(vrl);
            v.args(c.vrl_args).current_dir(root);
            ours.push(
                images_per_sec(env.apply(&mut v)).with_context(|| format!("{}: vrl run failed", c.name))?,
            );
            let mut p = Command::new(&env.python);
            p.arg(root.join(c.python_script)).args(c.python_args).current_dir(root);
            theirs.push(
                images_per_sec(env.apply(&mut p))
                    .with_context(|| format!("{}: PyTorch run failed", c.name))?,
            );
        }
        rows.push((c.name, median(&mut ours), median(&mut theirs), ours, theirs));
    }
    println!();
    println!("{:<24} {:>14} {:>14} {:>12}", "benchmark", "vrl img/s", "PyTorch img/s", "vrl/PyTorch");
    for (name, ours, theirs, _, _) in &rows {
        println!("{name:<24} {ours:>14.1} {theirs:>14.1} {:>11.2}x", ours / theirs);
    }
    println!("(medians of {rounds} alternating rounds; every round:)");
    for (name, _, _, ours, theirs) in &rows {
        println!("  {name}: vrl {ours:.1?}, PyTorch {theirs:.1?}");
    }
    Ok(())
}

/// Runs `cmd` and reads `images_per_sec` from the last non-empty line of its stdout.
fn images_per_sec(cmd: &mut Command) -> Result<f64> {
    let out = cmd::output(cmd)?;
    let line = out.lines().rev().find(|l| !l.trim().is_empty()).context("no output on stdout")?;
    let value = json_number(line, "images_per_sec")
        .with_context(|| format!("no number \"images_per_sec\" in the last line of stdout: {line}"))?;
    eprintln!("    {line}");
    Ok(value)
}

/// The number value of `"key"` in a flat one-line JSON object (enough for the benchmark lines).
fn json_number(line: &str, key: &str) -> Option<f64> {
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
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
