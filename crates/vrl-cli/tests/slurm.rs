//! The `bocb` grid on a Slurm cluster (`--backend slurm`), end to end through the `vrl` binary: a tiny
//! grid submitted as a job array of two tasks; one task is cancelled (`scancel`) in the middle of a
//! cell; once the array is over, `--status` shows that cell pending and the report step has refused to
//! write a report; the grid is submitted again, which runs only that cell (resuming it from its
//! checkpoint); in the end every cell has finished exactly once and the report is written.
//!
//! Needs a Slurm cluster that runs jobs on this machine (or one sharing its /tmp): `.ci/slurm-up.sh`
//! starts a single-node one. Without one the test is skipped with a message, unless `CI=true`, where it
//! fails so that CI cannot skip it silently.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;

use common::{experiments_dir, make_data};

const VRL: &str = env!("CARGO_BIN_EXE_vrl");

/// The cell made slow (2 s a step) in the first submission, so that it can be caught mid-way; it is
/// the grid's last cell, claimed when every other cell is claimed.
const SLOW: &str = "resnet18__adamw__lr3__wd2__s0";
const CELLS: usize = 8;

/// 2 backbones × 2 optimizers × 2 learning rates = 8 cells of 16 steps, as a Slurm array of 2 tasks
/// of one CPU each, with a short claim lease.
fn grid(runs: &Path, data: &Path) -> Command {
    let mut cmd = Command::new(VRL);
    cmd.args(["experiment", "bocb", "--preset", "smoke", "--backend", "slurm", "--runs-dir"])
        .arg(runs)
        .arg("--experiments-dir")
        .arg(experiments_dir())
        .arg("--set")
        .arg(format!("data.dir={}", data.display()));
    for s in [
        "exec.slurm={array_size=2, cpus_per_task=1, time='00:10:00'}",
        "exec.lease_seconds=4",
        "exec.heartbeat_seconds=1",
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
        "select={backbones=['vgg13', 'resnet18'], optimizers=['sgd', 'adamw'], lr=[2, 3], weight_decay=[2]}",
    ] {
        cmd.args(["--set", s]);
    }
    cmd.env("RUST_LOG", "warn").env_remove("VRL_FAULT").env_remove("VRL_BOCB_FAULT");
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Submits; returns (array job, report job).
fn submit(mut cmd: Command) -> (String, String) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "submission failed: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut ids = stdout.split_whitespace().map(str::to_string);
    (ids.next().unwrap(), ids.next().unwrap())
}

fn slurm_reachable() -> bool {
    Command::new("sinfo").args(["-h", "-o", "%T"]).output().is_ok_and(|o| {
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| ["idle", "mixed", "allocated"].contains(&l.trim()))
    })
}

/// Cancels the jobs it holds when the test ends, passed or failed.
struct Jobs(Vec<String>);

impl Drop for Jobs {
    fn drop(&mut self) {
        let _ = Command::new("scancel").args(&self.0).status();
    }
}

/// Whether any of `jobs` is still pending, running or completing.
fn queued(jobs: &[&str]) -> bool {
    let out =
        Command::new("squeue").args(["-h", "-r", "-o", "%i %T", "-j", &jobs.join(",")]).output().unwrap();
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

fn wait_for(what: &str, timeout: Duration, dir: &Path, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > timeout {
            let logs: Vec<String> = std::fs::read_dir(dir.join("slurm/logs"))
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| {
                            format!(
                                "{}:\n{}",
                                e.path().display(),
                                std::fs::read_to_string(e.path()).unwrap_or_default()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            panic!("timed out after {timeout:?} waiting for {what}; task logs:\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The cell ids of `cells.jsonl`, one per line.
fn ledger_cells(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("cells.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["cell"].as_str().unwrap().to_string())
        .collect()
}

fn status(runs: &Path, data: &Path) -> String {
    let out = grid(runs, data).arg("--status").output().unwrap();
    assert!(out.status.success(), "--status failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn slurm_array_survives_a_cancelled_task_and_resubmission_runs_each_cell_once() {
    if !slurm_reachable() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "CI=true but Slurm is not reachable (`sinfo` shows no usable node): .ci/run starts it with .ci/slurm-up.sh"
            );
        }
        eprintln!("skipped: no slurm (run .ci/slurm-up.sh)");
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    make_data(&data, 200, 100);
    let runs = tmp.path().join("runs");

    // First submission, with the last cell slowed down.
    let mut cmd = grid(&runs, &data);
    cmd.env("VRL_BOCB_FAULT", format!("slow:{SLOW}:2000"));
    let (array, report) = submit(cmd);
    let mut jobs = Jobs(vec![array.clone(), report.clone()]);
    let dir = runs.join("bocb").join(std::fs::read_link(runs.join("bocb/latest")).unwrap());
    let script = std::fs::read_to_string(dir.join("slurm/worker.sh")).unwrap();
    assert!(
        script.contains("#SBATCH --array=0-1") && script.contains("#SBATCH --cpus-per-task=1"),
        "{script}"
    );
    assert!(script.contains("#SBATCH --time=00:10:00") && script.contains("--grid-worker"), "{script}");

    // Every other cell done, the slow one past its first checkpoint: cancel the task that holds it.
    let slow = dir.join("cells").join(SLOW);
    wait_for("7 cells done and the slow cell checkpointed", Duration::from_secs(180), &dir, || {
        ledger_cells(&dir).len() == CELLS - 1
            && std::fs::read_dir(slow.join("checkpoints")).is_ok_and(|mut d| d.next().is_some())
    });
    let claim = std::fs::read_to_string(dir.join("claims").join(SLOW).join("0")).unwrap();
    let owner: serde_json::Value = serde_json::from_str(&claim).unwrap();
    let label = owner["label"].as_str().unwrap();
    let task = label.strip_prefix("slurm-").unwrap_or_else(|| panic!("owner label {label}"));
    assert!(task.starts_with(&format!("{array}_")), "{task} is not a task of {array}");
    let out = Command::new("scancel").arg(task).output().unwrap();
    assert!(out.status.success(), "scancel {task}: {}", text(&out));
    wait_for("the first array and its report step to end", Duration::from_secs(120), &dir, || {
        !queued(&[&array, &report])
    });
    assert!(!dir.join("results.json").exists(), "a report was written with a cell missing");
    let log = std::fs::read_to_string(dir.join(format!("slurm/logs/finalize-{report}.log"))).unwrap();
    assert!(log.contains("1 of 8 cells") && log.contains(SLOW), "{log}");
    let s = status(&runs, &data);
    eprintln!("--status after the cancelled task:\n{s}");
    assert!(s.contains("cells: 8 total, 7 done, 0 failed, 0 running, 1 pending"), "{s}");
    assert!(s.lines().any(|l| l.starts_with(SLOW) && l.contains("pending")), "{s}");
    assert!(s.contains(task) && s.contains("report: not written yet"), "{s}");

    // Submitting again runs only the missing cell, from its checkpoint, then the report.
    let out = grid(&runs, &data).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 task(s) for 1 cell(s)"), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let ids: Vec<String> = stdout.split_whitespace().map(str::to_string).collect();
    jobs.0.extend(ids.iter().cloned());
    wait_for("the second array and the report", Duration::from_secs(180), &dir, || {
        !queued(&[&ids[0], &ids[1]])
    });
    assert!(dir.join("results.json").exists() && dir.join("report.md").exists(), "{}", status(&runs, &data));

    // Every cell finished exactly once: one ledger line, one training start, no metrics line twice.
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for c in ledger_cells(&dir) {
        *count.entry(c).or_default() += 1;
    }
    assert_eq!(count.len(), CELLS, "{count:?}");
    assert!(count.values().all(|n| *n == 1), "a cell was recorded twice: {count:?}");
    for c in count.keys() {
        let cell = dir.join("cells").join(c);
        let log = std::fs::read_to_string(cell.join("log.txt")).unwrap();
        assert_eq!(log.lines().filter(|l| l.starts_with("start:")).count(), 1, "{c}: {log}");
        let metrics = std::fs::read_to_string(cell.join("metrics.jsonl")).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for line in metrics.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
            assert!(seen.insert(format!("{} {keys:?}", v["step"])), "{c}: metrics line twice: {line}");
        }
        assert!(cell.join("result.json").exists(), "{c}");
    }
    let log = std::fs::read_to_string(slow.join("log.txt")).unwrap();
    assert!(log.contains("resuming from step"), "the cancelled cell did not resume: {log}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["cells"].as_array().unwrap().len(), CELLS);
    let s = status(&runs, &data);
    assert!(
        s.contains("cells: 8 total, 8 done, 0 failed, 0 running, 0 pending") && s.contains("report: written"),
        "{s}"
    );

    // A finished grid is not submitted again.
    let out = grid(&runs, &data).output().unwrap();
    assert!(out.status.success() && text(&out).contains("already finished"), "{}", text(&out));
    eprintln!("slurm test: {:.0} s", started.elapsed().as_secs_f64());
}
