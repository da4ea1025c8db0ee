//! Running a grid as a Slurm job array (`vrl experiment bocb --backend slurm`).
//!
//! [`submit`] opens the grid's run directory as a local run would, writes `slurm/worker.sh` (an
//! `sbatch` script: a job array whose every task is one worker, `vrl experiment NAME --grid-worker`,
//! claiming cells through the same files as local workers, [`crate::claim`]) with the resources of
//! `exec.slurm` ([`crate::SlurmConfig`]), submits it, and submits `slurm/finalize.sh` after it
//! (`--dependency=afterany`), which writes `results.json`, the tables, plots and `report.md` when
//! every cell has its result ([`finalize`]). Every submission is appended to `slurm/jobs.jsonl`;
//! each task appends its exit to `slurm/tasks.jsonl`; task logs are in `slurm/logs/`.
//!
//! Submitting again after cancelled, timed-out or failed tasks submits only as many tasks as cells
//! are missing, and those claim only what is missing: a task stopped by `SIGTERM` (`scancel`, the time
//! limit) saves a checkpoint and releases its cell, which the next worker resumes; a task killed
//! outright leaves a claim that is taken over at once on the same host, and after `exec.lease_seconds`
//! without heartbeat from another host. [`status`] shows each cell (done, failed, running, pending) and
//! each task (from `squeue`, `sacct` where accounting is on, and `slurm/tasks.jsonl`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::json;
use vrl_config::ExperimentFile;
use vrl_run::RunState;
use vrl_train::{Outcome, RunOptions};

use crate::claim::{ClaimState, Claims, Owner};
use crate::ledger::{self, Status};
use crate::run::{Opened, STOP_FILE, open};
use crate::{SlurmConfig, report};

/// One submission, a line of `slurm/jobs.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The array job's id (`None`: every cell had its result; only the report was submitted).
    pub array_job: Option<String>,
    /// Tasks in the array.
    pub tasks: usize,
    /// Cells without a result when it was submitted.
    pub missing: usize,
    /// The id of the job that writes the report.
    pub finalize_job: String,
    /// When it was submitted (seconds since the Unix epoch).
    pub submitted_unix: u64,
}

/// What [`submit`] did.
#[derive(Debug)]
pub enum Submitted {
    /// The grid had finished already: nothing submitted.
    AlreadyFinished(PathBuf),
    /// Jobs submitted.
    Jobs {
        /// The run directory.
        dir: PathBuf,
        /// What was submitted.
        submission: Submission,
    },
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

/// `s` quoted for bash.
fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command line for bash.
fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `#SBATCH` lines shared by the worker and the report jobs.
fn common_options(cfg: &SlurmConfig, name: &str, workdir: &Path) -> anyhow::Result<Vec<String>> {
    let mut opts = vec![
        format!(
            "--job-name={}",
            if cfg.job_name.is_empty() { format!("vrl-{name}") } else { cfg.job_name.clone() }
        ),
        format!("--chdir={}", workdir.display()),
    ];
    if !cfg.partition.is_empty() {
        opts.push(format!("--partition={}", cfg.partition));
    }
    if !cfg.mem.is_empty() {
        opts.push(format!("--mem={}", cfg.mem));
    }
    if !cfg.time.is_empty() {
        opts.push(format!("--time={}", cfg.time));
    }
    opts.extend(cfg.extra_args.iter().cloned());
    if let Some(bad) = opts.iter().find(|o| o.contains('\n') || o.contains('\r')) {
        anyhow::bail!("exec.slurm: the sbatch option {bad:?} contains a line break");
    }
    if let Some(bad) = cfg.extra_args.iter().find(|o| !o.starts_with('-')) {
        anyhow::bail!("exec.slurm.extra_args: expected sbatch options such as `--account=lab`, got {bad:?}");
    }
    Ok(opts)
}

fn script(options: &[String], comment: &str, body: &str) -> String {
    let mut s = String::from("#!/bin/bash\n");
    for o in options {
        let _ = writeln!(s, "#SBATCH {o}");
    }
    let _ = write!(s, "#\n{comment}\n{body}");
    s
}

/// Runs `sbatch --parsable ARGS SCRIPT` and returns the job id.
fn sbatch(args: &[String], script: &Path) -> anyhow::Result<String> {
    let out = Command::new("sbatch").arg("--parsable").args(args).arg(script).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "`sbatch` not found: --backend slurm needs Slurm's client commands on PATH (for a \
                 single-node test cluster on this machine, run .ci/slurm-up.sh)"
            )
        } else {
            anyhow::anyhow!("cannot run sbatch: {e}")
        }
    })?;
    if !out.status.success() {
        anyhow::bail!(
            "sbatch {} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `id` or `id;cluster`.
    let id = text.trim().split(';').next().unwrap_or_default().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        anyhow::bail!("sbatch {} printed no job id: {:?}", script.display(), text.trim());
    }
    Ok(id)
}

/// The cells without a result (neither in `cells.jsonl` nor in their `result.json`).
fn missing_cells(dir: &Path, all: &[crate::Cell]) -> anyhow::Result<Vec<String>> {
    let ledger =
        ledger::read(&dir.join("cells.jsonl")).with_context(|| format!("reading {}", dir.display()))?;
    Ok(all
        .iter()
        .filter(|c| !ledger.records.contains_key(&c.id))
        .filter(|c| !dir.join("cells").join(&c.id).join("result.json").exists())
        .map(|c| c.id.clone())
        .collect())
}

/// The submissions recorded in `slurm/jobs.jsonl`.
pub fn submissions(dir: &Path) -> anyhow::Result<Vec<Submission>> {
    let path = dir.join("slurm/jobs.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}: line {}", path.display(), i + 1)))
        .collect()
}

fn append_line(path: &Path, line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("writing {}", path.display()))
}

/// Submits the grid of `file` as a Slurm job array; `worker` is the command of one worker
/// (`vrl experiment NAME --grid-worker …`), `finalize` the command that writes the report
/// (`vrl experiment NAME --finalize …`). See the module documentation.
pub fn submit(
    file: &ExperimentFile,
    opts: &RunOptions,
    vrl_commit: &str,
    worker: &Command,
    finalize: &Command,
) -> anyhow::Result<Submitted> {
    let Opened { run, config: cfg, run_id, cells: all } = open(file, opts, opts.fresh)?;
    let dir = run.path().to_path_buf();
    if run.state() == RunState::Finished {
        return Ok(Submitted::AlreadyFinished(dir));
    }
    let dir = std::fs::canonicalize(&dir).with_context(|| format!("resolving {}", dir.display()))?;
    let workdir = std::env::current_dir().context("the current directory")?;
    let sc = &cfg.exec.slurm;
    let common = common_options(sc, &file.name, &workdir)?;
    let device = vrl_train::parse_device(&cfg.device)?;
    run.write_meta(&vrl_train::run_meta(&file.name, &run_id, device, vrl_commit, &opts.command))?;
    vrl_run::write_json_atomic(&dir.join("grid.json"), &json!({ "cells": all }))?;
    let _ = std::fs::remove_file(dir.join(STOP_FILE));
    let slurm_dir = dir.join("slurm");
    std::fs::create_dir_all(slurm_dir.join("logs"))
        .with_context(|| format!("creating {}", slurm_dir.display()))?;
    let missing = missing_cells(&dir, &all)?.len();
    let tasks = missing.min(sc.array_size);
    let tasks_log = quote(&slurm_dir.join("tasks.jsonl").display().to_string());
    let array_job = if tasks > 0 {
        let mut options = common.clone();
        let parallel =
            if sc.array_parallelism > 0 { format!("%{}", sc.array_parallelism) } else { String::new() };
        options.push(format!("--array=0-{}{parallel}", tasks - 1));
        options.push(format!("--cpus-per-task={}", sc.cpus_per_task));
        if sc.gpus_per_task > 0 {
            options.push(format!("--gpus-per-task={}", sc.gpus_per_task));
        }
        options.push(format!("--output={}", slurm_dir.join("logs/%A_%a.log").display()));
        let mut cmd = Command::new(worker.get_program());
        cmd.args(worker.get_args()).args(["--set", &format!("exec.threads={}", sc.cpus_per_task)]);
        let body = format!(
            "export RAYON_NUM_THREADS={threads}\n\
             # scancel and the time limit send SIGTERM: the worker saves a checkpoint, releases its cell and\n\
             # exits; the trap keeps this shell alive to record that.\n\
             trap 'echo \"task $SLURM_ARRAY_TASK_ID: signalled\" >&2' TERM INT\n\
             {cmd}\n\
             rc=$?\n\
             printf '{{\"job\":\"%s\",\"task\":\"%s\",\"host\":\"%s\",\"exit\":%d,\"end_unix\":%s}}\\n' \
             \"$SLURM_ARRAY_JOB_ID\" \"$SLURM_ARRAY_TASK_ID\" \"$(hostname -s)\" \"$rc\" \"$(date +%s)\" >> {tasks_log}\n\
             exit $rc\n",
            threads = sc.cpus_per_task,
            cmd = command_line(&cmd),
        );
        let comment = format!(
            "# Written by `vrl experiment {} --backend slurm`: each array task is one worker of the grid in\n\
             # {}; it claims cells (claims/) until none is left, then exits.",
            file.name,
            dir.display()
        );
        let path = slurm_dir.join("worker.sh");
        vrl_cache::write_atomic(&path, script(&options, &comment, &body).as_bytes())?;
        Some(sbatch(&[], &path)?)
    } else {
        None
    };
    let mut options = common;
    options.push("--cpus-per-task=1".into());
    options.push(format!("--output={}", slurm_dir.join("logs/finalize-%j.log").display()));
    let comment = format!(
        "# Written by `vrl experiment {} --backend slurm`: writes the grid's results and report once every\n\
         # cell has its result (submitted after the array with --dependency=afterany).",
        file.name
    );
    let path = slurm_dir.join("finalize.sh");
    vrl_cache::write_atomic(
        &path,
        script(&options, &comment, &format!("exec {}\n", command_line(finalize))).as_bytes(),
    )?;
    let dependency: Vec<String> = array_job.iter().map(|j| format!("--dependency=afterany:{j}")).collect();
    let finalize_job = match sbatch(&dependency, &path) {
        Ok(j) => j,
        Err(e) => {
            if let Some(j) = &array_job {
                let _ = Command::new("scancel").arg(j).status();
            }
            return Err(e.context("submitting the report job (the array job was cancelled again)"));
        }
    };
    let submission = Submission { array_job, tasks, missing, finalize_job, submitted_unix: now_unix() };
    append_line(&slurm_dir.join("jobs.jsonl"), &serde_json::to_string(&submission)?)?;
    Ok(Submitted::Jobs { dir, submission })
}

/// The report step of a Slurm grid: when every cell has its result, writes `results.json`, the
/// tables, plots and `report.md` as a local grid does; otherwise an error naming the missing cells.
/// The recorded run time is the wall time from the first submission.
pub fn finalize(file: &ExperimentFile, opts: &RunOptions) -> anyhow::Result<Outcome> {
    let Opened { run, config: cfg, cells: all, .. } = open(file, opts, false)?;
    let dir = run.path().to_path_buf();
    if run.state() == RunState::Finished {
        return Ok(Outcome::finished_before(&run)?);
    }
    let missing = missing_cells(&dir, &all)?;
    if !missing.is_empty() {
        anyhow::bail!(
            "{} of {} cells of {} have no result yet (first: {}); submit the grid again \
             (`vrl experiment {} --backend slurm` with the same preset and --set options) to run them",
            missing.len(),
            all.len(),
            dir.display(),
            missing[0],
            file.name
        );
    }
    let first = submissions(&dir)?.first().map(|s| s.submitted_unix);
    let seconds = first.map_or(0, |t| now_unix().saturating_sub(t)) as f64;
    let results = report::finish(&run, &cfg, &all, seconds, cfg.exec.slurm.cpus_per_task)?;
    Ok(Outcome::Finished { dir, results, already: false })
}

/// Where one cell stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellState {
    /// Finished, trained to the end.
    Done,
    /// Finished as a failure (diverged, or an error).
    Failed,
    /// Held by a live worker.
    Running,
    /// Not finished and not held (never started, released, or left by a worker that is gone).
    Pending,
}

impl CellState {
    fn name(&self) -> &'static str {
        match self {
            CellState::Done => "done",
            CellState::Failed => "failed",
            CellState::Running => "running",
            CellState::Pending => "pending",
        }
    }
}

/// The status of a grid: each cell, and each Slurm task submitted for it.
#[derive(Debug)]
pub struct GridStatus {
    /// The run directory.
    pub dir: PathBuf,
    /// Each cell with its state and a detail (accuracy, error, owner, checkpoint).
    pub cells: Vec<(String, CellState, String)>,
    /// Each job or array task: id, state, detail.
    pub jobs: Vec<(String, String, String)>,
    /// Whether `results.json` (the report) is written.
    pub finished: bool,
}

impl GridStatus {
    /// How many cells are in `state`.
    pub fn count(&self, state: &CellState) -> usize {
        self.cells.iter().filter(|(_, s, _)| s == state).count()
    }

    /// The status as text: a summary line, the cells, the jobs.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "run: {}", self.dir.display());
        let _ = writeln!(
            s,
            "cells: {} total, {} done, {} failed, {} running, {} pending",
            self.cells.len(),
            self.count(&CellState::Done),
            self.count(&CellState::Failed),
            self.count(&CellState::Running),
            self.count(&CellState::Pending)
        );
        let _ =
            writeln!(s, "report: {}", if self.finished { "written (report.md)" } else { "not written yet" });
        let width = self.cells.iter().map(|(c, _, _)| c.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(s, "\n{:<width$}  {:<8} detail", "cell", "state");
        for (c, state, detail) in &self.cells {
            let _ = writeln!(s, "{c:<width$}  {:<8} {detail}", state.name());
        }
        if !self.jobs.is_empty() {
            let width = self.jobs.iter().map(|(j, _, _)| j.len()).max().unwrap_or(3).max(3);
            let _ = writeln!(s, "\n{:<width$}  {:<12} detail", "job", "state");
            for (j, state, detail) in &self.jobs {
                let _ = writeln!(s, "{j:<width$}  {state:<12} {detail}");
            }
        }
        s
    }
}

/// The states `squeue` reports for `jobs` (array tasks as `JOB_TASK`); empty if it cannot run.
fn squeue(jobs: &[String]) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    if jobs.is_empty() {
        return out;
    }
    let Ok(o) = Command::new("squeue")
        .args(["-h", "-r", "--states=all", "-o", "%i|%T|%R", "-j", &jobs.join(",")])
        .output()
    else {
        return out;
    };
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let mut parts = line.split('|');
        if let (Some(id), Some(state), reason) = (parts.next(), parts.next(), parts.next()) {
            let reason = reason.filter(|r| !r.is_empty() && *r != "None").unwrap_or_default();
            out.insert(id.trim().to_string(), format!("{state}|{reason}"));
        }
    }
    out
}

/// The states `sacct` reports for `jobs`; empty where accounting is off.
fn sacct(jobs: &[String]) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    if jobs.is_empty() {
        return out;
    }
    let Ok(o) = Command::new("sacct")
        .args(["-n", "-P", "-X", "-o", "JobID,State,ExitCode", "-j", &jobs.join(",")])
        .output()
    else {
        return out;
    };
    if !o.status.success() {
        return out;
    }
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let mut parts = line.split('|');
        if let (Some(id), Some(state), Some(code)) = (parts.next(), parts.next(), parts.next()) {
            out.insert(id.to_string(), format!("{state}|exit {code}"));
        }
    }
    out
}

/// Where the grid of `file` with `opts` stands; see [`GridStatus`]. An error if it was never started.
pub fn status(file: &ExperimentFile, opts: &RunOptions) -> anyhow::Result<GridStatus> {
    let resolved = file.resolve::<crate::BocbConfig>(opts.preset.as_deref(), &opts.overrides)?;
    let identity: Vec<vrl_config::Override> = opts
        .overrides
        .iter()
        .filter(|o| o.path.first().map(String::as_str) != Some("exec"))
        .cloned()
        .collect();
    let run_id = vrl_config::run_id(&resolved.preset, &identity);
    let path = opts.runs_dir.join(&file.name).join(&run_id);
    if !path.join("config.toml").exists() {
        anyhow::bail!(
            "no run of `{}` at {} yet: submit it first (`vrl experiment {} --backend slurm`, with the \
             same preset and --set options)",
            file.name,
            path.display(),
            file.name
        );
    }
    let Opened { run, config: cfg, cells: all, .. } = open(file, opts, false)?;
    let dir = run.path().to_path_buf();
    let ledger =
        ledger::read(&dir.join("cells.jsonl")).with_context(|| format!("reading {}", dir.display()))?;
    let claims = Claims::new(
        &dir.join("claims"),
        Owner::this_process("status"),
        Duration::from_secs(cfg.exec.lease_seconds),
    )?;
    // Tasks: squeue while Slurm remembers them, sacct where accounting is on, else the exits the tasks
    // recorded themselves.
    let subs = submissions(&dir)?;
    let mut ids = Vec::new();
    for s in &subs {
        if let Some(a) = &s.array_job {
            ids.push(a.clone());
        }
        ids.push(s.finalize_job.clone());
    }
    let (queue, acct) = (squeue(&ids), sacct(&ids));
    let mut cells = Vec::new();
    for c in &all {
        let row = match ledger.records.get(&c.id) {
            Some(r) if r.status == Status::Ok => {
                (CellState::Done, format!("top-1 {:.4}", r.final_top1.unwrap_or(f64::NAN)))
            }
            Some(r) => {
                let status = if r.status == Status::Diverged { "diverged" } else { "error" };
                let msg = r.message.as_deref().unwrap_or_default();
                let msg: String = msg.chars().take(60).collect();
                (CellState::Failed, format!("{status} at step {}: {msg}", r.failed_step.unwrap_or(0)))
            }
            None => {
                let label = |o: &Option<Owner>| {
                    o.as_ref()
                        .map_or("an unknown owner".to_string(), |o| format!("{} on {}", o.label, o.host))
                };
                let checkpoint = if dir.join("cells").join(&c.id).join("checkpoints").is_dir() {
                    "; has a checkpoint"
                } else {
                    ""
                };
                match claims.state(&c.id)? {
                    (ClaimState::Live(o), _) => {
                        // A task killed outright on another host holds its claim until the lease runs out.
                        let gone = o
                            .as_ref()
                            .and_then(|o| o.label.strip_prefix("slurm-"))
                            .and_then(|task| queue.get(task))
                            .map(|s| s.split('|').next().unwrap_or_default())
                            .filter(|s| !["RUNNING", "COMPLETING", "PENDING"].contains(s));
                        let note = gone.map_or(String::new(), |s| {
                            format!(
                                " (its task is {s}: taken over after exec.lease_seconds without heartbeat)"
                            )
                        });
                        (CellState::Running, format!("{}{note}", label(&o)))
                    }
                    (ClaimState::Stale(o), _) => {
                        (CellState::Pending, format!("claim left by {} (gone){checkpoint}", label(&o)))
                    }
                    (ClaimState::Free, Some(_)) => {
                        (CellState::Pending, format!("released by its last worker{checkpoint}"))
                    }
                    (ClaimState::Free, None) => (CellState::Pending, "never started".to_string()),
                }
            }
        };
        cells.push((c.id.clone(), row.0, row.1));
    }
    let exits: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("slurm/tasks.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut jobs = Vec::new();
    let from_slurm = |id: &str| {
        queue.get(id).or_else(|| acct.get(id)).map(|s| {
            let (state, detail) = s.split_once('|').unwrap_or((s, ""));
            (state.to_string(), detail.to_string())
        })
    };
    for s in &subs {
        if let Some(a) = &s.array_job {
            for t in 0..s.tasks {
                let id = format!("{a}_{t}");
                let exit = exits.iter().rev().find(|e| {
                    e["job"].as_str() == Some(a.as_str())
                        && e["task"].as_str() == Some(t.to_string().as_str())
                });
                let recorded = exit.map(|e| {
                    let code = e["exit"].as_i64().unwrap_or(-1);
                    let host = e["host"].as_str().unwrap_or("?");
                    let what = match code {
                        0 => "COMPLETED",
                        c if c == i64::from(vrl_train::EXIT_INTERRUPTED) => "STOPPED",
                        _ => "FAILED",
                    };
                    let why = if what == "STOPPED" { " (a signal: scancel or the time limit)" } else { "" };
                    (what.to_string(), format!("exit {code} on {host}{why}; log slurm/logs/{a}_{t}.log"))
                });
                let row = match (from_slurm(&id), recorded) {
                    (Some((state, _)), Some((_, detail))) if state != "RUNNING" && state != "PENDING" => {
                        (state, detail)
                    }
                    (Some(row), _) => row,
                    (None, Some(row)) => row,
                    (None, None) => ("ENDED".to_string(), "no exit recorded (killed?)".to_string()),
                };
                jobs.push((id, row.0, row.1));
            }
        }
        let f = &s.finalize_job;
        let row = from_slurm(f).unwrap_or_else(|| ("ENDED".into(), String::new()));
        let detail = format!("report step; log slurm/logs/finalize-{f}.log {}", row.1).trim().to_string();
        jobs.push((f.clone(), row.0, detail));
    }
    Ok(GridStatus { dir: dir.clone(), cells, jobs, finished: dir.join("results.json").exists() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_bash() {
        let args = ["plain", "with space", "it's", "$HOME", "a=b{c='d'}", ""];
        let mut cmd = Command::new("printf");
        cmd.arg("%s\\n").args(args);
        let out = Command::new("bash").arg("-c").arg(command_line(&cmd)).output().unwrap();
        let printed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(printed.lines().collect::<Vec<_>>(), args);
    }

    #[test]
    fn options_come_from_the_config_and_bad_ones_are_refused() {
        let mut cfg = SlurmConfig {
            partition: "gpu".into(),
            mem: "8G".into(),
            time: "01:00:00".into(),
            extra_args: vec!["--account=lab".into()],
            ..SlurmConfig::default()
        };
        let o = common_options(&cfg, "bocb", Path::new("/w")).unwrap();
        assert_eq!(
            o,
            [
                "--job-name=vrl-bocb",
                "--chdir=/w",
                "--partition=gpu",
                "--mem=8G",
                "--time=01:00:00",
                "--account=lab"
            ]
        );
        cfg.extra_args = vec!["account=lab".into()];
        let e = common_options(&cfg, "bocb", Path::new("/w")).unwrap_err().to_string();
        assert!(e.contains("extra_args") && e.contains("account=lab"), "{e}");
        cfg.extra_args.clear();
        cfg.mem = "8G\n#SBATCH --x".into();
        assert!(
            common_options(&cfg, "bocb", Path::new("/w")).unwrap_err().to_string().contains("line break")
        );
    }
}
