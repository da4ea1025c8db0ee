//! Output files named on the command line: checked before any work, so that a wrong `--output`
//! costs nothing and leaves nothing behind.

use std::path::Path;

use crate::UserError;

/// `--output PATH` must name a file (not a directory) in a directory that exists; `what` says what
/// file was expected (e.g. `a .npy file`).
///
/// # Errors
/// A [`UserError`] naming the path.
pub fn check_output(path: &Path, what: &str) -> anyhow::Result<()> {
    let shown = path.display();
    if path.is_dir() || path.file_name().is_none() {
        return Err(UserError(format!("--output {shown} is a directory; expected the path of {what}")).into());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(UserError(format!(
            "--output {shown}: the directory {} does not exist; create it first",
            dir.display()
        ))
        .into());
    }
    Ok(())
}
