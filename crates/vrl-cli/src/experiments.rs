//! `vrl experiment`: list, run one, or run the tour.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;
use vrl_config::{Catalog, ExperimentFile, Override};
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
    /// Where to train: `auto` (CUDA when LibTorch sees a GPU), `cpu`, `cuda` or `cuda:N`; the config key
    /// `device`, for every study of a tour too (default: the preset's).
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
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
    /// Grid experiments (bocb): `local` runs the grid here; `slurm` submits it as a Slurm job array
    /// (resources from `exec.slurm`), or submits what is missing after cancelled or failed tasks.
    #[arg(long, value_enum, default_value = "local")]
    backend: Backend,
    /// With `--backend slurm`: show each cell (done, failed, running, pending) and each task; submit nothing.
    #[arg(long)]
    status: bool,
    /// Grid experiments (bocb): write the outputs of a grid whose cells are all finished (the last
    /// step of `--backend slurm`).
    #[arg(long, hide = true)]
    finalize: bool,
}

/// Where a grid's cells run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// Worker processes on this machine.
    Local,
    /// A Slurm job array.
    Slurm,
}

pub fn run(args: ExperimentArgs) -> anyhow::Result<ExitCode> {
    let dir = args.experiments_dir.clone().unwrap_or_else(crate::default_experiments_dir);
    let catalog = Catalog::load(&dir)?;
    let Some(name) = args.name.as_deref() else {
        list(&catalog);
        return Ok(ExitCode::SUCCESS);
    };
    let mut overrides = args.set.iter().map(|s| Override::parse(s)).collect::<Result<Vec<_>, _>>()?;
    if let Some(device) = &args.device {
        overrides.push(device_override(device)?);
    }
    let stop = StopSignal::install().context("installing signal handlers")?;
    let command: Vec<String> = std::env::args().collect();
    if name == "tour" {
        return tour(&catalog, &args, &stop, &command);
    }
    let file = catalog.get(name)?;
    let slurm = args.backend == Backend::Slurm;
    let grid_flags =
        args.workers.is_some() || args.fail_fast || args.grid_worker || slurm || args.status || args.finalize;
    if grid_flags && file.study != "bocb" {
        return Err(UserError(format!(
            "--workers, --fail-fast, --backend, --status and --grid-worker apply to grid experiments \
             (bocb), not to `{name}`"
        ))
        .into());
    }
    if args.status && !slurm {
        return Err(UserError("--status goes with --backend slurm".into()).into());
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
    if slurm || args.finalize {
        return crate::slurm::run(file, &opts, args.status, args.finalize, &grid_worker_command(file, &opts));
    }
    Ok(report_outcome(&file.name, run_study(file, &opts, &stop, args.grid_worker)?))
}

/// `--device D` as the override `device="D"`, checked first so that a typo fails before any work.
fn device_override(device: &str) -> anyhow::Result<Override> {
    vrl_train::parse_device(device).map_err(|e| UserError(format!("--device: {e}")))?;
    Ok(Override::parse(&format!("device=\"{device}\""))?)
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
pub(crate) fn grid_worker_command(
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

pub(crate) fn report_outcome(name: &str, outcome: Outcome) -> ExitCode {
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

fn list(catalog: &Catalog) {
    println!("experiments in {}:", catalog.dir.display());
    for f in &catalog.files {
        println!("  {:<12} {}", f.name, f.description);
        for (name, p) in &f.presets {
            let default = if *name == f.default_preset { " (default)" } else { "" };
            println!("      --preset {name:<8}{default} {}", p.description);
        }
    }
    println!("  {:<12} the smoke preset of every experiment, with one report", "tour");
    if !catalog.problems.is_empty() {
        println!("\nfiles that cannot be used (fix them to run them; the others are unaffected):");
        for p in &catalog.problems {
            println!("  - {}", p.error);
        }
    }
    println!("\nrun one with: vrl experiment NAME [--preset P] [--set key=value]...");
}

fn tour(
    catalog: &Catalog,
    args: &ExperimentArgs,
    stop: &StopSignal,
    command: &[String],
) -> anyhow::Result<ExitCode> {
    if !catalog.problems.is_empty() {
        let lines: Vec<String> = catalog.problems.iter().map(|p| format!("  - {}", p.error)).collect();
        return Err(UserError(format!(
            "the tour runs every experiment, and these files cannot be used:\n{}",
            lines.join("\n")
        ))
        .into());
    }
    let mut rows = Vec::new();
    for file in catalog.files.iter().filter(|f| f.presets.contains_key("smoke")) {
        eprintln!("==> tour: {} (smoke)", file.name);
        let opts = RunOptions {
            runs_dir: args.runs_dir.clone(),
            preset: Some("smoke".into()),
            overrides: args.device.as_deref().map(device_override).transpose()?.into_iter().collect(),
            fresh: args.fresh,
            command: command.to_vec(),
        };
        let started = std::time::Instant::now();
        match run_study(file, &opts, stop, false)? {
            Outcome::Finished { dir, results, .. } => rows.push(TourRow {
                name: file.name.clone(),
                dir,
                headline: headline(&results),
                results,
                secs: started.elapsed().as_secs_f64(),
            }),
            interrupted @ Outcome::Interrupted { .. } => return Ok(report_outcome(&file.name, interrupted)),
        }
    }
    // The tour rewrites its report and results each time; nothing to move aside.
    let run = RunDir::open(&args.runs_dir, "tour", "smoke", "", false)?;
    let mut report = Report::new("vrl tour");
    report.paragraph(&format!(
        "The smoke preset of every experiment, run by `cargo xtask experiment tour` (vrl {}). Each \
         section shows the study's headline figures and plots; its own report has everything else.",
        crate::GIT_COMMIT
    ));
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let recorded = row.results.pointer("/timing/seconds").and_then(Value::as_f64);
            vec![
                format!("[{}]({})", row.name, row.link("report.md")),
                recorded.map_or_else(|| "–".into(), |s| format!("{s:.0} s")),
                format!("{:.0} s", row.secs),
            ]
        })
        .collect();
    report.table(&["experiment", "run time (its last invocation)", "this tour"], &table);
    for row in &rows {
        report.heading(&row.name);
        let (headers, cells) = headline_table(&row.headline);
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        report.table(&headers, &cells);
        for figure in headline_figures(&row.results, &row.dir) {
            report.image(&figure, &row.link(&figure));
        }
        report.paragraph(&format!("Full report: [{}/report.md]({}).", row.name, row.link("report.md")));
    }
    report.write(&run.path().join("report.md"))?;
    let summary: serde_json::Map<String, Value> =
        rows.into_iter().map(|row| (row.name, row.headline)).collect();
    run.write_results(&summary)?;
    eprintln!("tour: report at {}", run.path().join("report.md").display());
    Ok(ExitCode::SUCCESS)
}

/// One finished study of the tour.
struct TourRow {
    name: String,
    dir: PathBuf,
    results: Value,
    headline: Value,
    secs: f64,
}

impl TourRow {
    /// `file` of this study's run, relative to the tour's run directory (`runs/tour/<id>/`).
    fn link(&self, file: &str) -> String {
        Path::new("../..")
            .join(&self.name)
            .join(self.dir.file_name().unwrap_or_default())
            .join(file)
            .display()
            .to_string()
    }
}

/// The plots a study puts first: `headline_figures` in its results (paths relative to its run
/// directory), else the first two images (PNG or SVG) its report shows.
fn headline_figures(results: &Value, dir: &Path) -> Vec<String> {
    if let Some(list) = results.get("headline_figures").and_then(Value::as_array) {
        return list.iter().filter_map(Value::as_str).map(str::to_owned).collect();
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap_or_default();
    report
        .split("![")
        .skip(1)
        .filter_map(|rest| rest.split_once("](").and_then(|(_, tail)| tail.split_once(')')))
        .map(|(path, _)| path)
        .filter(|p| (p.ends_with(".png") || p.ends_with(".svg")) && !p.contains("://"))
        .take(2)
        .map(str::to_owned)
        .collect()
}

/// A headline object as a table. Numbers nested two deep (`{figure: {method: x}}`) become a
/// matrix, oriented so that the longer side runs down the rows; anything else becomes rows of
/// `key = value`, with nested keys joined by dots.
fn headline_table(v: &Value) -> (Vec<String>, Vec<Vec<String>>) {
    let mut leaves = Vec::new();
    collect_leaves(&mut Vec::new(), v, &mut leaves);
    let two_deep = !leaves.is_empty() && leaves.iter().all(|(path, _)| path.len() == 2);
    if !two_deep {
        let rows = leaves.into_iter().map(|(path, x)| vec![path.join("."), x]).collect();
        return (vec!["figure".into(), "value".into()], rows);
    }
    let mut outer: Vec<String> = Vec::new();
    let mut inner: Vec<String> = Vec::new();
    for (path, _) in &leaves {
        if !outer.contains(&path[0]) {
            outer.push(path[0].clone());
        }
        if !inner.contains(&path[1]) {
            inner.push(path[1].clone());
        }
    }
    let (rows_are_inner, row_keys, col_keys) =
        if inner.len() >= outer.len() { (true, &inner, &outer) } else { (false, &outer, &inner) };
    let cell = |r: &String, c: &String| {
        let (o, i) = if rows_are_inner { (c, r) } else { (r, c) };
        leaves
            .iter()
            .find(|(path, _)| &path[0] == o && &path[1] == i)
            .map(|(_, x)| x.clone())
            .unwrap_or_else(|| "–".into())
    };
    let mut headers = vec![String::new()];
    headers.extend(col_keys.iter().cloned());
    let rows = row_keys
        .iter()
        .map(|r| std::iter::once(r.clone()).chain(col_keys.iter().map(|c| cell(r, c))).collect())
        .collect();
    (headers, rows)
}

fn collect_leaves(path: &mut Vec<String>, v: &Value, out: &mut Vec<(Vec<String>, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                path.push(k.clone());
                collect_leaves(path, x, out);
                path.pop();
            }
        }
        Value::Number(n) => out.push((path.clone(), format!("{:.4}", n.as_f64().unwrap_or(f64::NAN)))),
        other => out.push((path.clone(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_deep_headline_is_a_matrix_with_the_longer_side_down() {
        let v = serde_json::json!({ "mig": { "vae": 0.01, "beta_tcvae": 0.2, "s2": 0.3 } });
        let (headers, rows) = headline_table(&v);
        assert_eq!(headers, ["", "mig"]);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], ["beta_tcvae", "0.2000"]);
        let v = serde_json::json!({ "a": { "x": 1 }, "b": { "x": 2 }, "c": { "y": 3 } });
        let (headers, rows) = headline_table(&v);
        assert_eq!(headers, ["", "x", "y"]);
        assert_eq!(rows[2], ["c", "–", "3.0000"]);
    }

    #[test]
    fn other_headlines_are_key_value_rows() {
        let v = serde_json::json!({ "test_accuracy": { "adamw": 0.98 }, "note": "x", "n": 3 });
        let (headers, rows) = headline_table(&v);
        assert_eq!(headers, ["figure", "value"]);
        assert!(rows.contains(&vec!["test_accuracy.adamw".to_string(), "0.9800".to_string()]));
        assert!(rows.contains(&vec!["note".to_string(), "\"x\"".to_string()]));
    }

    #[test]
    fn figures_come_from_results_else_from_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let report =
            "![a](a.png)\n[link](l.png)\n![web](http://x.png)\n![t](t.txt)\n![b](b.svg)\n![c](c.png)";
        std::fs::write(dir.path().join("report.md"), report).unwrap();
        assert_eq!(headline_figures(&serde_json::json!({}), dir.path()), ["a.png", "b.svg"]);
        let listed = serde_json::json!({ "headline_figures": ["z.png"] });
        assert_eq!(headline_figures(&listed, dir.path()), ["z.png"]);
    }
}
