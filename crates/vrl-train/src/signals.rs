//! Stop requests from the scheduler or the user.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

/// Exit status of a run that stopped on request after saving a checkpoint (EX_TEMPFAIL: try again,
/// the same command resumes it).
pub const EXIT_INTERRUPTED: i32 = 75;

/// Set when SIGTERM, SIGINT, SIGUSR1 or SIGHUP arrives.
#[derive(Debug, Clone)]
pub struct StopSignal {
    received: Arc<AtomicUsize>,
}

impl StopSignal {
    /// Installs the handlers. A second SIGINT while stopping terminates the process at once
    /// (exit status 130), for a user who presses Ctrl-C twice.
    pub fn install() -> std::io::Result<Self> {
        let received = Arc::new(AtomicUsize::new(0));
        let interrupted = Arc::new(AtomicBool::new(false));
        // Order matters: the conditional shutdown sees the flag before this SIGINT sets it.
        signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&interrupted))?;
        signal_hook::flag::register(SIGINT, interrupted)?;
        for sig in [SIGTERM, SIGINT, SIGUSR1, SIGHUP] {
            signal_hook::flag::register_usize(sig, Arc::clone(&received), sig as usize)?;
        }
        Ok(StopSignal { received })
    }

    /// The signal that asked to stop, if any (`SIGTERM`, …).
    pub fn requested(&self) -> Option<&'static str> {
        match self.received.load(Ordering::Relaxed) as i32 {
            0 => None,
            SIGTERM => Some("SIGTERM"),
            SIGINT => Some("SIGINT"),
            SIGUSR1 => Some("SIGUSR1"),
            SIGHUP => Some("SIGHUP"),
            _ => Some("signal"),
        }
    }
}

/// Fault injection for tests of resume: `VRL_FAULT=kill@N` sends SIGKILL to this process after step
/// N, `VRL_FAULT=term@N` sends SIGTERM (which takes the normal stop path). Returns nothing otherwise.
pub fn fault_injection(step: u64) {
    let Ok(spec) = std::env::var("VRL_FAULT") else { return };
    let Some((what, at)) = spec.split_once('@') else { return };
    if at.parse::<u64>().ok() != Some(step) {
        return;
    }
    let sig = match what {
        "kill" => signal_hook::consts::SIGKILL,
        "term" => SIGTERM,
        _ => return,
    };
    tracing::warn!("VRL_FAULT: sending {what} to myself after step {step}");
    let _ = signal_hook::low_level::raise(sig);
}
