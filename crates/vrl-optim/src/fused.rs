//! Fused updates: one pass over each parameter's memory instead of a chain of tensor operations.
//!
//! An optimizer written as tensor operations (`m.lerp_(g, 1 − β₁)`, `v.mul_(β₂)`, `v.addcmul_(g, g)`,
//! `p.addcdiv_(m, v.sqrt() + ε)`, …) reads and writes every state tensor several times per step and
//! allocates temporaries. On the CPU, for contiguous float32 or float64 tensors, this module instead
//! hands the optimizer the parameter's, gradient's and state's memory as slices, so that the whole
//! update of an element is one expression in one loop ([`for_each`]): each buffer is read once and
//! written at most once. Updates that need a whole-tensor quantity first (norms for LAMB, LARS and
//! NovoGrad, the cosine tests of AdamP and SGDP, AdaFactor's row and column means) are a reduction
//! pass ([`map_chunks`], [`map_rows`]) followed by an update pass. Loops are split into chunks of
//! [`CHUNK`] elements run on rayon's pool; every kernel is generic over [`Real`] (`f32`, `f64`) and
//! written as plain indexed loops over equally long slices, which the compiler vectorises.
//!
//! Reductions are deterministic: a chunk's partial result does not depend on the number of threads,
//! and the partials are combined in chunk order, so the same inputs give the same bits.
//!
//! Everywhere else — CUDA tensors, other dtypes, non-contiguous tensors, or `fused = false` in the
//! hyper-parameters — the optimizers keep their tensor-op path; [`eligible`] decides.
//!
//! # Safety
//!
//! This is the only module of the crate with `unsafe` code: turning a tensor's data pointer into a
//! slice. [`Raw::new`] checks, for every tensor it is given, that it is defined, dense, on the CPU,
//! contiguous, of the element type `T`, and of the same number of elements as the others, and that no
//! tensor that is written overlaps in memory with any other tensor of the call. The remaining
//! invariants are the callers' (the optimizers'), and hold because an optimizer's step takes `&mut
//! self`:
//!
//! * no other thread reads, writes, resizes or frees these tensors while a kernel runs (the tensors
//!   are borrowed for the whole call, so their storage stays alive);
//! * kernels run inside `tch::no_grad_guard()`: the writes bypass autograd, so they are only
//!   correct where an in-place tensor operation would be too. To keep autograd's check for tensors
//!   modified in place working, the version counter of every written tensor that requires grad is
//!   bumped after the write (with an in-place operation on an empty view of it).
//!
//! Chunks handed to concurrent closures are disjoint ranges of the same buffers, so no two live
//! slices alias.

#![allow(unsafe_code)]

use std::ops::{Add, Div, Mul, Neg, Range, Sub};

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::OptimError;

/// Elements per chunk (64 KiB of float32 per buffer). Fixed, so that reductions do not depend on
/// the number of threads.
pub(crate) const CHUNK: usize = 1 << 14;

/// Tensors up to this many elements are updated on the calling thread.
const SEQUENTIAL_MAX: usize = 1 << 15;

/// Independent partial sums per reduction loop (lets the compiler vectorise sums of floats, whose
/// order it may not change itself).
pub(crate) const LANES: usize = 8;

/// The element type of a fused update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dtype {
    /// `f32`.
    F32,
    /// `f64`.
    F64,
}

/// Runs `$body` with the type alias `$T` bound to `f32` or `f64` according to `$dtype`.
macro_rules! with_real {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::fused::Dtype::F32 => {
                type $T = f32;
                $body
            }
            $crate::fused::Dtype::F64 => {
                type $T = f64;
                $body
            }
        }
    };
}
pub(crate) use with_real;

/// `f32` or `f64`, with the operations the kernels need.
pub(crate) trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + std::fmt::Debug
    + 'static
{
    /// The tensor kind.
    const KIND: Kind;
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Rounds a number to this type (as LibTorch converts a scalar to the tensor's dtype).
    fn of(x: f64) -> Self;
    /// Widens to `f64`.
    fn f64(self) -> f64;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Whether any element is NaN or infinite, by the exponent bits (an integer OR-reduction that
    /// vectorises with plain SSE2).
    fn any_non_finite(xs: &[Self]) -> bool;
}

impl Real for f32 {
    const KIND: Kind = Kind::Float;
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::abs(self)
    }
    fn any_non_finite(xs: &[Self]) -> bool {
        // Exponent all ones ⇔ adding one unit to the exponent field carries into the sign bit.
        let (exponent, unit) = (0x7f80_0000u32, 0x0080_0000u32);
        xs.iter().fold(0u32, |acc, x| acc | ((x.to_bits() & exponent) + unit)) & 0x8000_0000 != 0
    }
}

impl Real for f64 {
    const KIND: Kind = Kind::Double;
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f64::abs(self)
    }
    fn any_non_finite(xs: &[Self]) -> bool {
        let (exponent, unit) = (0x7ff0_0000_0000_0000u64, 0x0010_0000_0000_0000u64);
        xs.iter().fold(0u64, |acc, x| acc | ((x.to_bits() & exponent) + unit)) & (1 << 63) != 0
    }
}

/// The larger of two numbers (`torch.maximum` on numbers that are not NaN; a plain comparison, which
/// vectorises to one instruction).
#[inline(always)]
pub(crate) fn max<T: Real>(a: T, b: T) -> T {
    if a > b { a } else { b }
}

/// The smaller of two numbers (`torch.minimum` on numbers that are not NaN).
#[inline(always)]
pub(crate) fn min<T: Real>(a: T, b: T) -> T {
    if a < b { a } else { b }
}

/// `torch.sign`: −1, 0 or 1 (NaN stays NaN).
#[inline(always)]
pub(crate) fn sign<T: Real>(x: T) -> T {
    if x > T::ZERO {
        T::ONE
    } else if x < T::ZERO {
        -T::ONE
    } else {
        x
    }
}

/// `torch.lerp(a, b, w)` as LibTorch computes it: `a + w (b − a)` for |w| < ½, `b − (b − a)(1 − w)`
/// otherwise (exact at both ends). Build it once per loop with [`Lerp::new`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lerp<T> {
    w: T,
    one_minus_w: T,
    small: bool,
}

impl<T: Real> Lerp<T> {
    /// The interpolation weight `w` (converted to `T` first, as LibTorch does).
    pub(crate) fn new(w: f64) -> Self {
        let w = T::of(w);
        Lerp { w, one_minus_w: T::ONE - w, small: w.abs() < T::of(0.5) }
    }

    /// `lerp(a, b, w)`.
    #[inline(always)]
    pub(crate) fn at(&self, a: T, b: T) -> T {
        if self.small { a + self.w * (b - a) } else { b - (b - a) * self.one_minus_w }
    }
}

/// The element type if the fused path can update these tensors: `enabled`, and all of them defined,
/// dense, on the CPU, contiguous, float32 or float64 (all the same), of the same number of elements.
/// `None` means: use the tensor operations.
pub(crate) fn eligible(enabled: bool, tensors: &[&Tensor]) -> Option<Dtype> {
    if !enabled {
        return None;
    }
    let first = tensors.first()?;
    if !first.defined() {
        return None;
    }
    let kind = first.kind();
    let dtype = match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        _ => return None,
    };
    let n = first.numel();
    tensors
        .iter()
        .all(|t| usable(t) && t.kind() == kind && t.numel() == n)
        .then_some(dtype)
        .filter(|_| disjoint(tensors))
}

/// Whether every tensor is defined, dense, on the CPU, of a fused dtype and contiguous (shapes may
/// differ; for [`with_slices`]).
pub(crate) fn eligible_any(enabled: bool, tensors: &[&Tensor]) -> Option<Dtype> {
    if !enabled {
        return None;
    }
    let first = tensors.first()?;
    if !first.defined() {
        return None;
    }
    let kind = first.kind();
    let dtype = match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        _ => return None,
    };
    tensors.iter().all(|t| usable(t) && t.kind() == kind).then_some(dtype).filter(|_| disjoint(tensors))
}

fn usable(t: &Tensor) -> bool {
    t.defined() && !t.is_sparse() && !t.is_mkldnn() && t.device() == Device::Cpu && t.is_contiguous()
}

/// The bytes a tensor's elements occupy, as an address range.
fn span(t: &Tensor) -> Range<usize> {
    let start = t.data_ptr() as usize;
    start..start + t.numel() * t.kind().elt_size_in_bytes()
}

/// Whether no two of the tensors share memory (empty tensors share none).
fn disjoint(tensors: &[&Tensor]) -> bool {
    let spans: Vec<Range<usize>> = tensors.iter().map(|t| span(t)).collect();
    spans.iter().enumerate().all(|(i, a)| {
        spans[i + 1..].iter().all(|b| a.is_empty() || b.is_empty() || a.end <= b.start || b.end <= a.start)
    })
}

/// Raw pointers to `W` written and `R` read buffers of `n` elements of `T`, checked by [`Raw::new`].
struct Raw<T, const W: usize, const R: usize> {
    w: [*mut T; W],
    r: [*const T; R],
    n: usize,
}

// SAFETY: the pointers are only dereferenced by `Raw::slices`, on ranges that callers keep disjoint
// between threads (see the module docs); `T` is `f32` or `f64`.
unsafe impl<T: Real, const W: usize, const R: usize> Send for Raw<T, W, R> {}
// SAFETY: as above.
unsafe impl<T: Real, const W: usize, const R: usize> Sync for Raw<T, W, R> {}

impl<T: Real, const W: usize, const R: usize> Raw<T, W, R> {
    /// Checks the tensors (see the module docs) and takes their data pointers.
    fn new(write: [&Tensor; W], read: [&Tensor; R]) -> Result<Self, OptimError> {
        let all: Vec<&Tensor> = write.iter().chain(read.iter()).copied().collect();
        let n = all.first().map_or(0, |t| t.numel());
        for t in &all {
            if !usable(t) || t.kind() != T::KIND || t.numel() != n {
                return Err(internal(format!(
                    "fused update on a tensor it cannot take (defined {}, kind {:?}, {} elements, \
                     expected {:?} contiguous on the CPU with {n})",
                    t.defined(),
                    t.defined().then(|| t.kind()),
                    if t.defined() { t.numel() } else { 0 },
                    T::KIND
                )));
            }
        }
        if !disjoint_writes(&all, W) {
            return Err(internal("fused update: a written tensor overlaps another".into()));
        }
        Ok(Raw { w: write.map(|t| t.data_ptr() as *mut T), r: read.map(|t| t.data_ptr() as *const T), n })
    }

    /// The elements `range` of every buffer.
    ///
    /// # Safety
    ///
    /// `range` lies within `0..self.n`, the tensors behind the pointers are alive and not used
    /// elsewhere for as long as the slices live, and no other slices of an overlapping range of the
    /// written buffers are alive at the same time.
    unsafe fn slices<'a>(&self, range: Range<usize>) -> ([&'a mut [T]; W], [&'a [T]; R]) {
        debug_assert!(range.start <= range.end && range.end <= self.n);
        let len = range.len();
        // SAFETY: `new` checked that every buffer holds `n` contiguous elements of `T` (so the
        // pointers are aligned and non-null unless `n` is 0, and then `len` is 0 and the dangling
        // pointer is never read) and that written buffers overlap nothing; the caller guarantees
        // the rest.
        let w = self.w.map(|p| unsafe {
            std::slice::from_raw_parts_mut(
                if len == 0 { std::ptr::NonNull::dangling().as_ptr() } else { p.add(range.start) },
                len,
            )
        });
        // SAFETY: as above.
        let r = self.r.map(|p| unsafe {
            std::slice::from_raw_parts(
                if len == 0 { std::ptr::NonNull::<T>::dangling().as_ptr() } else { p.add(range.start) },
                len,
            )
        });
        (w, r)
    }
}

/// Whether none of the first `written` tensors overlaps any other (read-only ones may share memory).
fn disjoint_writes(all: &[&Tensor], written: usize) -> bool {
    let spans: Vec<Range<usize>> = all.iter().map(|t| span(t)).collect();
    spans.iter().enumerate().take(written).all(|(i, a)| {
        spans
            .iter()
            .enumerate()
            .all(|(j, b)| i == j || a.is_empty() || b.is_empty() || a.end <= b.start || b.end <= a.start)
    })
}

fn internal(message: String) -> OptimError {
    OptimError::State { optimizer: "fused".into(), message }
}

/// Bumps the autograd version counter of the written tensors that require grad, as an in-place
/// tensor operation would (an in-place fill of an empty view: no element is touched).
fn bump_versions(write: &[&Tensor]) -> Result<(), OptimError> {
    for t in write {
        if t.requires_grad() {
            let _ = t.f_as_strided([0], [1], None::<i64>)?.f_zero_()?;
        }
    }
    Ok(())
}

/// Whether kernels may use AVX2 (tests switch it off to compare with the SSE2 build of the same loops).
static AVX2_ALLOWED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether the AVX2 build of the kernels runs: allowed, and the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn use_avx2() -> bool {
    AVX2_ALLOWED.load(std::sync::atomic::Ordering::Relaxed) && std::is_x86_feature_detected!("avx2")
}

/// `f(x, y)`, compiled for AVX2 where the CPU has it (x86-64; the loops then run on 8 float32 or 4
/// float64 lanes instead of SSE2's 4 or 2). IEEE arithmetic is the same at any width, and the
/// compiler may not reorder floating-point operations, so the results are the same bits either way.
/// The kernel closures are `#[inline(always)]`, so that their loops are compiled inside [`avx2`].
#[inline(always)]
fn wide<X, Y, A>(f: &impl Fn(X, Y) -> A, x: X, y: Y) -> A {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2(f, x, y) };
    }
    f(x, y)
}

/// `f(x, y)` in a function compiled with AVX2.
///
/// # Safety
///
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<X, Y, A>(f: &impl Fn(X, Y) -> A, x: X, y: Y) -> A {
    f(x, y)
}

/// [`wide`] for kernels of three arguments.
#[inline(always)]
fn wide3<X, Y, Z, A>(f: &impl Fn(X, Y, Z) -> A, x: X, y: Y, z: Z) -> A {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2_3(f, x, y, z) };
    }
    f(x, y, z)
}

/// `f(x, y, z)` in a function compiled with AVX2.
///
/// # Safety
///
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_3<X, Y, Z, A>(f: &impl Fn(X, Y, Z) -> A, x: X, y: Y, z: Z) -> A {
    f(x, y, z)
}

fn chunk_range(c: usize, n: usize) -> Range<usize> {
    c * CHUNK..((c + 1) * CHUNK).min(n)
}

/// Runs `f` over chunks of the buffers (all of the same length; `write` are updated in place),
/// in parallel for large tensors. `f` gets equally long slices of each buffer; its result must not
/// depend on how the range is split (element-wise updates).
pub(crate) fn for_each<T: Real, const W: usize, const R: usize>(
    write: [&Tensor; W],
    read: [&Tensor; R],
    f: impl Fn([&mut [T]; W], [&[T]; R]) + Sync,
) -> Result<(), OptimError> {
    let raw = Raw::<T, W, R>::new(write, read)?;
    let n = raw.n;
    if n <= SEQUENTIAL_MAX {
        // SAFETY: the whole range, on this thread only; the tensors are borrowed for this call.
        let (w, r) = unsafe { raw.slices(0..n) };
        wide(&f, w, r);
    } else {
        (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|c| {
            // SAFETY: each chunk index is handed out once, so the ranges are disjoint.
            let (w, r) = unsafe { raw.slices(chunk_range(c, n)) };
            wide(&f, w, r);
        });
    }
    bump_versions(&write)
}

/// Runs `f` over the chunks `0..n` of [`CHUNK`] elements (the last one shorter) and returns the
/// results in chunk order (for deterministic reductions); the chunking is the same whether or not
/// the chunks run in parallel.
pub(crate) fn map_chunks<T: Real, const W: usize, const R: usize, A: Send>(
    write: [&Tensor; W],
    read: [&Tensor; R],
    f: impl Fn([&mut [T]; W], [&[T]; R]) -> A + Sync,
) -> Result<Vec<A>, OptimError> {
    let raw = Raw::<T, W, R>::new(write, read)?;
    let n = raw.n;
    let run = |c: usize| {
        // SAFETY: each chunk index is handed out once, so the ranges are disjoint.
        let (w, r) = unsafe { raw.slices(chunk_range(c, n)) };
        wide(&f, w, r)
    };
    let out = if n <= SEQUENTIAL_MAX {
        (0..n.div_ceil(CHUNK)).map(run).collect()
    } else {
        (0..n.div_ceil(CHUNK)).into_par_iter().map(run).collect()
    };
    if W > 0 {
        bump_versions(&write)?;
    }
    Ok(out)
}

/// Like [`map_chunks`], over whole rows: the buffers are `rows` rows of `n / rows` elements, and `f`
/// gets the index of its first row and slices holding whole rows (at least one, about [`CHUNK`]
/// elements). Results come back in row order.
pub(crate) fn map_rows<T: Real, const W: usize, const R: usize, A: Send>(
    write: [&Tensor; W],
    read: [&Tensor; R],
    rows: usize,
    f: impl Fn(usize, [&mut [T]; W], [&[T]; R]) -> A + Sync,
) -> Result<Vec<A>, OptimError> {
    let raw = Raw::<T, W, R>::new(write, read)?;
    let n = raw.n;
    if rows == 0 || n % rows != 0 {
        return Err(internal(format!("{n} elements are not {rows} rows")));
    }
    let len = n / rows;
    let per_task = (CHUNK / len.max(1)).max(1);
    let run = |t: usize| {
        let first = t * per_task;
        let last = ((t + 1) * per_task).min(rows);
        // SAFETY: each task index is handed out once, so the row ranges are disjoint.
        let (w, r) = unsafe { raw.slices(first * len..last * len) };
        wide3(&f, first, w, r)
    };
    let tasks = rows.div_ceil(per_task);
    let out = if n <= SEQUENTIAL_MAX {
        (0..tasks).map(run).collect()
    } else {
        (0..tasks).into_par_iter().map(run).collect()
    };
    if W > 0 {
        bump_versions(&write)?;
    }
    Ok(out)
}

/// Calls `f` once, on this thread, with the whole of each buffer; the buffers may differ in length
/// (check them with [`eligible_any`]). For small tensors such as AdaFactor's row and column averages.
pub(crate) fn with_slices<T: Real, const W: usize, const R: usize, A>(
    write: [&Tensor; W],
    read: [&Tensor; R],
    f: impl FnOnce([&mut [T]; W], [&[T]; R]) -> A,
) -> Result<A, OptimError> {
    let mut ws = Vec::with_capacity(W);
    for t in write {
        ws.push(Raw::<T, 1, 0>::new([t], [])?);
    }
    let mut rs = Vec::with_capacity(R);
    for t in read {
        rs.push(Raw::<T, 0, 1>::new([], [t])?);
    }
    let all: Vec<&Tensor> = write.iter().chain(read.iter()).copied().collect();
    if !disjoint_writes(&all, W) {
        return Err(internal("fused update: a written tensor overlaps another".into()));
    }
    // SAFETY: each buffer's whole range, on this thread only; the written buffers overlap nothing
    // (checked above) and the tensors are borrowed for this call.
    let w: [&mut [T]; W] = std::array::from_fn(|i| {
        let ([s], []) = unsafe { ws[i].slices(0..ws[i].n) };
        s
    });
    // SAFETY: as above.
    let r: [&[T]; R] = std::array::from_fn(|i| {
        let ([], [s]) = unsafe { rs[i].slices(0..rs[i].n) };
        s
    });
    let out = f(w, r);
    bump_versions(&write)?;
    Ok(out)
}

/// `Σ f(i)` for `i` in `0..n`, accumulated in `f64` in [`LANES`] interleaved partial sums that are
/// added in a fixed order at the end (vectorisable and deterministic); `K` sums at once.
#[inline(always)]
pub(crate) fn sums<const K: usize>(n: usize, mut f: impl FnMut(usize) -> [f64; K]) -> [f64; K] {
    let mut acc = [[0.0f64; LANES]; K];
    let full = n - n % LANES;
    let mut base = 0;
    while base < full {
        for j in 0..LANES {
            let v = f(base + j);
            for k in 0..K {
                acc[k][j] += v[k];
            }
        }
        base += LANES;
    }
    for i in full..n {
        let v = f(i);
        for k in 0..K {
            acc[k][i - full] += v[k];
        }
    }
    acc.map(|lanes| lanes.iter().sum())
}

/// Elements per block of [`block_sq_sums`].
pub(crate) const BLOCK: usize = 256;

/// `K` sums of squares over `0..n` in `f64`, for loops that update buffers and reduce at once:
/// `f(range, out)` handles the elements `range` (blocks of at most [`BLOCK`]) and writes each
/// element's `K` values, in the element type, to `out[k][i - range.start]`; the blocks' values are
/// then widened, squared and added in [`LANES`] interleaved `f64` partial sums, combined in a fixed
/// order at the end. Both loops are plain loops over slices, which the compiler vectorises: the
/// first at the full width of `T` (8 float32 lanes with AVX2), because it stays in `T` (writing
/// `f64` values there would halve it), the second in `f64` (a loop that stores and accumulates at
/// once would stay scalar).
#[inline(always)]
pub(crate) fn block_sq_sums<T: Real, const K: usize>(
    n: usize,
    mut f: impl FnMut(Range<usize>, &mut [[T; BLOCK]; K]),
) -> [f64; K] {
    let mut acc = [[0.0f64; LANES]; K];
    let mut out = [[T::ZERO; BLOCK]; K];
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK).min(n);
        let len = end - start;
        f(start..end, &mut out);
        let padded = len.next_multiple_of(LANES);
        for k in 0..K {
            out[k][len..padded].fill(T::ZERO);
            for block in out[k][..padded].chunks_exact(LANES) {
                for j in 0..LANES {
                    let x = block[j].f64();
                    acc[k][j] += x * x;
                }
            }
        }
        start = end;
    }
    acc.map(|lanes| lanes.iter().sum())
}

/// Adds per-chunk partial sums in chunk order.
pub(crate) fn total<const K: usize>(partials: &[[f64; K]]) -> [f64; K] {
    let mut out = [0.0; K];
    for p in partials {
        for k in 0..K {
            out[k] += p[k];
        }
    }
    out
}

/// One tensor of [`all_finite_many`].
enum Scan {
    F32(Raw<f32, 0, 1>),
    F64(Raw<f64, 0, 1>),
}

impl Scan {
    fn n(&self) -> usize {
        match self {
            Scan::F32(raw) => raw.n,
            Scan::F64(raw) => raw.n,
        }
    }

    /// Whether the chunk `c` holds a NaN or an infinity.
    fn chunk_non_finite(&self, c: usize) -> bool {
        let n = self.n();
        // SAFETY (both arms): the chunk lies within the tensor, which is only read, and is borrowed by
        // the caller of `all_finite_many` for the whole scan.
        match self {
            Scan::F32(raw) => {
                let ([], [x]) = unsafe { raw.slices(chunk_range(c, n)) };
                wide(&|x: &[f32], ()| f32::any_non_finite(x), x, ())
            }
            Scan::F64(raw) => {
                let ([], [x]) = unsafe { raw.slices(chunk_range(c, n)) };
                wide(&|x: &[f64], ()| f64::any_non_finite(x), x, ())
            }
        }
    }
}

/// Whether every element of the tensors is finite: the chunks of all the tensors the fused path can read
/// are scanned in one parallel loop (one fork-join for the lot instead of one per tensor). Returns
/// whether they are all finite, and the indices of the tensors it could not read (check those with
/// tensor operations).
pub(crate) fn all_finite_many(ts: &[&Tensor]) -> Result<(bool, Vec<usize>), OptimError> {
    let mut scans = Vec::with_capacity(ts.len());
    let mut unread = Vec::new();
    for (i, t) in ts.iter().enumerate() {
        match eligible(true, &[t]) {
            Some(Dtype::F32) => scans.push(Scan::F32(Raw::new([], [t])?)),
            Some(Dtype::F64) => scans.push(Scan::F64(Raw::new([], [t])?)),
            None => unread.push(i),
        }
    }
    let tasks: Vec<(usize, usize)> =
        scans.iter().enumerate().flat_map(|(i, s)| (0..s.n().div_ceil(CHUNK)).map(move |c| (i, c))).collect();
    let total: usize = scans.iter().map(Scan::n).sum();
    let bad = |&(i, c): &(usize, usize)| scans[i].chunk_non_finite(c);
    let any_bad = if total <= SEQUENTIAL_MAX { tasks.iter().any(bad) } else { tasks.par_iter().any(bad) };
    Ok((!any_bad, unread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lerp_matches_torch() {
        for w in [0.1, 0.5, 0.9, 0.001, 0.999] {
            let a = Tensor::from_slice(&[0.3f64, -1.7, 2.5e-3, 1e6]);
            let b = Tensor::from_slice(&[1.1f64, 0.4, -7.0, -3.0]);
            let expected = Vec::<f64>::try_from(a.lerp(&b, w)).unwrap();
            let l = Lerp::<f64>::new(w);
            let av = Vec::<f64>::try_from(&a).unwrap();
            let bv = Vec::<f64>::try_from(&b).unwrap();
            for i in 0..4 {
                let got = l.at(av[i], bv[i]);
                assert!((got - expected[i]).abs() <= 1e-15 * expected[i].abs().max(1.0), "w={w}");
            }
        }
    }

    #[test]
    fn eligibility() {
        let a = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
        let b = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
        assert_eq!(eligible(true, &[&a, &b]), Some(Dtype::F32));
        assert_eq!(eligible(false, &[&a, &b]), None);
        assert_eq!(eligible(true, &[&a, &a]), None, "aliasing");
        assert_eq!(eligible(true, &[&a, &b.tr()]), None, "non-contiguous");
        assert_eq!(eligible(true, &[&a, &b.to_kind(Kind::Double)]), None, "mixed kinds");
        assert_eq!(eligible(true, &[&a.to_kind(Kind::Half)]), None, "half");
        assert_eq!(eligible(true, &[&a, &Tensor::zeros([5], (Kind::Float, Device::Cpu))]), None);
        assert!(Raw::<f32, 1, 1>::new([&a], [&a]).is_err());
        assert!(Raw::<f64, 1, 0>::new([&a], []).is_err());
    }

    #[test]
    fn chunked_loops_cover_every_element_once() {
        for n in [0usize, 1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5, SEQUENTIAL_MAX + 17] {
            let x = Tensor::arange(n as i64, (Kind::Double, Device::Cpu));
            let y = Tensor::zeros([n as i64], (Kind::Double, Device::Cpu));
            for_each::<f64, 1, 1>([&y], [&x], |[y], [x]| {
                for i in 0..y.len() {
                    y[i] += 2.0 * x[i];
                }
            })
            .unwrap();
            assert!(y.equal(&(&x * 2.0)), "n = {n}");
            let parts =
                map_chunks::<f64, 0, 1, _>([], [&x], |[], [x]| sums(x.len(), |i| [x[i], 1.0])).unwrap();
            let [s, count] = total(&parts);
            assert_eq!(count, n as f64);
            assert_eq!(s, (n * n.saturating_sub(1) / 2) as f64, "n = {n}");
        }
    }

    #[test]
    fn rows_are_whole() {
        let (rows, len) = (1000usize, 37usize);
        let x = Tensor::ones([rows as i64, len as i64], (Kind::Float, Device::Cpu));
        let parts = map_rows::<f32, 0, 1, _>([], [&x], rows, |first, [], [x]| {
            assert_eq!(x.len() % len, 0);
            (first, x.len() / len)
        })
        .unwrap();
        let mut next = 0;
        for (first, count) in parts {
            assert_eq!(first, next);
            next += count;
        }
        assert_eq!(next, rows);
    }

    /// [`all_finite_many`] on one tensor: `None` where it cannot read it.
    fn all_finite(t: &Tensor) -> Option<bool> {
        let (ok, unread) = all_finite_many(&[t]).unwrap();
        unread.is_empty().then_some(ok)
    }

    #[test]
    fn finiteness_of_many_tensors() {
        let big = Tensor::randn([3 * CHUNK as i64 + 5], (Kind::Float, Device::Cpu));
        let small = Tensor::randn([7], (Kind::Double, Device::Cpu));
        let half = Tensor::randn([9], (Kind::Float, Device::Cpu)).to_kind(Kind::Half);
        let (ok, unread) = all_finite_many(&[&small, &half, &big]).unwrap();
        assert!(ok);
        assert_eq!(unread, vec![1]);
        for (t, at) in [(&big, 2 * CHUNK as i64 + 3), (&small, 6)] {
            let _ = t.narrow(0, at, 1).fill_(f64::NAN);
            assert!(!all_finite_many(&[&small, &half, &big]).unwrap().0);
            let _ = t.narrow(0, at, 1).fill_(0.5);
        }
        assert!(all_finite_many(&[]).unwrap().0);
    }

    #[test]
    fn finiteness() {
        let x = Tensor::randn([100_003], (Kind::Float, Device::Cpu));
        assert!(all_finite(&x).unwrap());
        let _ = x.narrow(0, 77_777, 1).fill_(f64::INFINITY);
        assert!(!all_finite(&x).unwrap());
        let _ = x.narrow(0, 77_777, 1).fill_(f64::NAN);
        assert!(!all_finite(&x).unwrap());
        let _ = x.narrow(0, 77_777, 1).fill_(1.0);
        let _ = x.narrow(0, 100_002, 1).fill_(f64::NEG_INFINITY);
        assert!(!all_finite(&x).unwrap());
        let _ = x.narrow(0, 100_002, 1).fill_(f64::from(f32::MAX));
        assert!(all_finite(&x).unwrap());
        let y = Tensor::from_slice(&[f64::MAX, -f64::MAX, f64::MIN_POSITIVE, 5e-324, -0.0, 0.0]);
        assert!(all_finite(&y).unwrap());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -f64::NAN] {
            let z = Tensor::cat(&[&y, &Tensor::from_slice(&[bad])], 0);
            assert!(!all_finite(&z).unwrap(), "{bad}");
        }
        assert!(f32::any_non_finite(&[1.0, f32::from_bits(0x7f80_0001)]), "a NaN payload");
        assert!(!f32::any_non_finite(&[f32::MIN_POSITIVE / 4.0, -f32::MAX, 0.0]), "subnormals and extremes");
        assert!(all_finite(&x.tr()).is_some(), "1-d transpose is contiguous");
        assert!(all_finite(&x.to_kind(Kind::Half)).is_none());
    }

    /// The AVX2 and SSE2 builds of the kernels give the same bits (a parallel AdamW update and a LAMB
    /// update with its reductions).
    #[test]
    fn avx2_and_sse2_agree() {
        let run = |avx2: bool, name: &str| {
            AVX2_ALLOWED.store(avx2, std::sync::atomic::Ordering::Relaxed);
            let w = Tensor::linspace(-3.0, 2.0, 100_003, (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let h = crate::HParams::parse(&["weight_decay=0.1"]).unwrap();
            let mut opt = crate::create(name, &h, vec![("w".into(), w.shallow_clone())]).unwrap();
            for k in 0..3 {
                opt.zero_grad();
                (&w * &w * (k as f64 + 1.0)).sum(Kind::Float).backward();
                opt.step(1e-2).unwrap();
            }
            AVX2_ALLOWED.store(true, std::sync::atomic::Ordering::Relaxed);
            w.detach()
        };
        for name in ["adamw", "lamb", "adan"] {
            assert!(run(true, name).equal(&run(false, name)), "{name}");
        }
    }

    #[test]
    fn writes_bump_the_version_of_tensors_that_require_grad() {
        let p = Tensor::zeros([4], (Kind::Double, Device::Cpu)).set_requires_grad(true);
        let before = p.internal_version();
        let _guard = tch::no_grad_guard();
        for_each::<f64, 1, 0>([&p], [], |[p], []| p.iter_mut().for_each(|x| *x += 1.0)).unwrap();
        assert!(p.internal_version() > before);
        assert_eq!(p.double_value(&[2]), 1.0);
    }
}
