//! Claims: which worker runs which cell, through files created atomically, so that workers in one
//! process, in several processes, or on several hosts sharing the run directory (Slurm array tasks)
//! never run one cell at the same time.
//!
//! A cell's claims live in `claims/<cell>/`. A claim is the file `<g>` (generation `g` = 0, 1, …),
//! created with `O_CREAT | O_EXCL` (`create_new`) and holding its owner as JSON (host, boot id, pid and
//! the process's start time). The newest generation is the cell's current claim:
//!
//! * it is **free** when `<g>.released` exists (its owner finished or gave up the cell);
//! * it is **live** while its owner runs: on the owner's own host (same host name and boot id), while
//!   the process exists with the same start time (a pid reused after a crash does not count); on
//!   another host, while the file's modification time — the owner's heartbeat, refreshed every
//!   `heartbeat_seconds` — is younger than the lease;
//! * otherwise it is **stale** (a killed worker's claim) and anyone may take it over.
//!
//! Claiming a free or stale cell means creating generation `g + 1`; `create_new` lets exactly one of
//! several contenders succeed. An owner that finds a newer generation than its own at a heartbeat has
//! lost the cell (it was judged stale, e.g. after a pause longer than the lease) and must stop without
//! recording anything. Nothing is ever deleted, so no contender can mistake an old generation for the
//! current one. Exclusive creation works on local file systems and on NFS v3 and later; the lease
//! assumes the hosts' clocks agree to well within `lease_seconds`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The identity of a process, as written into its claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Host name.
    pub host: String,
    /// Linux boot id (distinguishes reboots and containers of one name); empty elsewhere.
    pub boot_id: String,
    /// Process id.
    pub pid: u32,
    /// Process start time (clock ticks since boot, `/proc/<pid>/stat` field 22); 0 where unknown.
    pub start_time: u64,
    /// A free-form label (`worker-2`, a Slurm task id).
    pub label: String,
}

impl Owner {
    /// This process.
    pub fn this_process(label: &str) -> Owner {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
        let host = match read("/proc/sys/kernel/hostname") {
            h if !h.is_empty() => h,
            _ => std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
        };
        let pid = std::process::id();
        Owner {
            host,
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            pid,
            start_time: process_start_time(pid).unwrap_or(0),
            label: label.to_string(),
        }
    }

    fn same_host(&self, other: &Owner) -> bool {
        self.host == other.host && !self.boot_id.is_empty() && self.boot_id == other.boot_id
    }
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), if it exists.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces or parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Where a cell's claim stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimState {
    /// Never claimed, or released.
    Free,
    /// Held by a running owner.
    Live(Option<Owner>),
    /// Held by an owner that is gone (or silent for longer than the lease).
    Stale(Option<Owner>),
}

/// The claims of one grid, seen from one process.
#[derive(Debug, Clone)]
pub struct Claims {
    dir: PathBuf,
    owner: Owner,
    lease: Duration,
}

/// A claim held by this process.
#[derive(Debug)]
pub struct Claim {
    /// The cell.
    pub cell: String,
    /// The generation.
    pub generation: u64,
    path: PathBuf,
    cell_dir: PathBuf,
}

impl Claims {
    /// The claims under `dir` (created if needed), for `owner`, with a lease of `lease`.
    pub fn new(dir: &Path, owner: Owner, lease: Duration) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Claims { dir: dir.to_path_buf(), owner, lease })
    }

    /// The owner this process claims as.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    fn cell_dir(&self, cell: &str) -> PathBuf {
        self.dir.join(cell)
    }

    /// The newest generation of a cell's claims, if any.
    fn newest(cell_dir: &Path) -> std::io::Result<Option<u64>> {
        let entries = match std::fs::read_dir(cell_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut max = None;
        for e in entries {
            let name = e?.file_name();
            if let Some(g) = name.to_str().and_then(|n| n.parse::<u64>().ok()) {
                max = max.max(Some(g));
            }
        }
        Ok(max)
    }

    /// Where `cell`'s claim stands, and its newest generation.
    pub fn state(&self, cell: &str) -> std::io::Result<(ClaimState, Option<u64>)> {
        let dir = self.cell_dir(cell);
        let Some(g) = Self::newest(&dir)? else { return Ok((ClaimState::Free, None)) };
        if dir.join(format!("{g}.released")).exists() {
            return Ok((ClaimState::Free, Some(g)));
        }
        let path = dir.join(g.to_string());
        let owner: Option<Owner> =
            std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok());
        // On our own host the process table is the truth; elsewhere (or for a claim whose owner is not
        // written yet) the heartbeat is.
        if let Some(o) = owner.as_ref().filter(|o| o.same_host(&self.owner)) {
            let alive = process_start_time(o.pid).is_some_and(|t| o.start_time == 0 || t == o.start_time);
            let state =
                if alive { ClaimState::Live(owner.clone()) } else { ClaimState::Stale(owner.clone()) };
            return Ok((state, Some(g)));
        }
        let age = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        Ok((if age > self.lease { ClaimState::Stale(owner) } else { ClaimState::Live(owner) }, Some(g)))
    }

    /// Claims `cell` if it is free or stale. `None`: it is held by a live owner, or another process
    /// claimed it first.
    pub fn try_claim(&self, cell: &str) -> std::io::Result<Option<Claim>> {
        let (state, newest) = self.state(cell)?;
        if let ClaimState::Live(_) = state {
            return Ok(None);
        }
        if let ClaimState::Stale(owner) = &state {
            tracing::info!(
                "cell {cell}: taking over a claim left by {}",
                owner
                    .as_ref()
                    .map_or("an unknown owner".to_string(), |o| format!("pid {} on {}", o.pid, o.host))
            );
        }
        let generation = newest.map_or(0, |g| g + 1);
        let cell_dir = self.cell_dir(cell);
        std::fs::create_dir_all(&cell_dir)?;
        let path = cell_dir.join(generation.to_string());
        let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(e),
        };
        let text = serde_json::to_string(&self.owner).map_err(std::io::Error::other)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        Ok(Some(Claim { cell: cell.to_string(), generation, path, cell_dir }))
    }
}

impl Claim {
    /// Refreshes the heartbeat. `Ok(false)`: the claim was lost to a newer generation.
    pub fn heartbeat(&self) -> std::io::Result<bool> {
        if self.lost() {
            return Ok(false);
        }
        std::fs::OpenOptions::new().write(true).open(&self.path)?.set_modified(SystemTime::now())?;
        Ok(true)
    }

    /// Whether a newer generation exists (another process took the cell over).
    pub fn lost(&self) -> bool {
        self.cell_dir.join((self.generation + 1).to_string()).exists()
    }

    /// Gives the cell up (after finishing it, or to let another worker run it).
    pub fn release(self) -> std::io::Result<()> {
        if self.lost() {
            return Ok(());
        }
        vrl_cache::write_atomic(&self.cell_dir.join(format!("{}.released", self.generation)), b"")
            .map_err(std::io::Error::other)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn owner(label: &str) -> Owner {
        Owner::this_process(label)
    }

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        let me = owner("t");
        assert_eq!(process_start_time(me.pid), Some(me.start_time));
        // A child that has exited and been waited for has no /proc entry.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(process_start_time(pid), None);
    }

    #[test]
    fn one_claim_per_cell_then_release_and_reclaim() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::new(dir.path(), owner("a"), Duration::from_secs(60)).unwrap();
        let c = claims.try_claim("x").unwrap().unwrap();
        assert_eq!(c.generation, 0);
        // Held by a live process (this one): nobody gets it, this process included.
        assert!(claims.try_claim("x").unwrap().is_none());
        assert!(matches!(claims.state("x").unwrap().0, ClaimState::Live(Some(_))));
        assert!(c.heartbeat().unwrap());
        c.release().unwrap();
        assert_eq!(claims.state("x").unwrap(), (ClaimState::Free, Some(0)));
        let c2 = claims.try_claim("x").unwrap().unwrap();
        assert_eq!(c2.generation, 1);
    }

    #[test]
    fn a_dead_owner_on_this_host_is_taken_over_at_once_and_the_loser_notices() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::new(dir.path(), owner("a"), Duration::from_secs(3600)).unwrap();
        let mine = claims.try_claim("x").unwrap().unwrap();
        // Pretend the claim was written by a process that has died: same host, a pid that is gone.
        let mut dead = owner("dead");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        dead.pid = child.id();
        child.wait().unwrap();
        std::fs::write(dir.path().join("x/0"), serde_json::to_string(&dead).unwrap()).unwrap();
        assert!(matches!(claims.state("x").unwrap().0, ClaimState::Stale(Some(_))));
        let taken = claims.try_claim("x").unwrap().unwrap();
        assert_eq!(taken.generation, 1);
        // The old generation's holder finds out at its next heartbeat, and its release is a no-op.
        assert!(!mine.heartbeat().unwrap());
        assert!(mine.lost());
        mine.release().unwrap();
        assert!(matches!(claims.state("x").unwrap().0, ClaimState::Live(_)));
    }

    #[test]
    fn another_hosts_claim_is_live_until_its_lease_runs_out() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::new(dir.path(), owner("a"), Duration::from_secs(100)).unwrap();
        let mut other = owner("remote");
        other.host = "elsewhere".into();
        std::fs::create_dir_all(dir.path().join("x")).unwrap();
        let path = dir.path().join("x/0");
        std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
        assert!(claims.try_claim("x").unwrap().is_none(), "a fresh heartbeat is live");
        let old = SystemTime::now() - Duration::from_secs(101);
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_modified(old).unwrap();
        assert!(
            matches!(claims.state("x").unwrap().0, ClaimState::Stale(Some(ref o)) if o.host == "elsewhere")
        );
        assert_eq!(claims.try_claim("x").unwrap().unwrap().generation, 1);
        // A claim file whose owner is not written yet counts by its age alone.
        std::fs::create_dir_all(dir.path().join("y")).unwrap();
        std::fs::write(dir.path().join("y/0"), b"").unwrap();
        assert!(matches!(claims.state("y").unwrap().0, ClaimState::Live(None)));
    }

    #[test]
    fn concurrent_contenders_get_each_cell_once() {
        let dir = tempfile::tempdir().unwrap();
        let cells: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
        let won = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..8 {
                let (cells, won, dir) = (&cells, &won, dir.path());
                s.spawn(move || {
                    let claims = Claims::new(dir, owner(&format!("t{t}")), Duration::from_secs(60)).unwrap();
                    for c in cells {
                        if let Some(claim) = claims.try_claim(c).unwrap() {
                            won.lock().unwrap().push(claim.cell.clone());
                        }
                    }
                });
            }
        });
        let mut won = won.into_inner().unwrap();
        won.sort();
        let mut expect = cells.clone();
        expect.sort();
        assert_eq!(won, expect, "every cell claimed exactly once");
    }
}
