//! `cargo xtask`: the project's automation, in Rust so that it runs wherever cargo does.
//!
//! It installs LibTorch (PyPI's torch wheel in a venv under the cache), fetches and verifies the data sets,
//! and drives cargo and the `vrl` binary with the environment they need. See [`USAGE`].

mod bench;
mod cmd;
mod data;
mod libtorch;
mod page;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd::ChildFailed;
use crate::libtorch::TorchEnv;

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  libtorch                     install torch 2.11.0 (PyPI wheel) into a venv in the cache if needed, link
                               target/libtorch to it, and print `export` lines for your shell
  data [NAME...]               download and verify data sets (default: every one in datasets/)
  build [--debug]              build the vrl binary: cargo build --release -p vrl-cli (target/release/vrl)
  experiment [NAME] [ARGS...]  libtorch + data + build, then run `target/release/vrl experiment NAME ARGS...`
                               (no NAME: list the experiments; `tour` runs the guided tour;
                               `bocb --backend slurm [--status]` submits the grid to Slurm, docs/bocb.md)
  test                         libtorch and python/requirements.txt (timm), then cargo fmt --check,
                               clippy -D warnings, nextest, doc tests
  bench [GROUP] [--rounds N] [--compare-only]
                               libtorch + data + build, criterion benches, then vrl against PyTorch
                               (GROUP: train, data, models, layers, metrics or optim, default all; N
                               alternating rounds each, default 3; --compare-only skips criterion; layers
                               installs weightwatcher 0.7.7 into the venv and times ResNet-50's layer
                               statistics; optim times one optimizer step over ResNet-50's parameters
                               against torch.optim and pytorch-optimizer, with the memory-bandwidth bound);
                               each group's table then goes into docs/benchmarks.md, with the machine,
                               versions and date (groups not re-measured keep their earlier section)
  help                         this text

environment:
  VRL_CACHE             cache directory (default ~/.cache/vrl): venv/, datasets/, downloads/
  VRL_PYTHON_BOOTSTRAP  python used to create the venv (default python3)

cargo and vrl run with LIBTORCH=<root>/target/libtorch, LIBTORCH_CXX11_ABI, VRL_PYTHON (the venv's python)
and VRL_CACHE set.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            // anyhow's downcast sees both context values and the errors beneath them; the outermost wins.
            exit(err.downcast_ref::<ChildFailed>().map_or(1, |c| c.code))
        }
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Dispatches a command line; returns the exit code.
fn run(args: &[String]) -> Result<i32> {
    let root = project_root();
    let Some((command, rest)) = args.split_first() else {
        print!("{USAGE}");
        return Ok(0);
    };
    match command.as_str() {
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(0)
        }
        "libtorch" => {
            no_args(command, rest)?;
            let env = libtorch::prepare(&root)?;
            cmd::note(format!("torch {} at {}", env.version, env.torch_dir.display()));
            println!("# torch {} ({})", env.version, env.torch_dir.display());
            for (key, value) in env.vars() {
                println!("export {key}={}", shell_quote(&value.to_string_lossy()));
            }
            Ok(0)
        }
        "data" => {
            if let Some(flag) = rest.iter().find(|a| a.starts_with('-')) {
                return usage_error(&format!("unknown option `{flag}` for `data`"));
            }
            data::fetch(rest)?;
            Ok(0)
        }
        "build" => {
            let debug = match rest {
                [] => false,
                [flag] if flag == "--debug" => true,
                _ => return usage_error(&format!("unexpected arguments for `build`: {}", rest.join(" "))),
            };
            let env = libtorch::prepare(&root)?;
            let vrl = build(&root, &env, debug)?;
            cmd::note(format!("built {}", vrl.display()));
            Ok(0)
        }
        "experiment" => {
            let env = libtorch::prepare(&root)?;
            data::fetch(&[])?;
            let vrl = build(&root, &env, false)?;
            let mut child = Command::new(&vrl);
            child.arg("experiment").args(rest).current_dir(&root);
            cmd::status(env.apply(&mut child))
        }
        "test" => {
            no_args(command, rest)?;
            test(&root)?;
            Ok(0)
        }
        "bench" => {
            let (mut rounds, mut criterion, mut group) = (3, true, None);
            let mut it = rest.iter();
            while let Some(arg) = it.next() {
                match arg.as_str() {
                    "--compare-only" => criterion = false,
                    "--rounds" => {
                        let n = it.next().map(|n| n.parse::<usize>());
                        match n {
                            Some(Ok(n)) if n > 0 => rounds = n,
                            _ => return usage_error("`--rounds` needs a positive whole number"),
                        }
                    }
                    g if group.is_none() && bench::is_group(g) => group = Some(g.to_string()),
                    other => return usage_error(&format!("unknown argument `{other}` for `bench`")),
                }
            }
            bench(&root, rounds, criterion, group.as_deref())?;
            Ok(0)
        }
        other => usage_error(&format!("unknown command `{other}`")),
    }
}

fn usage_error(msg: &str) -> Result<i32> {
    eprint!("error: {msg}\n\n{USAGE}");
    Ok(2)
}

fn no_args(command: &str, rest: &[String]) -> Result<()> {
    if !rest.is_empty() {
        bail!("`{command}` takes no arguments, got: {}", rest.join(" "));
    }
    Ok(())
}

/// The workspace root: the parent of this crate's directory.
fn project_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A cargo command in the workspace root with the LibTorch environment.
fn cargo(root: &Path, env: &TorchEnv) -> Command {
    let mut c = cmd::cargo();
    c.current_dir(root);
    env.apply(&mut c);
    c
}

/// `--locked` when `Cargo.lock` exists.
fn locked(root: &Path) -> Option<&'static str> {
    root.join("Cargo.lock").exists().then_some("--locked")
}

/// Builds the vrl binary and returns its path.
fn build(root: &Path, env: &TorchEnv, debug: bool) -> Result<PathBuf> {
    let mut c = cargo(root, env);
    c.arg("build");
    if !debug {
        c.arg("--release");
    }
    c.args(["-p", "vrl-cli"]);
    cmd::run(&mut c).context("cannot build the vrl binary")?;
    Ok(target_dir(root).join(if debug { "debug" } else { "release" }).join("vrl"))
}

/// Where cargo builds: `$CARGO_TARGET_DIR` when set (the xtask alias's own `--target-dir` does not
/// set it), else `target/`.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d))
}

/// `cargo xtask test`: each step in turn, stopping at the first failure.
fn test(root: &Path) -> Result<()> {
    // The tests make the small data files they need; LibTorch and the reference scripts' Python
    // packages (timm, for the model zoo's fixtures) are prepared here.
    let env = libtorch::prepare(root)?;
    libtorch::install_requirements(root, &env)?;

    if !cmd::succeeds(cmd::cargo().args(["nextest", "--version"])) {
        bail!("cargo-nextest is not installed: run `cargo install cargo-nextest --locked`");
    }
    let locked = locked(root);
    let mut steps: Vec<(&str, Command)> = Vec::new();

    let mut fmt = cargo(root, &env);
    fmt.args(["fmt", "--all", "--", "--check"]);
    steps.push(("format", fmt));

    let mut clippy = cargo(root, &env);
    clippy.args(["clippy", "--workspace", "--all-targets"]).args(locked).args(["--", "-D", "warnings"]);
    steps.push(("clippy", clippy));

    let mut nextest = cargo(root, &env);
    nextest.args(["nextest", "run", "--workspace"]).args(locked).arg("--no-fail-fast");
    steps.push(("tests", nextest));

    // Doc tests are linked without the crates' rpath arguments, so they find LibTorch this way.
    let mut doc = cargo(root, &env);
    let mut lib_path = std::ffi::OsString::from(env.libtorch.join("lib"));
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|p| !p.is_empty()) {
        lib_path.push(":");
        lib_path.push(old);
    }
    doc.args(["test", "--workspace", "--doc"]).args(locked).env("LD_LIBRARY_PATH", lib_path);
    steps.push(("doc tests", doc));

    let total = Instant::now();
    let mut times = Vec::new();
    for (name, mut command) in steps {
        cmd::note(format!("step: {name}"));
        let start = Instant::now();
        let result = cmd::run(&mut command);
        let secs = start.elapsed().as_secs_f64();
        cmd::note(format!("step {name}: {} in {secs:.1} s", if result.is_ok() { "ok" } else { "FAILED" }));
        if let Err(err) = result {
            let code = err.downcast_ref::<ChildFailed>().map_or(1, |c| c.code);
            return Err(err.context(ChildFailed { what: format!("step `{name}`"), code }));
        }
        times.push((name, secs));
    }
    let summary: Vec<String> = times.iter().map(|(n, s)| format!("{n} {s:.1} s")).collect();
    cmd::note(format!("all tests passed in {:.1} s ({})", total.elapsed().as_secs_f64(), summary.join(", ")));
    Ok(())
}

/// `cargo xtask bench`: criterion benches, then the vrl-against-PyTorch table.
fn bench(root: &Path, rounds: usize, criterion: bool, group: Option<&str>) -> Result<()> {
    let env = libtorch::prepare(root)?;
    libtorch::install_requirements(root, &env)?;
    data::fetch(&[])?;
    let vrl = build(root, &env, false)?;
    if criterion {
        let mut c = cargo(root, &env);
        c.arg("bench");
        match group {
            None => c.arg("--workspace"),
            Some(_) => {
                for package in bench::packages(group) {
                    c.args(["-p", package]);
                }
                &mut c
            }
        };
        c.arg("--benches").args(locked(root));
        cmd::run(&mut c).context("criterion benches failed")?;
    }
    bench::compare(root, &vrl, &env, rounds, group)
}
