//! `vrl experiment NAME --backend slurm [--status]` and the report step `--finalize`: the command
//! side of [`vrl_bocb::slurm`].

use std::process::{Command, ExitCode};

use vrl_config::ExperimentFile;
use vrl_train::RunOptions;

/// Submits the grid (or what is missing of it), shows its status, or writes its report.
pub fn run(
    file: &ExperimentFile,
    opts: &RunOptions,
    status: bool,
    finalize: bool,
    worker: &dyn Fn(usize) -> Command,
) -> anyhow::Result<ExitCode> {
    let name = &file.name;
    if status {
        print!("{}", vrl_bocb::slurm::status(file, opts)?.render());
        return Ok(ExitCode::SUCCESS);
    }
    if finalize {
        return Ok(crate::experiments::report_outcome(name, vrl_bocb::slurm::finalize(file, opts)?));
    }
    let worker = worker(0);
    // The report step: the worker's command line with `--finalize` in place of `--grid-worker`.
    let mut report = Command::new(worker.get_program());
    report.args(worker.get_args().map(|a| if a == "--grid-worker" { "--finalize".as_ref() } else { a }));
    match vrl_bocb::slurm::submit(file, opts, crate::GIT_COMMIT, &worker, &report)? {
        vrl_bocb::slurm::Submitted::AlreadyFinished(dir) => {
            eprintln!(
                "{name}: already finished (pass --fresh to run it again); report at {}",
                dir.join("report.md").display()
            );
        }
        vrl_bocb::slurm::Submitted::Jobs { dir, submission: s } => {
            match &s.array_job {
                Some(job) => eprintln!(
                    "{name}: submitted job array {job} ({} task(s) for {} cell(s) without a result)",
                    s.tasks, s.missing
                ),
                None => eprintln!("{name}: every cell has its result; submitted only the report step"),
            }
            eprintln!("{name}: the report step is job {} (it runs after the array)", s.finalize_job);
            eprintln!("{name}: run directory {}", dir.display());
            eprintln!("{name}: follow it with the same command and --status");
            // The ids on stdout, for scripts: array job (or `-`), report job.
            println!("{} {}", s.array_job.as_deref().unwrap_or("-"), s.finalize_job);
        }
    }
    Ok(ExitCode::SUCCESS)
}
