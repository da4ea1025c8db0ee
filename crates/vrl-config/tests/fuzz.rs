//! Fuzzing what a user hands vrl_config: experiment files (arbitrary text, and the repository's
//! experiment files mutated) and `--set KEY=VALUE` overrides. Nothing may panic; every input is
//! either accepted or refused with an error, and an accepted configuration is written back as TOML
//! that reads again to the same configuration.

#![allow(clippy::unwrap_used)] // test: a failure is a test failure

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index;
use serde::{Deserialize, Serialize};
use vrl_config::{ExperimentFile, Override};

/// The repository's experiment files, the seeds of the mutations.
const EXPERIMENTS: [&str; 5] = [
    include_str!("../../../experiments/mnist.toml"),
    include_str!("../../../experiments/bocb.toml"),
    include_str!("../../../experiments/longtail.toml"),
    include_str!("../../../experiments/transfer.toml"),
    include_str!("../../../experiments/vae.toml"),
];

const FILE: &str = r#"
    [experiment]
    name = "fuzz"
    description = "A configuration with the kinds of values the studies have."
    [config]
    seed = 0
    seeds = [0, 1]
    threads = 0
    device = "auto"
    train = { epochs = 3, batch_size = 64, lr = 0.1, milestones = [1, 2] }
    [[config.optimizers]]
    name = "sgd"
    hparams = { momentum = 0.9, nesterov = true }
    [presets.smoke]
    description = "small"
    config = { train = { epochs = 1 } }
"#;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(with = "vrl_config::seed")]
    seed: u64,
    #[serde(with = "vrl_config::seed::seeds")]
    seeds: Vec<u64>,
    threads: usize,
    device: String,
    train: Train,
    optimizers: Vec<Optimizer>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Train {
    epochs: u64,
    batch_size: usize,
    lr: f64,
    milestones: Vec<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Optimizer {
    name: String,
    hparams: BTreeMap<String, toml::Value>,
}

/// Resolves `file` with `preset` and `overrides` as `T`; an accepted configuration must read back
/// from its TOML and write the same TOML again.
fn resolve_round_trip<T: serde::de::DeserializeOwned + Serialize>(
    file: &ExperimentFile,
    preset: Option<&str>,
    overrides: &[Override],
) {
    let Ok(resolved) = file.resolve::<T>(preset, overrides) else { return };
    let again: T = toml::from_str(&resolved.toml)
        .unwrap_or_else(|e| panic!("the written configuration does not read back: {e}\n{}", resolved.toml));
    assert_eq!(toml::to_string_pretty(&again).unwrap(), resolved.toml);
    let _ = resolved.run_id();
}

/// Every preset of `file`, and the default, resolved as the typed configuration and as a table.
fn resolve_all(file: &ExperimentFile, overrides: &[Override]) {
    let mut presets: Vec<Option<&str>> = file.presets.keys().map(|p| Some(p.as_str())).collect();
    presets.push(None);
    presets.push(Some("no-such-preset"));
    for preset in presets {
        resolve_round_trip::<Config>(file, preset, overrides);
        resolve_round_trip::<toml::Table>(file, preset, overrides);
    }
}

/// Text that looks like TOML often enough to reach past the tokenizer.
fn tomlish(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[\\[\\]{{}}=\"'.,:a-z0-9_+\\-\\\\ \\n\\t#]{{0,{max}}}"))
        .expect("a valid regex")
}

/// One edit of a text, by characters.
#[derive(Debug, Clone)]
enum Edit {
    Delete(Index, usize),
    Insert(Index, String),
    Replace(Index, String),
    DuplicateLine(Index),
    SwapLines(Index, Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 1usize..40).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), prop_oneof![tomlish(12), any::<String>()]).prop_map(|(i, s)| Edit::Insert(i, s)),
        (any::<Index>(), tomlish(8)).prop_map(|(i, s)| Edit::Replace(i, s)),
        any::<Index>().prop_map(Edit::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: &Index| i.index(chars.len() + 1);
    let joined = |c: &[char]| c.iter().collect::<String>();
    match edit {
        Edit::Delete(i, n) => {
            let start = at(i);
            let end = (start + n).min(chars.len());
            joined(&chars[..start]) + &joined(&chars[end..])
        }
        Edit::Insert(i, s) => joined(&chars[..at(i)]) + s + &joined(&chars[at(i)..]),
        Edit::Replace(i, s) => {
            let start = at(i);
            let end = (start + s.chars().count()).min(chars.len());
            joined(&chars[..start]) + s + &joined(&chars[end..])
        }
        Edit::DuplicateLine(i) => {
            let mut lines: Vec<&str> = text.split('\n').collect();
            let a = i.index(lines.len());
            lines.insert(a, lines[a]);
            lines.join("\n")
        }
        Edit::SwapLines(i, j) => {
            let mut lines: Vec<&str> = text.split('\n').collect();
            let (a, b) = (i.index(lines.len()), j.index(lines.len()));
            lines.swap(a, b);
            lines.join("\n")
        }
    }
}

/// A key path: mostly the configuration's own keys (so overrides reach the typed fields), sometimes
/// anything.
fn key() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "seed",
        "seeds",
        "threads",
        "device",
        "train",
        "train.epochs",
        "train.batch_size",
        "train.lr",
        "train.milestones",
        "optimizers",
        "seed.x",
        "train.epochs.deeper",
        "new.key",
    ])
    .prop_map(String::from);
    prop_oneof![4 => known, 1 => "[a-z_.]{0,12}", 1 => any::<String>()]
}

/// A value: numbers at and beyond every integer boundary, TOML-like text, anything.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|v| v.to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<i128>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "4294967296",
            "nan",
            "-inf",
            "\"18446744073709551615\"",
            "[0, \"18446744073709551615\"]",
            "[[[[[[[[1]]]]]]]]",
            "{a = 1}",
            "",
        ])
        .prop_map(String::from),
        tomlish(24),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_is_parsed_or_refused(text in prop_oneof![any::<String>(), tomlish(300)]) {
        if let Ok(file) = ExperimentFile::parse(&text, "fuzz.toml") {
            resolve_all(&file, &[]);
        }
    }

    #[test]
    fn mutated_experiment_files_are_parsed_or_refused(
        which in 0..EXPERIMENTS.len(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let text = edits.iter().fold(EXPERIMENTS[which].to_string(), |t, e| apply(&t, e));
        if let Ok(file) = ExperimentFile::parse(&text, "mutated.toml") {
            resolve_all(&file, &[]);
        }
    }

    #[test]
    fn arbitrary_overrides_are_applied_or_refused(
        sets in prop::collection::vec(
            prop_oneof![4 => (key(), value()).prop_map(|(k, v)| format!("{k}={v}")), 1 => any::<String>()],
            1..4,
        ),
    ) {
        let file = ExperimentFile::parse(FILE, "fuzz.toml").unwrap();
        let overrides: Vec<Override> = sets.iter().filter_map(|s| Override::parse(s).ok()).collect();
        for o in &overrides {
            let _ = (o.key(), o.to_string());
        }
        resolve_all(&file, &overrides);
    }
}

#[test]
fn the_unmutated_experiment_files_resolve() {
    for text in EXPERIMENTS {
        let file = ExperimentFile::parse(text, "experiment.toml").unwrap();
        for preset in file.presets.keys() {
            file.resolve::<toml::Table>(Some(preset), &[]).unwrap();
        }
    }
}

#[test]
fn deeply_nested_values_are_refused_or_read_without_overflowing_the_stack() {
    for depth in [100, 10_000] {
        let nested = format!("a={}1{}", "[".repeat(depth), "]".repeat(depth));
        let _ = Override::parse(&nested);
        let inline = format!("a={}{}", "{b=".repeat(depth), "}".repeat(depth));
        let _ = Override::parse(&inline);
        let file = format!(
            "[experiment]\nname='n'\ndescription='d'\n[config]\nx = {}1{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let _ = ExperimentFile::parse(&file, "deep.toml");
    }
}

#[test]
fn integer_boundaries_reach_the_right_keys() {
    let file = ExperimentFile::parse(FILE, "fuzz.toml").unwrap();
    let set = |s: &str| vec![Override::parse(s).unwrap()];
    let c = file.resolve::<Config>(None, &set("seed=18446744073709551615")).unwrap().config;
    assert_eq!(c.seed, u64::MAX);
    let e = file.resolve::<Config>(None, &set("train.epochs=18446744073709551615")).unwrap_err();
    assert!(e.to_string().contains("`train.epochs`"), "{e}");
    let c = file.resolve::<Config>(None, &set("threads=4294967296")).unwrap().config;
    let e = vrl_config::check_range("fuzz", "threads", c.threads as u64, 0..=vrl_config::MAX_THREADS)
        .unwrap_err();
    assert!(e.to_string().contains("4294967296"), "{e}");
}
