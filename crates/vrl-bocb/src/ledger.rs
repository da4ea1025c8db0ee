//! `cells.jsonl`: one JSON line per finished cell, appended by whichever worker finished it.
//!
//! A line is written with one `write` call on a file opened with `O_APPEND`, so lines of concurrent
//! workers on one host never interleave. A worker killed in the middle of a write can leave a torn last
//! line; the next append starts on a new line (a line break is written first when the file does not end
//! with one), and readers skip lines that are not complete JSON records, with a warning. Each line also
//! carries a checksum of its record, so a line damaged in any other way (e.g. by concurrent appends over
//! NFS, where `O_APPEND` is not atomic) is detected and skipped too. A cell's `result.json` in its own
//! directory is written atomically before its line; the grid's final table is built from both, so a
//! lost line is never a lost result.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How a cell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Trained to the end.
    Ok,
    /// The loss became NaN or infinite, or exceeded the divergence factor: a failed cell (a result).
    Diverged,
    /// The cell could not be run (an error: bad arguments, out of memory, …).
    Error,
}

/// The figures of one finished cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    /// The cell id.
    pub cell: String,
    /// How it ended.
    pub status: Status,
    /// Top-1 accuracy on the test set after the last epoch (a fraction); `None` unless `Ok`.
    pub final_top1: Option<f64>,
    /// Best top-1 accuracy over the epochs' evaluations (a fraction).
    pub best_top1: Option<f64>,
    /// The step at which the cell failed (diverged or errored), if it did.
    pub failed_step: Option<u64>,
    /// The error or divergence message.
    pub message: Option<String>,
    /// Training steps run.
    pub steps: u64,
}

impl CellRecord {
    /// Whether the cell failed (diverged or errored).
    pub fn failed(&self) -> bool {
        self.status != Status::Ok
    }
}

/// FNV-1a 64 of the record's canonical JSON, as 16 hex digits.
fn checksum(record: &CellRecord) -> String {
    let text = serde_json::to_string(record).unwrap_or_default();
    let h = text
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{h:016x}")
}

#[derive(Serialize, Deserialize)]
struct Line {
    #[serde(flatten)]
    record: CellRecord,
    check: String,
}

/// Appends a record to `path` as one line.
pub fn append(path: &Path, record: &CellRecord) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(path)?;
    let mut text = serde_json::to_string(&Line { record: record.clone(), check: checksum(record) })
        .map_err(std::io::Error::other)?;
    text.push('\n');
    // A torn last line (a writer killed mid-write) must not swallow this one.
    let len = file.metadata()?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            text.insert(0, '\n');
        }
    }
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// What [`read`] found.
#[derive(Debug, Default)]
pub struct Ledger {
    /// The newest record of each cell.
    pub records: BTreeMap<String, CellRecord>,
    /// Lines skipped as torn or damaged (1-based line numbers).
    pub skipped: Vec<usize>,
}

/// Reads `path` (a missing file is an empty ledger). Torn or damaged lines are skipped and reported;
/// for a cell with several lines (a cell re-run after an error) the last one wins.
pub fn read(path: &Path) -> std::io::Result<Ledger> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ledger::default()),
        Err(e) => return Err(e),
    };
    let mut ledger = Ledger::default();
    for (i, line) in text.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(line) {
            Ok(l) if l.check == checksum(&l.record) => {
                ledger.records.insert(l.record.cell.clone(), l.record);
            }
            _ => ledger.skipped.push(i + 1),
        }
    }
    if !ledger.skipped.is_empty() {
        tracing::warn!("{}: skipped torn or damaged line(s) {:?}", path.display(), ledger.skipped);
    }
    Ok(ledger)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(cell: &str, status: Status, acc: Option<f64>) -> CellRecord {
        CellRecord {
            cell: cell.into(),
            status,
            final_top1: acc,
            best_top1: acc,
            failed_step: (status != Status::Ok).then_some(7),
            message: None,
            steps: 10,
        }
    }

    #[test]
    fn torn_and_damaged_lines_are_skipped_and_later_appends_survive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cells.jsonl");
        append(&p, &rec("a", Status::Ok, Some(0.5))).unwrap();
        // A writer killed mid-line: half a record, no line break.
        let full = std::fs::read_to_string(&p).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&full.as_bytes()[..full.len() / 2]).unwrap();
        drop(f);
        append(&p, &rec("b", Status::Diverged, None)).unwrap();
        // A line that parses but whose figures were altered.
        let altered = full.replace("0.5", "0.9");
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(altered.as_bytes()).unwrap();
        drop(f);
        append(&p, &rec("c", Status::Ok, Some(0.25))).unwrap();
        let l = read(&p).unwrap();
        assert_eq!(l.records.len(), 3, "{:?}", l.records.keys());
        assert_eq!(l.records["a"].final_top1, Some(0.5));
        assert_eq!(l.records["b"].status, Status::Diverged);
        assert_eq!(l.records["c"].final_top1, Some(0.25));
        assert_eq!(l.skipped, vec![2, 4]);
    }

    #[test]
    fn the_last_record_of_a_cell_wins_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cells.jsonl");
        assert!(read(&p).unwrap().records.is_empty());
        append(&p, &rec("a", Status::Error, None)).unwrap();
        append(&p, &rec("a", Status::Ok, Some(0.75))).unwrap();
        assert_eq!(read(&p).unwrap().records["a"].status, Status::Ok);
    }
}
