//! A small Markdown report builder.

use std::fmt::Write as _;
use std::path::Path;

use crate::{RunError, write_atomic};

/// A Markdown document built section by section and written atomically.
#[derive(Debug, Default, Clone)]
pub struct Report {
    text: String,
}

impl Report {
    /// Starts a report with a top-level title.
    pub fn new(title: &str) -> Self {
        Report { text: format!("# {title}\n\n") }
    }

    /// Adds a second-level heading.
    pub fn heading(&mut self, text: &str) -> &mut Self {
        let _ = write!(self.text, "## {text}\n\n");
        self
    }

    /// Adds a paragraph.
    pub fn paragraph(&mut self, text: &str) -> &mut Self {
        let _ = write!(self.text, "{}\n\n", text.trim_end());
        self
    }

    /// Adds a table; cells containing `|` are escaped.
    pub fn table<S: AsRef<str>>(&mut self, headers: &[&str], rows: &[Vec<S>]) -> &mut Self {
        let esc = |s: &str| s.replace('|', "\\|");
        let _ = writeln!(self.text, "| {} |", headers.iter().map(|h| esc(h)).collect::<Vec<_>>().join(" | "));
        let _ = writeln!(self.text, "|{}|", headers.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
        for row in rows {
            let cells: Vec<String> = row.iter().map(|c| esc(c.as_ref())).collect();
            let _ = writeln!(self.text, "| {} |", cells.join(" | "));
        }
        self.text.push('\n');
        self
    }

    /// Adds an image (a path relative to the report).
    pub fn image(&mut self, alt: &str, path: &str) -> &mut Self {
        let _ = write!(self.text, "![{alt}]({path})\n\n");
        self
    }

    /// Adds a fenced code block.
    pub fn code(&mut self, lang: &str, code: &str) -> &mut Self {
        let _ = write!(self.text, "```{lang}\n{}\n```\n\n", code.trim_end());
        self
    }

    /// The Markdown text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Writes the report to `path`, atomically.
    pub fn write(&self, path: &Path) -> Result<(), RunError> {
        write_atomic(path, self.text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tables() {
        let mut r = Report::new("T");
        r.paragraph("p").table(&["a", "b"], &[vec!["1", "x|y"]]);
        assert_eq!(r.as_str(), "# T\n\np\n\n| a | b |\n|---|---|\n| 1 | x\\|y |\n\n");
    }
}
