//! `vrl experiment`: list, run one, or run the tour.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;
use vrl_config::{ExperimentFile, Override};
use vrl_run::{Report, RunDir};
use vrl_train::{EXIT_INTERRUPTED, Outcome, RunOptions, StopSignal};

use crate::UserError;

/// Arguments of `vrl experiment`.
#[derive(clap::Args, Debug)]
pub struct ExperimentArgs {
    /// Experiment name (a file `experiments/NAME.toml`), or `tour`; omit to list them.
    name: Option<String>,
    /// Preset (default: the file's default, usually `smoke`).
    #[arg(long)]
    preset: Option<String>,
    /// Override a config key: `--set train.epochs=3` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Start over even if a run with the same id exists.
    #[arg(long)]
    fresh: bool,
    /// Where runs are written.
    #[arg(long, env = "VRL_RUNS", default_value = "runs")]
    runs_dir: PathBuf,
    /// Where experiment files are read from (default: ./experiments, else the source tree's).
    #[arg(long)]
    experiments_dir: Option<PathBuf>,
    /// Grid experiments (bocb): worker processes claiming cells, threads split between them
    /// (the config key `exec.workers`).
    #[arg(long)]
    workers: Option<usize>,
    /// Grid experiments (bocb): stop at the first cell that fails with an error (`exec.fail_fast`).
    #[arg(long)]
    fail_fast: bool,
    /// Grid experiments (bocb): run as one worker of an existing grid (claim and train cells until
    /// none is left, write no outputs); what coordinators and Slurm array tasks start.
    #[arg(long, hide = true)]
    grid_worker: bool,
}

pub fn run(args: ExperimentArgs) -> anyhow::Result<ExitCode> {
    let dir = args.experiments_dir.clone().unwrap_or_else(crate::default_experiments_dir);
    let files = load_all(&dir)?;
    let Some(name) = args.name.as_deref() else {
        list(&files, &dir);
        return Ok(ExitCode::SUCCESS);
    };
    let mut overrides = args.set.iter().map(|s| Override::parse(s)).collect::<Result<Vec<_>, _>>()?;
    let stop = StopSignal::install().context("installing signal handlers")?;
    let command: Vec<String> = std::env::args().collect();
    if name == "tour" {
        return tour(&files, &args, &stop, &command);
    }
    let file = files.iter().find(|f| f.name == name).ok_or_else(|| {
        UserError(format!(
            "unknown experiment `{name}`; available: {}, tour (files in {})",
            files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
            dir.display()
        ))
    })?;
    let grid_flags = args.workers.is_some() || args.fail_fast || args.grid_worker;
    if grid_flags && file.study != "bocb" {
        return Err(UserError(format!(
            "--workers, --fail-fast and --grid-worker apply to grid experiments (bocb), not to `{name}`"
        ))
        .into());
    }
    if let Some(n) = args.workers {
        overrides.push(Override::parse(&format!("exec.workers={n}"))?);
    }
    if args.fail_fast {
        overrides.push(Override::parse("exec.fail_fast=true")?);
    }
    let opts = RunOptions {
        runs_dir: args.runs_dir.clone(),
        preset: args.preset.clone(),
        overrides,
        fresh: args.fresh,
        command,
    };
    Ok(report_outcome(&file.name, run_study(file, &opts, &stop, args.grid_worker)?))
}

fn run_study(
    file: &ExperimentFile,
    opts: &RunOptions,
    stop: &StopSignal,
    grid_worker: bool,
) -> anyhow::Result<Outcome> {
    match file.study.as_str() {
        "mnist" => vrl_mnist::run(file, opts, stop, crate::GIT_COMMIT),
        "longtail" => vrl_longtail::run(file, opts, stop, crate::GIT_COMMIT),
        "vae" => vrl_stcvae::run(file, opts, stop, crate::GIT_COMMIT),
        "transfer" => vrl_transfer::run(file, opts, stop, crate::GIT_COMMIT),
        "bocb" => {
            let spawner = grid_worker_command(file, opts);
            let mode = if grid_worker {
                vrl_bocb::Mode::Worker
            } else {
                vrl_bocb::Mode::Grid { spawner: Some(&spawner) }
            };
            vrl_bocb::run(file, opts, stop, crate::GIT_COMMIT, mode)
        }
        other => Err(UserError(format!(
            "{}: unknown study `{other}` (known: mnist, bocb, vae, longtail, transfer)",
            file.path.display()
        ))
        .into()),
    }
}

/// The command that starts one worker of a grid: this binary, the same experiment file, preset and
/// overrides, and `--grid-worker`.
fn grid_worker_command(
    file: &ExperimentFile,
    opts: &RunOptions,
) -> impl Fn(usize) -> std::process::Command + use<> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("vrl"));
    let dir = file.path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let (name, opts) = (file.name.clone(), opts.clone());
    move |_| {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["experiment", &name, "--grid-worker", "--runs-dir"]).arg(&opts.runs_dir);
        cmd.arg("--experiments-dir").arg(&dir);
        if let Some(p) = &opts.preset {
            cmd.args(["--preset", p]);
        }
        for o in &opts.overrides {
            cmd.arg("--set").arg(o.to_string());
        }
        cmd
    }
}

fn report_outcome(name: &str, outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Finished { dir, results, already } => {
            if already {
                eprintln!("{name}: already finished (pass --fresh to run it again): {}", dir.display());
            }
            println!("{}", serde_json::to_string_pretty(&headline(&results)).unwrap_or_default());
            eprintln!("{name}: report at {}", dir.join("report.md").display());
            ExitCode::SUCCESS
        }
        Outcome::Interrupted { dir, signal } => {
            eprintln!(
                "{name}: stopped by {signal}; checkpoint saved in {}. Run the same command again to resume.",
                dir.display()
            );
            ExitCode::from(EXIT_INTERRUPTED as u8)
        }
    }
}

/// The figures a study puts first: its `headline` object, else `test_accuracy` where there is one,
/// else all of `results`.
fn headline(results: &Value) -> Value {
    if let Some(h) = results.get("headline") {
        return h.clone();
    }
    results
        .get("test_accuracy")
        .cloned()
        .map(|v| serde_json::json!({ "test_accuracy": v }))
        .or_else(|| results.get("results").map(|v| serde_json::json!({ "results": v })))
        .unwrap_or_else(|| results.clone())
}

fn load_all(dir: &Path) -> anyhow::Result<Vec<ExperimentFile>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| UserError(format!("cannot read experiments directory {}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for p in paths {
        files.push(ExperimentFile::load(&p)?);
    }
    Ok(files)
}

fn list(files: &[ExperimentFile], dir: &Path) {
    println!("experiments in {}:", dir.display());
    for f in files {
        println!("  {:<12} {}", f.name, f.description);
        for (name, p) in &f.presets {
            let default = if *name == f.default_preset { " (default)" } else { "" };
            println!("      --preset {name:<8}{default} {}", p.description);
        }
    }
    println!("  {:<12} the smoke preset of every experiment, with one report", "tour");
    println!("\nrun one with: vrl experiment NAME [--preset P] [--set key=value]...");
}

fn tour(
    files: &[ExperimentFile],
    args: &ExperimentArgs,
    stop: &StopSignal,
    command: &[String],
) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for file in files.iter().filter(|f| f.presets.contains_key("smoke")) {
        eprintln!("==> tour: {} (smoke)", file.name);
        let opts = RunOptions {
            runs_dir: args.runs_dir.clone(),
            preset: Some("smoke".into()),
            overrides: Vec::new(),
            fresh: args.fresh,
            command: command.to_vec(),
        };
        let started = std::time::Instant::now();
        match run_study(file, &opts, stop, false)? {
            Outcome::Finished { dir, results, .. } => {
                rows.push((file.name.clone(), dir, headline(&results), started.elapsed().as_secs_f64()));
            }
            interrupted @ Outcome::Interrupted { .. } => return Ok(report_outcome(&file.name, interrupted)),
        }
    }
    let run = RunDir::open(&args.runs_dir, "tour", "smoke", "", true)?;
    let mut report = Report::new("vrl tour");
    report.paragraph(&format!(
        "The smoke preset of every experiment, run by `cargo xtask experiment tour` (vrl {}).",
        crate::GIT_COMMIT
    ));
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(name, dir, headline, secs)| {
            let rel =
                Path::new("../..").join(name).join(dir.file_name().unwrap_or_default()).join("report.md");
            vec![format!("[{name}]({})", rel.display()), flatten(headline), format!("{secs:.0} s")]
        })
        .collect();
    report.table(&["experiment", "headline", "time (this invocation)"], &table);
    report.write(&run.path().join("report.md"))?;
    let summary: serde_json::Map<String, Value> = rows.into_iter().map(|(n, _, h, _)| (n, h)).collect();
    run.write_results(&summary)?;
    eprintln!("tour: report at {}", run.path().join("report.md").display());
    Ok(ExitCode::SUCCESS)
}

fn flatten(v: &Value) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&p, x, out);
                }
            }
            Value::Number(n) => out.push(format!("{prefix} = {:.4}", n.as_f64().unwrap_or(f64::NAN))),
            other => out.push(format!("{prefix} = {other}")),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.join(", ")
}
