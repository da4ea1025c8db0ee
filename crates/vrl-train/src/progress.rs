//! Progress bars on stderr (hidden when stderr is not a terminal, e.g. in CI logs).

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over `len` steps with a message prefix.
pub fn progress_bar(len: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{prefix:>14} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta}) {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(prefix.to_string());
    bar
}
