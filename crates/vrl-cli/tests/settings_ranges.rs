//! Integer settings out of range exit with status 2, naming the key, the value and the range, before
//! any run directory exists (issue 19: a thread count that wrapped to a negative `i32` ended in a C++
//! trace; an epoch count whose step total overflowed trained one epoch and reported success), and a
//! seed may be any `u64`.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{experiments_dir, make_data};

const VRL: &str = env!("CARGO_BIN_EXE_vrl");

/// `vrl experiment <experiment>` into `runs` with `sets` as `--set` overrides.
fn vrl(experiment: &str, runs: &Path, sets: &[&str]) -> Output {
    let mut cmd = Command::new(VRL);
    cmd.args(["experiment", experiment, "--runs-dir"])
        .arg(runs)
        .arg("--experiments-dir")
        .arg(experiments_dir());
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd.env("RUST_LOG", "warn").env_remove("VRL_FAULT").output().unwrap()
}

/// Exit status 2, a message with every needle, no panic, and no run directory of `experiment`.
fn assert_refused(out: &Output, runs: &Path, experiment: &str, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "expected exit status 2, got {:?}: {err}", out.status);
    for n in needles {
        assert!(err.contains(n), "message lacks `{n}`: {err}");
    }
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    assert!(!runs.join(experiment).exists(), "a run directory was left behind: {err}");
}

#[test]
fn a_thread_count_that_would_wrap_is_refused_before_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    for experiment in ["mnist", "longtail", "transfer", "vae"] {
        let out = vrl(experiment, &runs, &["threads=4294967296"]);
        assert_refused(&out, &runs, experiment, &["`threads`", "4294967296", "from 0 to 1024"]);
    }
    let out = vrl("bocb", &runs, &["exec.threads=4294967296"]);
    assert_refused(&out, &runs, "bocb", &["`exec.threads`", "4294967296", "from 0 to 1024"]);
    let out = vrl("mnist", &runs, &["threads=-1"]);
    assert_refused(&out, &runs, "mnist", &["`threads`", "-1"]);
}

#[test]
fn an_epoch_count_that_would_overflow_the_steps_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    for experiment in ["mnist", "longtail", "bocb"] {
        let out = vrl(experiment, &runs, &["train.epochs=922337203685477581"]);
        assert_refused(
            &out,
            &runs,
            experiment,
            &["`train.epochs`", "922337203685477581", "from 1 to 1000000"],
        );
    }
    let out = vrl("vae", &runs, &["train.steps=18446744073709551615"]);
    assert_refused(&out, &runs, "vae", &["`train.steps`"]);
    let out = vrl("transfer", &runs, &["tune.steps=9223372036854775807"]);
    assert_refused(&out, &runs, "transfer", &["`tune.steps`", "9223372036854775807"]);
}

#[test]
fn any_u64_is_a_seed_and_its_run_is_found_again() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    make_data(&data, 64, 16);
    let runs = tmp.path().join("runs");
    let data_dir = format!("data.dir={}", data.display());
    let sets = [
        "seed=18446744073709551615",
        data_dir.as_str(),
        "device=cpu",
        "threads=1",
        "train.epochs=1",
        "train.batch_size=32",
        "train.schedule.warmup_steps=1",
        "model.args.widths=[4, 8]",
    ];
    let out = vrl("mnist", &runs, &sets);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let run = runs.join("mnist").join(std::fs::read_link(runs.join("mnist/latest")).unwrap());
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("seed = \"18446744073709551615\""), "{config}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["optimizers"]["sgd"]["steps"], 2, "{results}");
    // The written configuration is the run's identity: the same command finds the finished run.
    let out = vrl("mnist", &runs, &sets);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("already finished"), "{err}");
}
