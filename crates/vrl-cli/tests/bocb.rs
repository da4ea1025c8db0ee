//! End-to-end tests of the `bocb` grid through the `vrl` binary, on a tiny grid and a toy data set the
//! tests make: a grid killed (SIGKILL) and started again ends with the table of an uninterrupted grid;
//! two processes on one grid, and `--workers 2`, run every cell exactly once; a diverging cell and a
//! failing cell are recorded and the grid goes on; `--fail-fast` stops it.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::{experiments_dir, make_data};

const VRL: &str = env!("CARGO_BIN_EXE_vrl");

/// 2 backbones × 2 optimizers × 2 learning rates × 1 weight decay = 8 cells of 16 steps each. SGD's
/// larger learning rate of the pair is 1e4: those cells diverge.
fn grid(runs: &Path, data: &Path) -> Command {
    let mut cmd = Command::new(VRL);
    cmd.args(["experiment", "bocb", "--preset", "smoke", "--runs-dir"])
        .arg(runs)
        .arg("--experiments-dir")
        .arg(experiments_dir())
        .arg("--set")
        .arg(format!("data.dir={}", data.display()));
    for s in [
        "exec.workers=1",
        "exec.threads=1",
        "data.train_limit=0",
        "data.test_limit=0",
        "data.img_size=16",
        "train.batch_size=25",
        "train.checkpoint_every=3",
        "train.log_every=2",
        "train.schedule={kind='cosine', warmup_steps=2}",
        "backbones.vgg13.args={depths=[1, 1], widths=[8, 16], mlp_ratio=0.004}",
        "backbones.resnet18.args={depths=[1, 1, 1, 1], widths=[4, 8, 8, 8], cifar_stem=true}",
        "optimizers.sgd.lr=[0.025, 0.05, 0.1, 0.2, 1e4]",
        "select={backbones=['vgg13', 'resnet18'], optimizers=['sgd', 'adamw'], lr=[3, 4], weight_decay=[2]}",
    ] {
        cmd.args(["--set", s]);
    }
    cmd.env("RUST_LOG", "warn").env_remove("VRL_FAULT").env_remove("VRL_BOCB_FAULT");
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn run_dir(runs: &Path) -> PathBuf {
    runs.join("bocb").join(std::fs::read_link(runs.join("bocb/latest")).unwrap())
}

fn results(runs: &Path) -> serde_json::Value {
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir(runs).join("results.json")).unwrap()).unwrap();
    r.as_object_mut().unwrap().remove("timing");
    r
}

const CELLS: [&str; 8] = [
    "vgg13__sgd__lr3__wd2__s0",
    "vgg13__sgd__lr4__wd2__s0",
    "vgg13__adamw__lr3__wd2__s0",
    "vgg13__adamw__lr4__wd2__s0",
    "resnet18__sgd__lr3__wd2__s0",
    "resnet18__sgd__lr4__wd2__s0",
    "resnet18__adamw__lr3__wd2__s0",
    "resnet18__adamw__lr4__wd2__s0",
];

/// How often each cell started training from scratch, over all invocations (its log's `start:` lines).
fn starts(runs: &Path) -> Vec<usize> {
    CELLS
        .iter()
        .map(|c| {
            let log = std::fs::read_to_string(run_dir(runs).join("cells").join(c).join("log.txt"))
                .unwrap_or_default();
            log.lines().filter(|l| l.starts_with("start:")).count()
        })
        .collect()
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    make_data(&data, 200, 100);
    (tmp, data)
}

#[test]
fn killed_grid_resumes_to_the_same_table_and_failures_are_recorded() {
    let (tmp, data) = setup();
    let reference = tmp.path().join("reference");
    let mut cmd = grid(&reference, &data);
    cmd.env("VRL_BOCB_FAULT", "error:resnet18__adamw__lr4__wd2__s0");
    let out = run(cmd);
    assert!(out.status.success(), "uninterrupted grid failed: {}", stderr(&out));
    let expected = results(&reference);
    // The cell with the injected error never starts training.
    assert_eq!(starts(&reference), vec![1, 1, 1, 1, 1, 1, 1, 0]);
    let cells = expected["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 8);
    let by_id = |id: &str| cells.iter().find(|c| c["cell"] == id).unwrap();
    // The toy task is learnt; lr 1e4 diverges at its first step, recorded with the step, and the grid goes on.
    let ok = by_id("vgg13__adamw__lr3__wd2__s0");
    assert_eq!(ok["status"], "ok");
    assert!(ok["final_top1"].as_f64().unwrap() > 0.3, "{ok}");
    for id in ["vgg13__sgd__lr4__wd2__s0", "resnet18__sgd__lr4__wd2__s0"] {
        let d = by_id(id);
        assert_eq!(d["status"], "diverged", "{d}");
        assert!(d["failed_step"].as_u64().unwrap() >= 1, "{d}");
    }
    let e = by_id("resnet18__adamw__lr4__wd2__s0");
    assert_eq!(e["status"], "error");
    assert!(e["message"].as_str().unwrap().contains("injected error"), "{e}");
    let log =
        std::fs::read_to_string(run_dir(&reference).join("cells/resnet18__adamw__lr4__wd2__s0/log.txt"))
            .unwrap();
    assert!(log.contains("error: VRL_BOCB_FAULT: injected error"), "{log}");
    let report = std::fs::read_to_string(run_dir(&reference).join("report.md")).unwrap();
    assert!(report.contains("resnet18__adamw__lr4__wd2__s0") && report.contains("diverged"), "{report}");
    for f in [
        "heatmap_top1.png",
        "heatmap_top1.svg",
        "hp/sgd.png",
        "hp/adamw.svg",
        "robustness.csv",
        "robustness.md",
        "cells.jsonl",
        "depth/vgg13.png",
        "depth/vgg13.svg",
        "depth/resnet18.png",
        "depth/resnet18.svg",
        "layer_alpha.png",
        "layer_alpha.svg",
    ] {
        assert!(run_dir(&reference).join(f).exists(), "{f} missing");
    }
    // The figures are listed in results.json and shown in report.md; each depth figure has a line per
    // optimizer whose best cell finished (adamw on resnet18 failed at lr 4, so it is drawn at lr 3).
    let files: Vec<&str> =
        expected["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    for f in ["heatmap_top1.svg", "hp/adamw.png", "depth/vgg13.png", "depth/resnet18.svg", "layer_alpha.png"]
    {
        assert!(files.contains(&f), "{f} not in results.json's files: {files:?}");
    }
    for f in &files {
        assert!(run_dir(&reference).join(f).exists(), "{f} listed but missing");
    }
    assert!(report.contains("depth/resnet18.png") && report.contains("layer_alpha.png"), "{report}");
    let svg = std::fs::read_to_string(run_dir(&reference).join("depth/resnet18.svg")).unwrap();
    assert!(svg.contains("sgd") && svg.contains("adamw") && svg.contains("relative depth"), "{svg}");
    assert!(run_dir(&reference).join("cells/vgg13__adamw__lr3__wd2__s0/model.safetensors").exists());

    // SIGKILL in the middle of the third cell (after step 5; its last checkpoint is at step 3), then
    // the same command again: finished cells are skipped, the third resumes, the table is the same.
    let killed = tmp.path().join("killed");
    let mut cmd = grid(&killed, &data);
    cmd.env("VRL_BOCB_FAULT", "error:resnet18__adamw__lr4__wd2__s0,kill:vgg13__adamw__lr3__wd2__s0:5");
    let out = run(cmd);
    assert_eq!(out.status.signal(), Some(9), "expected death by SIGKILL: {}", stderr(&out));
    assert!(!run_dir(&killed).join("results.json").exists());
    let mut cmd = grid(&killed, &data);
    cmd.env("VRL_BOCB_FAULT", "error:resnet18__adamw__lr4__wd2__s0");
    let out = run(cmd);
    assert!(out.status.success(), "resumed grid failed: {}", stderr(&out));
    assert_eq!(
        results(&killed),
        expected,
        "a grid killed mid-cell and resumed differs from an uninterrupted one"
    );
    assert_eq!(starts(&killed), starts(&reference), "a finished cell ran again, or a killed one restarted");
    // Bit for bit: the final weights of every trained cell.
    for c in CELLS {
        let w =
            |runs: &Path| std::fs::read(run_dir(runs).join("cells").join(c).join("model.safetensors")).ok();
        assert_eq!(w(&killed), w(&reference), "final weights of {c} differ");
    }
    let log =
        std::fs::read_to_string(run_dir(&killed).join("cells/vgg13__adamw__lr3__wd2__s0/log.txt")).unwrap();
    assert!(log.contains("resuming from step 3"), "{log}");

    // A finished grid is reported, not repeated.
    let out = run(grid(&reference, &data));
    assert!(out.status.success() && stderr(&out).contains("already finished"), "{}", stderr(&out));
}

#[test]
fn concurrent_processes_and_workers_run_each_cell_once() {
    let (tmp, data) = setup();
    let reference = tmp.path().join("reference");
    let out = run(grid(&reference, &data));
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = results(&reference);

    // Two grids started by mistake on one run directory at the same time.
    let both = tmp.path().join("both");
    let a = grid(&both, &data).spawn();
    let b = grid(&both, &data).spawn();
    let (a, b) = (a.unwrap().wait_with_output().unwrap(), b.unwrap().wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{}\n{}", stderr(&a), stderr(&b));
    assert_eq!(starts(&both), vec![1; 8], "a cell ran twice or not at all");
    assert_eq!(results(&both), expected);

    // Two worker processes (one thread each, like the reference).
    let workers = tmp.path().join("workers");
    let mut cmd = grid(&workers, &data);
    cmd.args(["--workers", "2"]);
    let out = run(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(starts(&workers), vec![1; 8]);
    assert_eq!(results(&workers), expected);
    let logs: Vec<String> = (0..2)
        .map(|i| std::fs::read_to_string(run_dir(&workers).join(format!("workers/worker-{i}.log"))).unwrap())
        .collect();
    assert!(logs.iter().all(|l| !l.contains("error")), "{logs:?}");
}

#[test]
fn fail_fast_stops_at_the_first_error() {
    let (tmp, data) = setup();
    let runs = tmp.path().join("runs");
    let mut cmd = grid(&runs, &data);
    cmd.arg("--fail-fast").env("VRL_BOCB_FAULT", "error:vgg13__sgd__lr4__wd2__s0");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("fail-fast") && stderr(&out).contains("vgg13__sgd__lr4__wd2__s0"),
        "{}",
        stderr(&out)
    );
    assert_eq!(starts(&runs), vec![1, 0, 0, 0, 0, 0, 0, 0]);
    assert!(!run_dir(&runs).join("results.json").exists());
    // --workers on an experiment that is not a grid is refused.
    let out = Command::new(VRL)
        .args(["experiment", "mnist", "--workers", "2", "--experiments-dir"])
        .arg(experiments_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
