//! Mixed precision: bf16 autocast on CPU and CUDA, and pinned-memory host-to-device copies.
//!
//! tch 0.24's `tch::autocast` only toggles CUDA autocast with its default dtype (fp16) and cannot
//! reach CPU autocast at all. The shim `csrc/autocast.cpp` (built by this crate's `build.rs`) calls
//! LibTorch's `at::autocast::{set_autocast_enabled, set_autocast_dtype, …}` for a device type and a
//! dtype, and returns C++ exceptions as messages.
//!
//! Autocast state is thread-local in LibTorch: an [`Autocast`] guard affects the thread that made it
//! only, so it is neither `Send` nor `Sync`.
//!
//! This is the only module of the crate with `unsafe` code: the calls into the shim, whose functions
//! take plain ints and out-pointers and never let a C++ exception escape.

#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int};
use std::marker::PhantomData;

use tch::{Device, Kind, Tensor};

unsafe extern "C" {
    fn vrl_autocast_free_error(message: *mut c_char);
    fn vrl_autocast_get(device: c_int, enabled: *mut c_int, dtype: *mut c_int) -> *mut c_char;
    fn vrl_autocast_set(device: c_int, enabled: c_int, dtype: c_int) -> *mut c_char;
    fn vrl_autocast_increment_nesting(depth: *mut c_int) -> *mut c_char;
    fn vrl_autocast_decrement_nesting(depth: *mut c_int) -> *mut c_char;
}

/// The precision of the forward pass and the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in float32; autocast off.
    #[default]
    Fp32,
    /// bf16 autocast: matmuls, linear layers and convolutions in bfloat16, reductions, norms and
    /// losses in float32 (LibTorch's autocast op lists); weights and optimizer state stay float32.
    Bf16,
}

impl Precision {
    /// The name used in configs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether this is fp32, for `#[serde(skip_serializing_if = "Precision::is_fp32")]`: configs
    /// written before the setting existed keep their identity (a run's saved `config.toml`).
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }

    /// The autocast dtype, `None` for fp32.
    pub fn autocast_kind(self) -> Option<Kind> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(Kind::BFloat16),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Precision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Precision {
    type Err = PrecisionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "float32" | "32" => Ok(Precision::Fp32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "fp16" | "float16" | "half" | "16" => Err(PrecisionError::Fp16Refused { name: s.to_string() }),
            _ => Err(PrecisionError::Unknown { name: s.to_string() }),
        }
    }
}

/// Parses a precision name (`fp32` or `bf16`).
pub fn parse_precision(name: &str) -> Result<Precision, PrecisionError> {
    name.parse()
}

/// A precision that is not understood or cannot be used, or a failure inside LibTorch's autocast.
#[derive(Debug, thiserror::Error)]
pub enum PrecisionError {
    /// Not a precision name.
    #[error("precision `{name}`: expected `fp32` or `bf16`")]
    Unknown {
        /// The name given.
        name: String,
    },
    /// fp16 needs a gradient scaler, which vrl does not have.
    #[error(
        "precision `{name}`: fp16 is not supported: fp16 gradients underflow without a gradient scaler, \
         which vrl does not implement; use `bf16` (same range as fp32) or `fp32`"
    )]
    Fp16Refused {
        /// The name given.
        name: String,
    },
    /// Autocast exists for CPU and CUDA only.
    #[error("autocast is not available for device {device:?}: expected the CPU or a CUDA device")]
    Device {
        /// The device.
        device: Device,
    },
    /// LibTorch threw.
    #[error("LibTorch autocast: {0}")]
    Torch(String),
}

fn device_code(device: Device) -> Result<c_int, PrecisionError> {
    match device {
        Device::Cpu => Ok(0),
        Device::Cuda(_) => Ok(1),
        _ => Err(PrecisionError::Device { device }),
    }
}

fn kind_code(kind: Kind) -> c_int {
    match kind {
        Kind::Float => 0,
        Kind::BFloat16 => 1,
        Kind::Half => 2,
        _ => -1,
    }
}

fn code_kind(code: c_int) -> Option<Kind> {
    match code {
        0 => Some(Kind::Float),
        1 => Some(Kind::BFloat16),
        2 => Some(Kind::Half),
        _ => None,
    }
}

/// Turns the shim's return value into a result, freeing the message.
fn check(message: *mut c_char) -> Result<(), PrecisionError> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string from `malloc` in the shim, freed once here.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    unsafe { vrl_autocast_free_error(message) };
    Err(PrecisionError::Torch(text))
}

/// Autocast's state for a device type on this thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutocastState {
    /// Whether autocast is on.
    pub enabled: bool,
    /// Its dtype (`None`: a dtype other than float32, bfloat16 and float16).
    pub kind: Option<Kind>,
}

/// Autocast's state for `device`'s type on this thread.
pub fn autocast_state(device: Device) -> Result<AutocastState, PrecisionError> {
    let code = device_code(device)?;
    let (mut enabled, mut dtype) = (0, -1);
    // SAFETY: the shim writes the two ints and catches every C++ exception.
    check(unsafe { vrl_autocast_get(code, &mut enabled, &mut dtype) })?;
    Ok(AutocastState { enabled: enabled != 0, kind: code_kind(dtype) })
}

fn set_state(code: c_int, enabled: bool, kind: Option<Kind>) -> Result<(), PrecisionError> {
    let dtype = kind.map_or(-1, kind_code);
    // SAFETY: the shim validates the codes and catches every C++ exception.
    check(unsafe { vrl_autocast_set(code, enabled as c_int, dtype) })
}

/// While alive, runs this thread's operations on `device`'s type at a [`Precision`]; on drop restores
/// the state it found. Made by [`autocast`].
#[derive(Debug)]
#[must_use = "autocast is undone when the guard is dropped"]
pub struct Autocast {
    /// The device code and the state to restore; `None` when the guard changed nothing.
    saved: Option<(c_int, AutocastState)>,
    /// Autocast state is thread-local: the guard must be dropped on the thread that made it.
    _not_send: PhantomData<*const ()>,
}

/// Sets autocast for `device`'s type (CPU or CUDA) on this thread to `precision` until the returned
/// guard is dropped, which restores the previous state (enabled flag and dtype), and clears
/// LibTorch's cache of cast weights when the outermost autocast region ends.
///
/// * `Bf16`: autocast on with dtype bfloat16.
/// * `Fp32`: nothing to do when autocast is off (the usual case); inside an enabled region (an outer
///   bf16 guard) it turns autocast off until dropped, like `torch.autocast(..., enabled=False)`.
///
/// Wrap the forward pass and the loss, not `backward` or the optimizer step; compute losses on
/// float32 logits (`logits.to_kind(Kind::Float)`).
///
/// ```
/// use tch::{Device, Kind, Tensor};
/// use vrl_train::{Precision, autocast};
///
/// let (x, w) = (Tensor::ones([2, 3], (Kind::Float, Device::Cpu)), Tensor::ones([4, 3], (Kind::Float, Device::Cpu)));
/// {
///     let _amp = autocast(Device::Cpu, Precision::Bf16).unwrap();
///     assert_eq!(x.linear::<Tensor>(&w, None).kind(), Kind::BFloat16);
/// }
/// assert_eq!(x.linear::<Tensor>(&w, None).kind(), Kind::Float);
/// ```
pub fn autocast(device: Device, precision: Precision) -> Result<Autocast, PrecisionError> {
    let code = device_code(device)?;
    let before = autocast_state(device)?;
    let (enabled, kind) = match precision.autocast_kind() {
        Some(kind) => (true, Some(kind)),
        None if !before.enabled => return Ok(Autocast { saved: None, _not_send: PhantomData }),
        None => (false, None),
    };
    let mut depth = 0;
    // SAFETY: the shim writes the int and catches every C++ exception.
    check(unsafe { vrl_autocast_increment_nesting(&mut depth) })?;
    let guard = Autocast { saved: Some((code, before)), _not_send: PhantomData };
    // On failure the guard's drop restores `before` and undoes the nesting.
    set_state(code, enabled, kind)?;
    Ok(guard)
}

impl Drop for Autocast {
    fn drop(&mut self) {
        let Some((code, before)) = self.saved.take() else { return };
        if let Err(e) = set_state(code, before.enabled, before.kind) {
            tracing::error!("restoring the autocast state: {e}");
        }
        let mut depth = 0;
        // SAFETY: as in `autocast`.
        if let Err(e) = check(unsafe { vrl_autocast_decrement_nesting(&mut depth) }) {
            tracing::error!("leaving an autocast region: {e}");
        }
    }
}

/// Moves a batch to `device` for training. To a CUDA device, a CPU tensor is first copied into pinned
/// (page-locked) memory and then sent with a non-blocking copy, so the transfer overlaps with work
/// already queued on the GPU; anything else is `Tensor::to_device` (on the CPU a shallow copy, no data
/// moved). Values and dtype are unchanged.
pub fn to_device_pinned(batch: &Tensor, device: Device) -> Result<Tensor, tch::TchError> {
    match device {
        Device::Cuda(_) if batch.device() == Device::Cpu => {
            let pinned = if batch.f_is_pinned(device)? {
                batch.shallow_clone()
            } else {
                batch.f_pin_memory(device)?
            };
            pinned.f_to_device_(device, batch.kind(), true, false)
        }
        _ => batch.f_to_device(device),
    }
}
