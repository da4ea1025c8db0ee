//! Training plumbing shared by every study: checkpoints that hold everything a run needs to continue
//! exactly where it stopped, the signals that ask a run to stop, devices, seeding and progress bars.
//!
//! * [`checkpoint`]: weights, optimizer state and a JSON header (step, epoch, batch, RNG seed, study
//!   state) in one safetensors file, written atomically; the newest valid one is found on resume.
//! * [`StopSignal`]: SIGTERM, SIGINT, SIGUSR1 and SIGHUP (what schedulers send before preemption)
//!   set a flag; the training loop checkpoints and exits with [`EXIT_INTERRUPTED`].
//! * [`seed_step`]: LibTorch's generator is reseeded from (seed, step) before every step, so random
//!   draws (dropout, augmentation) depend on the step alone and a resumed run repeats them exactly.
//! * [`autocast`] and [`Precision`]: bf16 mixed precision on the CPU and on CUDA through a small C++
//!   shim (`csrc/autocast.cpp`, compiled by `build.rs` with the `cc` crate against LibTorch's
//!   `ATen/autocast_mode.h`), because tch's own `tch::autocast` reaches CUDA's fp16 autocast only.
//!   [`to_device_pinned`] moves batches to a CUDA device through pinned memory with non-blocking copies.
//! * [`open_study`]: what a study does before its work (resolve the experiment file, check the
//!   configuration, open or resume the run directory, read back a finished run, set threads and
//!   device, write `meta.json`), for configurations that implement [`StudySettings`].
//! * [`catch_torch`]: a LibTorch error (a shape, dtype or device that does not fit) as a
//!   [`TorchError`] of one paragraph instead of a panic with C++'s trace.
//!
//! ```no_run
//! use vrl_train::{StopSignal, parse_device};
//!
//! let device = parse_device("auto").unwrap();
//! let stop = StopSignal::install().unwrap();
//! for step in 0..100u64 {
//!     vrl_train::seed_step(7, step);
//!     // ... train ...
//!     if stop.requested().is_some() { /* save a checkpoint, exit with EXIT_INTERRUPTED */ }
//! }
//! # let _ = device;
//! ```

pub mod checkpoint;
mod device;
mod precision;
mod progress;
mod signals;
mod study;
mod torch_error;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use device::{DeviceError, device_label, device_name, parse_device};
pub use precision::{
    Autocast, AutocastState, Precision, PrecisionError, autocast, autocast_state, parse_precision,
    to_device_pinned,
};
pub use progress::progress_bar;
pub use signals::{EXIT_INTERRUPTED, StopSignal, fault_injection};
pub use study::{
    Opened, Outcome, RunOptions, StudyRun, StudySettings, configure_threads, open_study, run_meta,
};
pub use torch_error::{TorchError, catch_torch, caught_torch_panic, strip_cpp_traces, summarize};

/// Seeds LibTorch's global generator for `step` of a run with `seed`. Every random draw inside the
/// step then depends on (seed, step) only.
pub fn seed_step(seed: u64, step: u64) {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    tch::manual_seed((z ^ (z >> 31)) as i64 & i64::MAX);
}
