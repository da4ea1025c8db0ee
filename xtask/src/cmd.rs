//! Running child processes: echo them (`==> ...` on stderr), turn failures into errors that keep the exit code.

use std::fmt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result};

/// A child process that exited unsuccessfully; `main` exits with its code.
#[derive(Debug)]
pub struct ChildFailed {
    /// What failed, for the message: a quoted command line or a step name.
    pub what: String,
    /// The exit code, or 128 + signal number when it was killed.
    pub code: i32,
}

impl fmt::Display for ChildFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed with exit code {}", self.what, self.code)
    }
}

impl std::error::Error for ChildFailed {}

/// The exit code of a finished process; 128 + signal for one killed by a signal, like a shell.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}

/// The command line as text: program and arguments, quoted where needed.
pub fn show(cmd: &Command) -> String {
    let quote = |s: &std::ffi::OsStr| {
        let s = s.to_string_lossy();
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,".contains(c)) {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    // `$CARGO` is a long toolchain path; `cargo` says the same to a reader.
    let program = cmd.get_program();
    let program =
        if Path::new(program).file_name() == Some("cargo".as_ref()) { "cargo".as_ref() } else { program };
    std::iter::once(program).chain(cmd.get_args()).map(quote).collect::<Vec<_>>().join(" ")
}

/// Prints `==> <msg>` on stderr.
pub fn note(msg: impl fmt::Display) {
    eprintln!("==> {msg}");
}

/// Runs `cmd` with inherited stdio and returns its exit code (after echoing it).
pub fn status(cmd: &mut Command) -> Result<i32> {
    let line = show(cmd);
    note(&line);
    let status = cmd.status().with_context(|| format!("cannot run `{line}`"))?;
    Ok(exit_code(status))
}

/// Runs `cmd` with inherited stdio; an unsuccessful exit is a [`ChildFailed`] error.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = show(cmd);
    match status(cmd)? {
        0 => Ok(()),
        code => Err(ChildFailed { what: format!("`{line}`"), code }.into()),
    }
}

/// Runs `cmd` (echoed) and returns its stdout; stderr goes to the terminal.
pub fn output(cmd: &mut Command) -> Result<String> {
    let line = show(cmd);
    note(&line);
    quiet_output(cmd)
}

/// Runs `cmd` without echoing it and returns its stdout; stderr goes to the terminal.
pub fn quiet_output(cmd: &mut Command) -> Result<String> {
    let line = show(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run `{line}`"))?;
    if !out.status.success() {
        return Err(ChildFailed { what: format!("`{line}`"), code: exit_code(out.status) }.into());
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{line}` printed invalid UTF-8"))
}

/// Whether `cmd` runs and exits 0, with all its output discarded.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// A `cargo` command: the cargo that runs xtask (`$CARGO`), so the toolchain stays the same.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}
