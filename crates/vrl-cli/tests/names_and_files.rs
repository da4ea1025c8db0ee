//! Names that become paths stay inside the runs directory, experiment files are read one by one, and
//! a LibTorch error reaches the user as one paragraph (issue 19).

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{experiments_dir, make_data};

const VRL: &str = env!("CARGO_BIN_EXE_vrl");

fn vrl(args: &[&str], runs: &Path, experiments: &Path) -> Output {
    Command::new(VRL)
        .args(args)
        .arg("--runs-dir")
        .arg(runs)
        .arg("--experiments-dir")
        .arg(experiments)
        .env("RUST_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .env_remove("VRL_FAULT")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A copy of the source tree's mnist experiment file, renamed to `name`.
fn mnist_as(name: &str) -> String {
    let text = std::fs::read_to_string(experiments_dir().join("mnist.toml")).unwrap();
    let (head, rest) = text.split_once("name = \"mnist\"").expect("mnist.toml declares its name");
    format!("{head}name = {name:?}\nstudy = \"mnist\"{rest}")
}

fn assert_exit_2(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for n in needles {
        assert!(err.contains(n), "message lacks `{n}`: {err}");
    }
    assert!(!err.contains("internal error") && !err.contains("Exception raised from"), "{err}");
}

#[test]
fn an_experiment_name_that_is_a_path_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, exps) = (tmp.path().join("runs"), tmp.path().join("experiments"));
    std::fs::create_dir_all(&exps).unwrap();
    let victim = tmp.path().join("victim");
    std::fs::create_dir_all(victim.join("smoke")).unwrap();
    std::fs::write(victim.join("smoke/config.toml"), "precious").unwrap();
    let absolute = victim.display().to_string();
    std::fs::write(exps.join("abs.toml"), mnist_as(&absolute)).unwrap();
    std::fs::write(exps.join("up.toml"), mnist_as("../../x")).unwrap();

    for name in [absolute.as_str(), "../../x"] {
        let out = vrl(&["experiment", name, "--fresh"], &runs, &exps);
        assert_exit_2(&out, &["`experiment.name`", "cannot be used as a name"]);
    }
    assert_eq!(std::fs::read_to_string(victim.join("smoke/config.toml")).unwrap(), "precious");
    assert!(!runs.exists() && !tmp.path().join("x").exists());
}

#[test]
fn a_broken_or_duplicated_file_is_reported_and_disables_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, exps) = (tmp.path().join("runs"), tmp.path().join("experiments"));
    std::fs::create_dir_all(&exps).unwrap();
    std::fs::write(exps.join("a.toml"), mnist_as("twin")).unwrap();
    std::fs::write(exps.join("b.toml"), mnist_as("twin")).unwrap();
    std::fs::write(exps.join("broken.toml"), "[experiment\nname = ").unwrap();
    std::fs::write(exps.join("good.toml"), mnist_as("good")).unwrap();

    let out = vrl(&["experiment"], &runs, &exps);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(listing.contains("good"), "{listing}");
    assert!(
        listing.contains("broken.toml") && listing.contains("a.toml") && listing.contains("b.toml"),
        "{listing}"
    );

    assert_exit_2(&vrl(&["experiment", "twin"], &runs, &exps), &["a.toml", "b.toml", "`twin`"]);
    assert_exit_2(&vrl(&["experiment", "broken"], &runs, &exps), &["broken.toml", "invalid"]);
    assert_exit_2(&vrl(&["experiment", "tour"], &runs, &exps), &["broken.toml", "a.toml"]);
    assert_exit_2(&vrl(&["experiment", "good", "--preset", "nope"], &runs, &exps), &["no preset `nope`"]);
    assert!(!runs.exists());
}

#[test]
fn a_model_that_does_not_fit_the_data_is_one_paragraph_without_a_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, data) = (tmp.path().join("runs"), tmp.path().join("data"));
    std::fs::create_dir_all(&data).unwrap();
    make_data(&data, 64, 16);
    let out = Command::new(VRL)
        .args(["experiment", "mnist", "--runs-dir"])
        .arg(&runs)
        .arg("--experiments-dir")
        .arg(experiments_dir())
        .args(["--set", &format!("data.dir={}", data.display())])
        .args(["--set", "device=cpu", "--set", "threads=1", "--set", "train.epochs=1"])
        .args(["--set", "model.args.widths=[4, 8]", "--set", "model.args.in_chans=3"])
        .env("RUST_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .env_remove("VRL_FAULT")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_exit_2(&out, &["LibTorch refused", "channels"]);
    assert!(!err.contains("frame #"), "{err}");
    assert_eq!(err.trim().lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");
}
