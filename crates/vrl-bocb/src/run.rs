//! Running a grid: the coordinator (opens the run, starts the workers, shows progress, writes the
//! outputs at the end) and the workers (claim a cell, train it, record it, repeat).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tch::Device;
use vrl_config::{ExperimentFile, Override};
use vrl_run::{RunDir, RunState};
use vrl_train::{Outcome, RunOptions, StopSignal};

use crate::claim::{ClaimState, Claims, Owner};
use crate::grid::{Cell, cells};
use crate::ledger::{self, CellRecord, Status};
use crate::train::{CellEnd, CellLog, Data, Stop, train_cell};
use crate::{BocbConfig, report};

/// Makes the command that starts worker `i` of a grid: the `vrl` binary with the same experiment,
/// preset and overrides, and `--grid-worker`. The coordinator adds `--set exec.threads=K` and the
/// environment.
pub type Spawner = dyn Fn(usize) -> Command + Send + Sync;

/// How this process takes part in the grid.
pub enum Mode<'a> {
    /// Open the grid, run it with `exec.workers` workers (processes made by the spawner when there are
    /// more than one), and write the outputs when every cell is finished.
    Grid {
        /// Starts worker processes; needed for `exec.workers > 1`.
        spawner: Option<&'a Spawner>,
    },
    /// Be one worker of a grid that a coordinator, or another scheduler (a Slurm array task), runs:
    /// claim and train cells until none is left to claim, then exit. Writes no outputs.
    Worker,
}

/// The environment variable through which a coordinator tells its workers its pid: a worker whose
/// coordinator is gone (killed) stops at its next check, after saving a checkpoint.
pub const PARENT_ENV: &str = "VRL_BOCB_PARENT";
/// The file whose existence stops every worker of the grid (`exec.fail_fast` after an error).
pub const STOP_FILE: &str = "fail-fast.stop";

/// Runs the `bocb` experiment described by `file`; see the crate documentation.
pub fn run(
    file: &ExperimentFile,
    opts: &RunOptions,
    stop: &StopSignal,
    vrl_commit: &str,
    mode: Mode<'_>,
) -> anyhow::Result<Outcome> {
    let fresh = opts.fresh && matches!(mode, Mode::Grid { .. });
    let Opened { run, config, run_id, cells: all } = open(file, opts, fresh)?;
    let cfg = &config;
    if run.state() == RunState::Finished {
        return Ok(Outcome::finished_before(&run)?);
    }
    let device = vrl_train::parse_device(&cfg.device)?;
    let data = Data::load(cfg)?;
    match mode {
        Mode::Worker => {
            let threads = vrl_train::configure_threads(cfg.exec.threads);
            let label = worker_label();
            tracing::info!(run = %run.path().display(), threads, "bocb worker {label}");
            let w = Worker::new(cfg, &data, device, run.path(), &label, stop)?;
            match w.work(&all, false, None)? {
                WorkEnd::Done { ran } => Ok(Outcome::Finished {
                    dir: run.path().to_path_buf(),
                    results: json!({ "worker": label, "cells_run": ran }),
                    already: false,
                }),
                WorkEnd::Stopped(signal) => {
                    Ok(Outcome::Interrupted { dir: run.path().to_path_buf(), signal })
                }
                WorkEnd::FailFast(msg) => Err(anyhow::anyhow!("fail-fast: {msg}")),
            }
        }
        Mode::Grid { spawner } => {
            check_cells(cfg, &data)?;
            let threads = vrl_train::configure_threads(cfg.exec.threads);
            run.write_meta(&vrl_train::run_meta(&file.name, &run_id, device, vrl_commit, &opts.command))?;
            vrl_run::write_json_atomic(&run.path().join("grid.json"), &json!({ "cells": all }))?;
            let _ = std::fs::remove_file(run.path().join(STOP_FILE));
            tracing::info!(
                run = %run.path().display(), cells = all.len(), workers = cfg.exec.workers,
                device = %vrl_train::device_label(device), threads, "bocb grid"
            );
            let started = Instant::now();
            let bar = grid_bar(all.len() as u64);
            if cfg.exec.workers > 1 {
                let spawner = spawner
                    .context("exec.workers > 1 needs worker processes, which only the `vrl` binary starts")?;
                if let Some(end) = supervise(cfg, run.path(), &all, spawner, threads, stop, &bar)? {
                    return end_of(end, run.path());
                }
            }
            // One worker in this process; after worker processes, it finishes what they left (cells of a
            // crashed worker) and waits for cells that other live processes are running.
            let w = Worker::new(cfg, &data, device, run.path(), "coordinator", stop)?;
            match w.work(&all, true, Some(&bar))? {
                WorkEnd::Done { .. } => {}
                end => return end_of(end, run.path()),
            }
            bar.finish_and_clear();
            let results = report::finish(&run, cfg, &all, started.elapsed().as_secs_f64(), threads)?;
            Ok(Outcome::Finished { dir: run.path().to_path_buf(), results, already: false })
        }
    }
}

/// A grid's run directory, opened.
pub struct Opened {
    /// The run directory.
    pub run: RunDir,
    /// The resolved configuration.
    pub config: BocbConfig,
    /// The run id (the preset and the overrides outside `exec`).
    pub run_id: String,
    /// Every cell, in the grid's order.
    pub cells: Vec<Cell>,
}

/// Resolves and checks the configuration of `file` with `opts`, and opens (creates, with `fresh`
/// starts over) its run directory. `exec.*` overrides do not change the run id.
pub fn open(file: &ExperimentFile, opts: &RunOptions, fresh: bool) -> anyhow::Result<Opened> {
    let resolved = file.resolve::<BocbConfig>(opts.preset.as_deref(), &opts.overrides)?;
    resolved.config.validate()?;
    // `exec.*` says how the grid runs, not what it computes: it does not change the run.
    let identity: Vec<Override> = opts
        .overrides
        .iter()
        .filter(|o| o.path.first().map(String::as_str) != Some("exec"))
        .cloned()
        .collect();
    let run_id = vrl_config::run_id(&resolved.preset, &identity);
    let run = RunDir::open(&opts.runs_dir, &file.name, &run_id, &resolved.toml, fresh)?;
    let all = cells(&resolved.config);
    Ok(Opened { run, config: resolved.config, run_id, cells: all })
}

/// The owner label of a worker: `slurm-<job>_<task>` in a Slurm array task, else `worker`.
fn worker_label() -> String {
    match (std::env::var("SLURM_ARRAY_JOB_ID"), std::env::var("SLURM_ARRAY_TASK_ID")) {
        (Ok(job), Ok(task)) => format!("slurm-{job}_{task}"),
        _ => "worker".to_string(),
    }
}

fn end_of(end: WorkEnd, dir: &Path) -> anyhow::Result<Outcome> {
    match end {
        WorkEnd::Stopped(signal) => Ok(Outcome::Interrupted { dir: dir.to_path_buf(), signal }),
        WorkEnd::FailFast(msg) => Err(anyhow::anyhow!(
            "fail-fast: {msg}; the grid stopped (run the same command without --fail-fast to go on)"
        )),
        WorkEnd::Done { .. } => Err(anyhow::anyhow!("internal: grid ended without its outputs")),
    }
}

/// Builds every selected backbone once and checks every optimizer's hyper-parameters, so that a
/// mistake in the configuration is an error before any cell runs.
fn check_cells(cfg: &BocbConfig, data: &Data) -> anyhow::Result<()> {
    for b in &cfg.select.backbones {
        let (model, args) = crate::train::model_args(cfg, data, b)?;
        vrl_models::num_params(&model, &args).with_context(|| format!("backbone `{b}`"))?;
    }
    for o in &cfg.select.optimizers {
        let opt = &cfg.optimizers[o];
        let w = tch::Tensor::zeros([2, 2], (tch::Kind::Float, Device::Cpu)).set_requires_grad(true);
        vrl_optim::create(&opt.name, &opt.hparams_at(opt.lr[0], opt.weight_decay[0]), vec![("w".into(), w)])
            .with_context(|| format!("optimizer `{o}`"))?;
    }
    Ok(())
}

fn grid_bar(len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:>6} [{elapsed_precise}] {wide_bar} {pos}/{len} cells done ({eta}) {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix("bocb");
    bar
}

/// How a worker's loop ended.
#[derive(Debug)]
pub(crate) enum WorkEnd {
    /// Nothing left to claim.
    Done { ran: usize },
    /// A stop signal, or the coordinator is gone.
    Stopped(&'static str),
    /// `exec.fail_fast` and a cell failed with an error.
    FailFast(String),
}

/// Counts of the cells, for progress.
pub(crate) fn counts(run_dir: &Path, claims: &Claims, all: &[Cell]) -> (u64, u64, u64) {
    let ledger = ledger::read(&run_dir.join("cells.jsonl")).unwrap_or_default();
    let done = all.iter().filter(|c| ledger.records.contains_key(&c.id)).count() as u64;
    let failed = ledger.records.values().filter(|r| r.failed()).count() as u64;
    let running = all
        .iter()
        .filter(|c| !ledger.records.contains_key(&c.id))
        .filter(|c| matches!(claims.state(&c.id), Ok((ClaimState::Live(_), _))))
        .count() as u64;
    (done, running, failed)
}

/// Starts `exec.workers` worker processes and watches them until they exit. `Some(end)`: the grid
/// stops here (a signal, or fail-fast).
fn supervise(
    cfg: &BocbConfig,
    run_dir: &Path,
    all: &[Cell],
    spawner: &Spawner,
    threads: usize,
    stop: &StopSignal,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Option<WorkEnd>> {
    let n = cfg.exec.workers;
    let per = (threads / n).max(1);
    let logs = run_dir.join("workers");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut children: Vec<(usize, Child)> = Vec::new();
    for i in 0..n {
        let log = logs.join(format!("worker-{i}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = spawner(i);
        cmd.args(["--set", &format!("exec.threads={per}")])
            .env(PARENT_ENV, std::process::id().to_string())
            .env("RAYON_NUM_THREADS", per.to_string())
            .env("VRL_BOCB_WORKER", i.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().with_context(|| format!("starting worker {i} ({cmd:?})"))?;
        tracing::info!("worker {i}: pid {}, {per} thread(s), log {}", child.id(), log.display());
        children.push((i, child));
    }
    let claims = Claims::new(
        &run_dir.join("claims"),
        Owner::this_process("coordinator"),
        Duration::from_secs(cfg.exec.lease_seconds),
    )?;
    let mut forwarded = false;
    let mut failures = Vec::new();
    let mut last_count = Instant::now();
    while !children.is_empty() {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(sig) = stop.requested().filter(|_| !forwarded) {
            // Ctrl-C reaches the whole process group; a SIGTERM sent to this process alone is passed on.
            for (_, c) in &children {
                let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            }
            tracing::warn!("{sig}: asking the workers to save a checkpoint and stop");
            forwarded = true;
        }
        let mut i = 0;
        while i < children.len() {
            match children[i].1.try_wait()? {
                Some(status) => {
                    let (w, _) = children.remove(i);
                    if !status.success() && status.code() != Some(vrl_train::EXIT_INTERRUPTED) {
                        failures
                            .push(format!("worker {w} exited with {status} (see workers/worker-{w}.log)"));
                    }
                }
                None => i += 1,
            }
        }
        // Counting reads the ledger and every unfinished cell's claim: every few seconds is enough.
        if last_count.elapsed() >= Duration::from_secs(3) {
            last_count = Instant::now();
            let (done, running, failed) = counts(run_dir, &claims, all);
            bar.set_position(done);
            bar.set_message(format!("running {running}, failed {failed}"));
        }
    }
    if let Some(sig) = stop.requested() {
        return Ok(Some(WorkEnd::Stopped(sig)));
    }
    if cfg.exec.fail_fast && run_dir.join(STOP_FILE).exists() {
        let msg = std::fs::read_to_string(run_dir.join(STOP_FILE)).unwrap_or_default();
        return Ok(Some(WorkEnd::FailFast(msg.trim().to_string())));
    }
    for f in failures {
        tracing::warn!("{f}; its unfinished cells are taken over");
    }
    Ok(None)
}

/// One worker: claims cells and trains them.
pub(crate) struct Worker<'a> {
    cfg: &'a BocbConfig,
    data: &'a Data,
    device: Device,
    run_dir: PathBuf,
    claims: Claims,
    stop: &'a StopSignal,
    parent: Option<u32>,
}

impl<'a> Worker<'a> {
    pub(crate) fn new(
        cfg: &'a BocbConfig,
        data: &'a Data,
        device: Device,
        run_dir: &Path,
        label: &str,
        stop: &'a StopSignal,
    ) -> anyhow::Result<Self> {
        let claims = Claims::new(
            &run_dir.join("claims"),
            Owner::this_process(label),
            Duration::from_secs(cfg.exec.lease_seconds),
        )
        .with_context(|| format!("creating {}", run_dir.join("claims").display()))?;
        let parent = std::env::var(PARENT_ENV).ok().and_then(|p| p.parse().ok());
        Ok(Worker { cfg, data, device, run_dir: run_dir.to_path_buf(), claims, stop, parent })
    }

    fn cell_dir(&self, cell: &Cell) -> PathBuf {
        self.run_dir.join("cells").join(&cell.id)
    }

    /// Why to stop now, if at all: a signal, the coordinator gone, or the grid's fail-fast stop.
    fn stop_reason(&self) -> Option<String> {
        if let Some(s) = self.stop.requested() {
            return Some(s.to_string());
        }
        if let Some(p) = self.parent
            && !Path::new(&format!("/proc/{p}")).exists()
        {
            return Some("coordinator gone".into());
        }
        if self.run_dir.join(STOP_FILE).exists() {
            return Some("fail-fast".into());
        }
        None
    }

    /// Claims and trains cells until none is left to claim. With `wait`, also waits for cells that
    /// other live processes hold, so that on `Done` every cell is finished.
    pub(crate) fn work(
        &self,
        all: &[Cell],
        wait: bool,
        bar: Option<&indicatif::ProgressBar>,
    ) -> anyhow::Result<WorkEnd> {
        let ledger_path = self.run_dir.join("cells.jsonl");
        let mut ran = 0;
        'scan: loop {
            if let Some(reason) = self.stop_reason() {
                return Ok(self.stopped(&reason));
            }
            let ledger = ledger::read(&ledger_path)?;
            if let Some(b) = bar {
                let done = all.iter().filter(|c| ledger.records.contains_key(&c.id)).count() as u64;
                b.set_position(done);
            }
            let mut held_elsewhere = 0;
            for cell in all.iter().filter(|c| !ledger.records.contains_key(&c.id)) {
                let Some(claim) = self.claims.try_claim(&cell.id)? else {
                    held_elsewhere += 1;
                    continue;
                };
                let dir = self.cell_dir(cell);
                // Finished by someone else since the ledger was read, or recorded only in result.json
                // (a worker killed between the two writes): make sure the ledger has it.
                let result_path = dir.join("result.json");
                if let Ok(text) = std::fs::read_to_string(&result_path) {
                    let record: CellRecord = serde_json::from_str(&text)
                        .with_context(|| format!("reading {}", result_path.display()))?;
                    if !ledger::read(&ledger_path)?.records.contains_key(&cell.id) {
                        ledger::append(&ledger_path, &record)?;
                    }
                    claim.release()?;
                    continue 'scan;
                }
                if let Some(b) = bar {
                    b.set_message(format!("running {}", cell.id));
                }
                let end = self.run_cell(cell, &dir, &claim);
                match end {
                    CellEnd::Done(record) => {
                        if claim.lost() {
                            tracing::warn!(
                                "{}: another worker took the cell over; its result is theirs",
                                cell.id
                            );
                            continue 'scan;
                        }
                        vrl_run::write_json_atomic(&result_path, &record)?;
                        ledger::append(&ledger_path, &record)?;
                        claim.release()?;
                        ran += 1;
                        if record.status == Status::Error && self.cfg.exec.fail_fast {
                            let msg = format!(
                                "cell {} failed: {} (log: {})",
                                cell.id,
                                record.message.as_deref().unwrap_or("error"),
                                dir.join("log.txt").display()
                            );
                            vrl_cache::write_atomic(&self.run_dir.join(STOP_FILE), msg.as_bytes())?;
                            return Ok(WorkEnd::FailFast(msg));
                        }
                    }
                    CellEnd::Stopped(Stop::Lost) => {
                        tracing::warn!("{}: another worker took the cell over; left to it", cell.id);
                    }
                    CellEnd::Stopped(Stop::Requested(reason)) => {
                        claim.release()?;
                        return Ok(self.stopped(&reason));
                    }
                }
                continue 'scan;
            }
            if held_elsewhere > 0 && wait {
                if let Some(b) = bar {
                    b.set_message(format!("waiting for {held_elsewhere} cell(s) held by other processes"));
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            return Ok(WorkEnd::Done { ran });
        }
    }

    fn stopped(&self, reason: &str) -> WorkEnd {
        if reason == "fail-fast" {
            let msg = std::fs::read_to_string(self.run_dir.join(STOP_FILE)).unwrap_or_default();
            return WorkEnd::FailFast(msg.trim().to_string());
        }
        WorkEnd::Stopped(match self.stop.requested() {
            Some(s) => s,
            None => "SIGTERM",
        })
    }

    /// Trains one cell; an error (or a panic in LibTorch) becomes the cell's record.
    fn run_cell(&self, cell: &Cell, dir: &Path, claim: &crate::claim::Claim) -> CellEnd {
        let _ = std::fs::create_dir_all(dir);
        let mut log = CellLog::open(&dir.join("log.txt"));
        let heartbeat = Duration::from_secs(self.cfg.exec.heartbeat_seconds);
        let mut last_beat = Instant::now();
        let mut last_check = Instant::now();
        let fault = cell_fault(&cell.id);
        let mut step = 0u64;
        let mut check = || -> Option<Stop> {
            step += 1;
            if let Some(Fault::Kill(at)) = fault
                && at == step
            {
                tracing::warn!("VRL_BOCB_FAULT: killing this process at step {step} of {}", cell.id);
                let _ = signal_hook::low_level::raise(signal_hook::consts::SIGKILL);
            }
            if let Some(Fault::Slow(ms)) = fault {
                std::thread::sleep(Duration::from_millis(ms));
            }
            if let Some(s) = self.stop.requested() {
                return Some(Stop::Requested(s.to_string()));
            }
            if last_check.elapsed() >= Duration::from_secs(2) {
                last_check = Instant::now();
                if let Some(reason) = self.stop_reason() {
                    return Some(Stop::Requested(reason));
                }
            }
            if last_beat.elapsed() >= heartbeat {
                last_beat = Instant::now();
                if !claim.heartbeat().unwrap_or(true) {
                    return Some(Stop::Lost);
                }
            }
            None
        };
        // LibTorch reports some errors (shapes, memory) by panicking; keep the grid going.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if fault == Some(Fault::Error) {
                anyhow::bail!("VRL_BOCB_FAULT: injected error");
            }
            train_cell(self.cfg, self.data, self.device, cell, dir, &mut log, &mut check)
        }));
        std::panic::set_hook(previous);
        let message = match result {
            Ok(Ok(end)) => return end,
            Ok(Err(e)) => format!("{e:#}"),
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        };
        log.line(&cell.id, &format!("error: {message}"));
        tracing::error!("{}: {message}", cell.id);
        CellEnd::Done(CellRecord {
            cell: cell.id.clone(),
            status: Status::Error,
            final_top1: None,
            best_top1: None,
            failed_step: None,
            message: Some(message),
            steps: 0,
        })
    }
}

/// A fault injected into a cell by the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The cell fails with an error before training.
    Error,
    /// The process is killed (SIGKILL) after this many steps of the cell in this process.
    Kill(u64),
    /// Every step of the cell takes this many milliseconds longer (to catch a worker mid-cell).
    Slow(u64),
}

/// Fault injection for tests, like `VRL_FAULT` of vrl-train: `VRL_BOCB_FAULT` is a comma-separated list
/// of `error:<cell id>`, `kill:<cell id>:<steps>` and `slow:<cell id>:<milliseconds per step>`.
fn cell_fault(cell: &str) -> Option<Fault> {
    let spec = std::env::var("VRL_BOCB_FAULT").ok()?;
    spec.split(',').find_map(|item| {
        let mut parts = item.trim().split(':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("error"), Some(c), None) if c == cell => Some(Fault::Error),
            (Some("kill"), Some(c), Some(n)) if c == cell => n.parse().ok().map(Fault::Kill),
            (Some("slow"), Some(c), Some(n)) if c == cell => n.parse().ok().map(Fault::Slow),
            _ => None,
        }
    })
}

/// The figures of every finished cell, from the ledger and (for a lost line) the cells' `result.json`.
pub(crate) fn records(run_dir: &Path, all: &[Cell]) -> anyhow::Result<Vec<(Cell, CellRecord)>> {
    let ledger = ledger::read(&run_dir.join("cells.jsonl"))?;
    let mut out = Vec::new();
    for c in all {
        let rec = match ledger.records.get(&c.id) {
            Some(r) => r.clone(),
            None => {
                let p = run_dir.join("cells").join(&c.id).join("result.json");
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("cell {} has no result ({})", c.id, p.display()))?;
                serde_json::from_str(&text).with_context(|| format!("reading {}", p.display()))?
            }
        };
        out.push((c.clone(), rec));
    }
    Ok(out)
}
