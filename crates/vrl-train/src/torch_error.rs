//! LibTorch errors as user errors: tch's infallible operations panic when LibTorch throws (a shape,
//! dtype or device that does not fit), with C++'s trace in the message. [`catch_torch`] turns such a
//! panic into a [`TorchError`] of one paragraph; a panic hook that asks [`caught_torch_panic`] prints
//! nothing for it, so a user sees one message and no trace (`RUST_BACKTRACE=1` shows it again).
//!
//! ```
//! use tch::{Device, Kind, Tensor};
//!
//! let a = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
//! let b = Tensor::zeros([4, 5], (Kind::Float, Device::Cpu));
//! let err = vrl_train::catch_torch(|| a.matmul(&b)).unwrap_err();
//! assert!(err.to_string().contains("2x3 and 4x5"), "{err}");
//! assert!(!err.to_string().contains("Exception raised from"));
//! ```

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, PanicHookInfo};

/// What LibTorch said when it refused an operation, without its C++ trace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TorchError {
    /// LibTorch's message, one paragraph.
    pub message: String,
}

impl TorchError {
    /// Whether LibTorch ran out of memory (worth retrying elsewhere, unlike a bad shape).
    pub fn is_out_of_memory(&self) -> bool {
        self.message.to_ascii_lowercase().contains("out of memory")
    }
}

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f`; a panic raised by a LibTorch error inside it becomes a [`TorchError`]. Any other panic
/// (a bug) goes on unwinding, reported by the panic hook as usual.
///
/// # Errors
/// The LibTorch error, summarised by [`summarize`].
pub fn catch_torch<T>(f: impl FnOnce() -> T) -> Result<T, TorchError> {
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get() - 1));
    result.map_err(|payload| match torch_message(payload_text(payload.as_ref())) {
        Some(message) => TorchError { message },
        None => std::panic::resume_unwind(payload),
    })
}

/// Whether this panic is a LibTorch error on a thread inside [`catch_torch`], which reports it: a
/// panic hook stays silent about it (or, with `RUST_BACKTRACE` set, shows LibTorch's trace without
/// calling it a bug).
pub fn caught_torch_panic(info: &PanicHookInfo<'_>) -> bool {
    DEPTH.with(|d| d.get() > 0) && torch_message(payload_text(info.payload())).is_some()
}

fn payload_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("")
}

/// LibTorch's message in a panic raised by tch (`…: Torch("message\nException raised from …")`),
/// or `None` when the panic did not come from LibTorch.
fn torch_message(panic: &str) -> Option<String> {
    let start = panic.find("Torch(\"")? + "Torch(\"".len();
    let quoted = &panic[start..];
    let end = quoted.rfind("\")").unwrap_or(quoted.len());
    Some(summarize(&unescape(&quoted[..end])))
}

/// Undoes the escapes of Rust's `Debug` for strings that LibTorch messages use.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A LibTorch message as one paragraph: C++'s trace (from `Exception raised from`) and frame lines
/// dropped, lines joined by spaces.
pub fn summarize(message: &str) -> String {
    let head = message.split("Exception raised from").next().unwrap_or(message);
    let lines: Vec<&str> =
        head.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("frame #")).collect();
    lines.join(" ")
}

/// `text` (an error chain as printed) with each LibTorch C++ trace cut out: what follows
/// `Exception raised from` up to the next blank line or the end.
pub fn strip_cpp_traces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("Exception raised from") {
        out.push_str(rest[..i].trim_end());
        rest = &rest[i..];
        rest = rest.find("\n\n").map_or("", |j| &rest[j..]);
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn a_shape_error_is_one_paragraph() {
        let x = Tensor::zeros([2, 3, 8, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::zeros([4, 1, 3, 3], (Kind::Float, Device::Cpu));
        let e = catch_torch(|| x.conv2d(&w, None::<Tensor>, [1], [0], [1], 1)).unwrap_err();
        assert!(e.message.contains("channels"), "{e}");
        assert!(!e.message.contains('\n') && !e.message.contains("frame #"), "{e}");
        assert!(!e.is_out_of_memory());
    }

    #[test]
    #[should_panic(expected = "a bug")]
    fn other_panics_go_on_unwinding() {
        let _ = catch_torch(|| panic!("a bug"));
    }

    #[test]
    fn messages_are_cut_before_the_trace() {
        let panic = "called `Result::unwrap()` on an `Err` value: Torch(\"Given groups=1, weight \\\"w\\\"\\n\
                     Exception raised from check at Conv.cpp:1\\nframe #0: f()\\n\")";
        assert_eq!(torch_message(panic).unwrap(), "Given groups=1, weight \"w\"");
        assert_eq!(torch_message("index out of bounds"), None);
        let chain = "cannot load w.safetensors: `fc.weight`: bad\nException raised from x\nframe #1: y";
        assert_eq!(strip_cpp_traces(chain), "cannot load w.safetensors: `fc.weight`: bad");
        assert_eq!(strip_cpp_traces("plain"), "plain");
    }
}
