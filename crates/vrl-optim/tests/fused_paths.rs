//! The two paths of every optimizer — fused kernels over CPU memory (`fused = true`, the default) and
//! tensor operations (`fused = false`, also what CUDA and non-contiguous tensors take) — against the
//! references and against each other, and the `weight_decay_mode` setting.
//!
//! * Every case of `tests/fixtures/optim_reference.safetensors` (see `tests/reference.rs` and
//!   `python/optim_reference.py`) runs on both paths; float64 must agree with the reference to 1e-9
//!   relative (to max(1, |θ|)), float32 to 1e-5.
//! * Both paths on larger float64 tensors (so that the fused loops run in parallel chunks, rows of
//!   AdamP / SGDP and AdaFactor span several chunks, and projections happen) agree to 1e-9 relative
//!   after many steps, for every optimizer and weight-decay mode.
//! * Fused reductions are deterministic: the same bits with 1 and 2 rayon threads.
//! * `weight_decay_mode`: coupled decay is the same as feeding `g + λθ` with λ = 0, decoupled decay
//!   the same as shrinking θ by `1 − ηλ` before a step with λ = 0; each optimizer's default is its
//!   reference's; unsupported or contradictory modes are errors that say so.

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};
use vrl_optim::{HParams, HValue, NamedParam, Optimizer, REGISTRY, WeightDecayMode, create};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/optim_reference.safetensors");

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    optimizer: String,
    hparams: HParams,
    steps: usize,
    params: Vec<(String, Vec<i64>)>,
    dtypes: Vec<String>,
    #[serde(default)]
    hessian_steps: Vec<usize>,
    /// Parameters whose gradients are the case's own (`{case}/{dtype}/grads/{param}`) rather than the
    /// shared ones (`grads/{dtype}/{param}`); both are stacked over the steps.
    #[serde(default)]
    own_grads: Vec<String>,
}

fn tensor(st: &SafeTensors<'_>, key: &str) -> Tensor {
    let view = st.tensor(key).unwrap_or_else(|e| panic!("tensor `{key}`: {e}"));
    let kind = match view.dtype() {
        Dtype::F64 => Kind::Double,
        Dtype::F32 => Kind::Float,
        d => panic!("tensor `{key}`: unexpected dtype {d:?}"),
    };
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    Tensor::f_from_data_size(view.data(), &shape, kind).expect("tensor from fixture bytes")
}

/// LibTorch on one thread: the tensor path is the reference here, and its parallel regions on a busy
/// machine only cost time (the fused path keeps rayon's threads).
fn setup() {
    tch::set_num_threads(1);
}

fn with(h: &HParams, items: &[(&str, HValue)]) -> HParams {
    let mut h = h.clone();
    for (k, v) in items {
        h.0.insert(k.to_string(), v.clone());
    }
    h
}

fn fused(on: bool) -> (&'static str, HValue) {
    ("fused", HValue::Bool(on))
}

/// Largest |a − b| / max(1, |b|) over all elements of all parameters.
fn rel_diff(a: &[NamedParam], b: &[NamedParam]) -> f64 {
    a.iter()
        .zip(b)
        .map(|((_, x), (_, y))| {
            let (x, y) = (x.detach().to_kind(Kind::Double), y.detach().to_kind(Kind::Double));
            ((&x - &y).abs() / y.abs().clamp_min(1.0)).max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

fn leaves(params: &[NamedParam]) -> Vec<NamedParam> {
    params.iter().map(|(n, t)| (n.clone(), t.detach().copy().set_requires_grad(true))).collect()
}

fn shared(params: &[NamedParam]) -> Vec<NamedParam> {
    params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
}

/// Sets the gradient of every parameter to `grads[i]` (exactly: d/dθ Σ θ·g = g on a zeroed gradient).
fn set_grads(opt: &mut dyn Optimizer, params: &[NamedParam], grads: &[Tensor]) {
    opt.zero_grad();
    for ((_, p), g) in params.iter().zip(grads) {
        (p * g).sum(p.kind()).backward();
    }
}

#[test]
fn both_paths_match_the_reference_fixture() {
    setup();
    let bytes = std::fs::read(FIXTURE).unwrap_or_else(|e| panic!("{FIXTURE}: {e}"));
    let (_, metadata) = SafeTensors::read_metadata(&bytes).expect("fixture header");
    let json = metadata.metadata().as_ref().and_then(|m| m.get("cases")).expect("`cases` in __metadata__");
    let cases: Vec<Case> = serde_json::from_str(json).expect("`cases` JSON");
    let st = SafeTensors::deserialize(&bytes).expect("fixture tensors");
    let mut failures = Vec::new();
    let (mut bitwise_different, mut runs) = (0, 0);
    for case in &cases {
        for dtype in &case.dtypes {
            let key = |rest: String| format!("{}/{dtype}/{rest}", case.name);
            let lrs = Vec::<f64>::try_from(tensor(&st, &format!("{}/lrs", case.name))).expect("lrs");
            let load = |stage: &str| -> Vec<NamedParam> {
                (case.params.iter())
                    .map(|(n, _)| (n.clone(), tensor(&st, &key(format!("{stage}/{n}")))))
                    .collect()
            };
            let expected = load("final");
            // Gradients `[steps, …]` per parameter; Hessian estimates `[len(hessian_steps), …]`.
            let grads: Vec<Tensor> = (case.params.iter())
                .map(|(n, _)| match case.own_grads.contains(n) {
                    true => tensor(&st, &key(format!("grads/{n}"))),
                    false => tensor(&st, &format!("grads/{dtype}/{n}")),
                })
                .collect();
            let hessians: Vec<Tensor> = match case.hessian_steps.is_empty() {
                true => Vec::new(),
                false => {
                    case.params.iter().map(|(n, _)| tensor(&st, &key(format!("hessians/{n}")))).collect()
                }
            };
            let mut finals = Vec::new();
            for on in [true, false] {
                let params = leaves(&load("init"));
                let h = with(&case.hparams, &[fused(on)]);
                let mut opt = create(&case.optimizer, &h, shared(&params))
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
                for (k, lr) in lrs.iter().enumerate().take(case.steps) {
                    let step_grads: Vec<Tensor> = grads.iter().map(|g| g.get(k as i64)).collect();
                    set_grads(opt.as_mut(), &params, &step_grads);
                    if let Some(j) = case.hessian_steps.iter().position(|&s| s == k) {
                        opt.update_hessian(hessians.iter().map(|h| h.get(j as i64)).collect()).unwrap();
                    }
                    opt.step(*lr).unwrap_or_else(|e| panic!("{} {dtype} step {k}: {e}", case.name));
                }
                let tol = if dtype == "f64" { 1e-9 } else { 1e-5 };
                let diff = rel_diff(&params, &expected);
                println!("{} {dtype} fused={on}: {diff:e}", case.name);
                if diff.is_nan() || diff > tol {
                    failures.push(format!("{} {dtype} fused={on}: {diff:e} > {tol:e}", case.name));
                }
                finals.push(params);
            }
            runs += 1;
            if finals[0].iter().zip(&finals[1]).any(|((_, a), (_, b))| !a.equal(b)) {
                bitwise_different += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} runs differ from the reference:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The switch changes the arithmetic (different rounding), so it is really two paths.
    assert!(
        bitwise_different > runs / 4,
        "fused and tensor paths bit-identical in {} of {runs} runs",
        runs - bitwise_different
    );
}

/// Standard normal samples (uniform in [0, 1) with `uniform`) from a SplitMix64 stream: deterministic
/// per seed without LibTorch's global generator, which tests running in parallel threads would share.
fn random(shape: &[i64], kind: Kind, seed: u64, uniform: bool) -> Tensor {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let n: i64 = shape.iter().product();
    let values: Vec<f64> = (0..n)
        .map(|_| match uniform {
            true => next(),
            false => (-2.0 * (1.0 - next()).ln()).sqrt() * (std::f64::consts::TAU * next()).cos(),
        })
        .collect();
    Tensor::from_slice(&values).reshape(shape).to_kind(kind)
}

/// Parameters of assorted shapes (a 2-d tensor of 33 411 elements is updated in parallel chunks),
/// deterministic from `seed`.
fn params(kind: Kind, seed: u64) -> Vec<NamedParam> {
    let seed = 10 * seed;
    vec![
        ("fc.weight".into(), random(&[129, 259], kind, seed, false)),
        ("conv.weight".into(), random(&[3, 8, 17, 19], kind, seed + 1, false) * 0.1),
        ("conv.bias".into(), random(&[8], kind, seed + 2, false)),
        ("norm.weight".into(), random(&[7], kind, seed + 3, true) + 0.5),
        ("small.weight".into(), random(&[2, 3, 1, 5], kind, seed + 4, false)),
    ]
}

/// Gradients for step `k`: random, except that for `orthogonal` the rows of 2-d and larger
/// parameters are made orthogonal to the parameter's rows (so that AdamP / SGDP project).
fn grads(params: &[NamedParam], k: i64, orthogonal: bool) -> Vec<Tensor> {
    thread_local! {
        static CACHE: std::cell::RefCell<std::collections::HashMap<String, Vec<Tensor>>> = Default::default();
    }
    // The same gradients serve many runs; generating them is most of a test's time otherwise.
    let shapes: Vec<(Vec<i64>, Kind)> = params.iter().map(|(_, p)| (p.size(), p.kind())).collect();
    let key = format!("{shapes:?}/{k}/{orthogonal}");
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let g = c.entry(key).or_insert_with(|| make_grads(params, k, orthogonal));
        g.iter().map(Tensor::shallow_clone).collect()
    })
}

fn make_grads(params: &[NamedParam], k: i64, orthogonal: bool) -> Vec<Tensor> {
    params
        .iter()
        .enumerate()
        .map(|(i, (_, p))| {
            let g = random(&p.size(), p.kind(), 1000 + 10 * k as u64 + i as u64, false);
            if !orthogonal || p.dim() < 2 {
                return g;
            }
            let (p, rows) = (p.detach().reshape([p.size()[0], -1]), g.reshape([p.size()[0], -1]));
            let coef = (&rows * &p).sum_dim_intlist(1, true, p.kind())
                / (&p * &p).sum_dim_intlist(1, true, p.kind());
            (rows - p * coef).reshape(g.size())
        })
        .collect()
}

/// Runs `steps` steps of `name` with `h` from `params(kind, 0)` and returns the final parameters and
/// the state.
fn run(
    name: &str,
    h: &HParams,
    kind: Kind,
    steps: i64,
    orthogonal: bool,
) -> (Vec<NamedParam>, Vec<NamedParam>) {
    let params = leaves(&params(kind, 0));
    let mut opt = create(name, h, shared(&params)).unwrap_or_else(|e| panic!("{name}: {e}"));
    for k in 0..steps {
        let g = grads(&params, k, orthogonal);
        set_grads(opt.as_mut(), &params, &g);
        if opt.hessian_due() {
            let h = (params.iter().enumerate())
                .map(|(i, (_, p))| random(&p.size(), p.kind(), 2000 + 10 * k as u64 + i as u64, true) * 2.0)
                .collect();
            opt.update_hessian(h).expect("hessian estimate");
        }
        // A learning rate that changes per step.
        let lr = (1.0 + 0.5 * (k as f64 * 0.7).cos()) * lr_of(name);
        opt.step(lr).unwrap_or_else(|e| panic!("{name} step {k}: {e}"));
    }
    let state = opt.state().into_iter().map(|(n, t)| (n, t.detach().copy())).collect();
    (params, state)
}

fn lr_of(name: &str) -> f64 {
    match name {
        "sgd" | "sgdp" | "lars" | "adadelta" => 0.05,
        "lion" => 1e-4,
        _ => 1e-3,
    }
}

/// Every optimizer in each weight-decay mode it takes, with settings that switch on its options.
fn configurations() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out = Vec::new();
    for entry in REGISTRY {
        let extra: &[&[&str]] = match entry.name {
            "sgd" => &[
                &["momentum=0.9"],
                &["momentum=0.9", "nesterov=true"],
                &[],
                &["momentum=0.8", "dampening=0.2"],
            ],
            "adam" | "adamw" => &[&[], &["amsgrad=true"]],
            "rmsprop" => &[&[], &["centered=true"], &["momentum=0.5"], &["centered=true", "momentum=0.5"]],
            "sgdp" => &[&["momentum=0.9"], &["momentum=0.9", "nesterov=true"]],
            "adamp" => &[&[], &["nesterov=true"]],
            "lars" => &[&[], &["nesterov=true", "dampening=0.1"], &["momentum=0"]],
            "novograd" => &[&[], &["grad_averaging=true"]],
            "adafactor" => &[&[], &["scale_parameter=false"], &["eps2=1e3"]],
            "sophia" => &[&["update_period=3"]],
            "adagrad" => &[&["lr_decay=0.01", "initial_accumulator_value=0.1"]],
            _ => &[&[]],
        };
        for e in extra {
            for mode in supported(entry.name) {
                let mut items: Vec<&'static str> = e.to_vec();
                items.push("weight_decay=0.1");
                items.push(match mode {
                    WeightDecayMode::Coupled => "weight_decay_mode=coupled",
                    WeightDecayMode::Decoupled => "weight_decay_mode=decoupled",
                    WeightDecayMode::Proximal => "weight_decay_mode=proximal",
                });
                out.push((entry.name, items));
            }
        }
    }
    out
}

/// The modes each optimizer takes, its reference's first (the table of docs/optimizers.md).
fn supported(name: &str) -> &'static [WeightDecayMode] {
    use WeightDecayMode::*;
    match name {
        "sgd" | "adam" | "adamax" | "rmsprop" | "adagrad" | "adadelta" | "nadam" | "radam" | "novograd" => {
            &[Coupled, Decoupled]
        }
        "adamw" | "lion" | "lamb" | "adabelief" | "adabound" | "adafactor" | "sophia" => {
            &[Decoupled, Coupled]
        }
        "adan" => &[Proximal, Decoupled],
        "sgdp" | "adamp" => &[Decoupled],
        "lars" => &[Coupled],
        other => panic!("no weight-decay modes listed for `{other}`"),
    }
}

#[test]
fn both_paths_agree_on_larger_tensors_in_every_mode() {
    setup();
    let mut failures = Vec::new();
    for (name, items) in configurations() {
        for orthogonal in [false, true] {
            if orthogonal && !matches!(name, "sgdp" | "adamp") {
                continue;
            }
            let h = HParams::parse(&items).unwrap();
            let (a, sa) = run(name, &with(&h, &[fused(true)]), Kind::Double, 8, orthogonal);
            let (b, sb) = run(name, &with(&h, &[fused(false)]), Kind::Double, 8, orthogonal);
            let start = leaves(&params(Kind::Double, 0));
            let moved = rel_diff(&b, &start);
            let (diff, state_diff) = (rel_diff(&a, &b), rel_diff(&sa, &sb));
            println!("{name} {items:?} orthogonal={orthogonal}: params {diff:e}, state {state_diff:e}");
            if !(diff <= 1e-9 && state_diff <= 1e-9 && moved > 1e-6) {
                failures.push(format!(
                    "{name} {items:?} orthogonal={orthogonal}: params {diff:e}, state {state_diff:e}, moved {moved:e}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "fused and tensor paths differ:\n{}", failures.join("\n"));
}

/// The projection of AdamP / SGDP really happens with orthogonal gradients, on both paths: the
/// trajectory differs from the same run with δ = 0 (which never projects).
#[test]
fn projection_is_exercised() {
    setup();
    for name in ["sgdp", "adamp"] {
        for on in [true, false] {
            let h = |delta: &str| {
                with(
                    &HParams::parse(
                        &["momentum=0.9", "weight_decay=0.1", delta][usize::from(name == "adamp")..],
                    )
                    .unwrap(),
                    &[fused(on)],
                )
            };
            let (a, _) = run(name, &h("delta=0.1"), Kind::Double, 5, true);
            let (b, _) = run(name, &h("delta=0"), Kind::Double, 5, true);
            assert!(rel_diff(&a, &b) > 1e-6, "{name} fused={on}: no projection with orthogonal gradients");
        }
    }
}

#[test]
fn fused_reductions_do_not_depend_on_the_thread_count() {
    setup();
    for name in ["lamb", "lars", "novograd", "adafactor", "adamp", "sgdp", "adamw"] {
        let h = HParams::parse(&["weight_decay=0.1"]).unwrap();
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let (a, sa) = one.install(|| run(name, &h, Kind::Float, 5, name.ends_with('p')));
        let (b, sb) = two.install(|| run(name, &h, Kind::Float, 5, name.ends_with('p')));
        for ((n, x), (_, y)) in a.iter().chain(&sa).zip(b.iter().chain(&sb)) {
            assert!(x.equal(y), "{name}: `{n}` differs between 1 and 2 threads");
        }
    }
}

/// A non-contiguous parameter (a transposed view) falls back to tensor ops: bit-identical to
/// `fused = false`.
#[test]
fn non_contiguous_parameters_take_the_tensor_path() {
    setup();
    for entry in REGISTRY {
        let make = || {
            let base = random(&[6, 9], Kind::Double, 3, false);
            let p = base.tr().set_requires_grad(true);
            assert!(!p.is_contiguous());
            p
        };
        let mut out = Vec::new();
        for on in [true, false] {
            let p = make();
            let h = with(&HParams::parse(&["weight_decay=0.1"]).unwrap(), &[fused(on)]);
            let mut opt = create(entry.name, &h, vec![("w".into(), p.shallow_clone())]).unwrap();
            for k in 0..4 {
                let g = grads(&[("w".into(), p.shallow_clone())], k, false);
                set_grads(opt.as_mut(), &[("w".into(), p.shallow_clone())], &g);
                if opt.hessian_due() {
                    opt.update_hessian(vec![p.ones_like()]).unwrap();
                }
                opt.step(lr_of(entry.name)).unwrap();
            }
            out.push(p.detach().copy());
        }
        assert!(out[0].equal(&out[1]), "{}: the non-contiguous parameter took a different path", entry.name);
    }
}

/// A fused step bumps the parameter's autograd version, so a graph that saved the old value refuses
/// to backpropagate, as with tensor operations.
#[test]
fn fused_steps_invalidate_graphs_that_saved_the_parameter() {
    setup();
    for on in [true, false] {
        let w = Tensor::ones([3, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let h = HParams::parse(&[if on { "fused=true" } else { "fused=false" }]).unwrap();
        let mut opt = create("adamw", &h, vec![("w".into(), w.shallow_clone())]).unwrap();
        (&w * &w).sum(Kind::Float).backward();
        let y = (&w * &w).sum(Kind::Float);
        opt.step(0.1).unwrap();
        assert!(y.f_backward().is_err(), "fused={on}: backward through a stale graph succeeded");
    }
}

fn adjusted(
    name: &str,
    h: &HParams,
    transform: impl Fn(&mut [NamedParam], &mut Vec<Tensor>, f64),
    steps: i64,
) -> Vec<NamedParam> {
    let params = leaves(&params(Kind::Double, 0));
    let mut opt = create(name, h, shared(&params)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut ps = shared(&params);
    for k in 0..steps {
        let mut g = grads(&params, k, false);
        let lr = (1.0 + 0.5 * (k as f64 * 0.7).cos()) * lr_of(name);
        transform(&mut ps, &mut g, lr);
        set_grads(opt.as_mut(), &params, &g);
        if opt.hessian_due() {
            let h = (params.iter().enumerate())
                .map(|(i, (_, p))| random(&p.size(), p.kind(), 2000 + 10 * k as u64 + i as u64, true) * 2.0)
                .collect();
            opt.update_hessian(h).expect("hessian estimate");
        }
        opt.step(lr).unwrap_or_else(|e| panic!("{name} step {k}: {e}"));
    }
    params
}

/// Coupled decay is `g + λθ` fed to the optimizer without decay; decoupled decay is `θ ← θ (1 − ηλ)`
/// before a step without decay — for the optimizers where the mode means exactly that (LAMB and
/// NovoGrad couple after normalising, LARS inside its trust ratio; AdaFactor, SGDP and AdamP scale
/// their decoupled decay), on both paths.
#[test]
fn decay_modes_are_what_they_say() {
    setup();
    let lambda = 0.1;
    for entry in REGISTRY {
        let name = entry.name;
        let base: &[&str] = match name {
            "sgd" => &["momentum=0.9"],
            "sophia" => &["update_period=3"],
            _ => &[],
        };
        for &mode in supported(name) {
            let exact = match mode {
                WeightDecayMode::Coupled => !matches!(name, "lamb" | "novograd" | "lars"),
                WeightDecayMode::Decoupled => !matches!(name, "adafactor" | "sgdp" | "adamp"),
                WeightDecayMode::Proximal => false,
            };
            if !exact {
                continue;
            }
            for on in [true, false] {
                let hp = |items: &[&str]| {
                    let all: Vec<&str> = base.iter().chain(items).copied().collect();
                    with(&HParams::parse(&all).unwrap(), &[fused(on)])
                };
                let decayed = hp(&["weight_decay=0.1", &format!("weight_decay_mode={mode}")]);
                let plain = hp(&["weight_decay=0"]);
                let a = adjusted(name, &decayed, |_, _, _| {}, 8);
                let b = adjusted(
                    name,
                    &plain,
                    |ps, g, lr| {
                        let _guard = tch::no_grad_guard();
                        for ((_, p), g) in ps.iter_mut().zip(g.iter_mut()) {
                            if p.dim() < 2 {
                                continue;
                            }
                            match mode {
                                WeightDecayMode::Coupled => *g = &*g + p.detach() * lambda,
                                _ => {
                                    let _ = p.f_mul_scalar_(1.0 - lr * lambda).unwrap();
                                }
                            }
                        }
                    },
                    8,
                );
                let diff = rel_diff(&a, &b);
                assert!(diff <= 1e-12, "{name} {mode} fused={on}: {diff:e}");
                let none = adjusted(name, &plain, |_, _, _| {}, 8);
                assert!(rel_diff(&a, &none) > 1e-6, "{name} {mode}: decay made no difference");
            }
        }
    }
}

#[test]
fn adam_decoupled_is_adamw_and_adamw_coupled_is_adam() {
    setup();
    let h =
        |mode: &str| HParams::parse(&["weight_decay=0.05", &format!("weight_decay_mode={mode}")]).unwrap();
    for (a, b, mode) in [("adam", "adamw", "decoupled"), ("adamw", "adam", "coupled")] {
        let (x, _) = run(a, &h(mode), Kind::Double, 6, false);
        let (y, _) = run(b, &HParams::parse(&["weight_decay=0.05"]).unwrap(), Kind::Double, 6, false);
        assert!(rel_diff(&x, &y) < 1e-13, "{a} with {mode} decay is not {b}");
    }
}

#[test]
fn each_optimizer_defaults_to_its_reference_mode_and_refuses_the_others() {
    setup();
    for entry in REGISTRY {
        let modes = supported(entry.name);
        assert_eq!(
            (entry.defaults)().0.get("weight_decay_mode"),
            Some(&HValue::Str(modes[0].name().to_string())),
            "{}",
            entry.name
        );
        assert_eq!((entry.defaults)().0.get("fused"), Some(&HValue::Bool(true)), "{}", entry.name);
        let w = || {
            vec![("w".to_string(), Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true))]
        };
        for mode in WeightDecayMode::ALL {
            let h = HParams::parse(&[&format!("weight_decay_mode={}", mode.name())]).unwrap();
            let built = create(entry.name, &h, w());
            match modes.contains(&mode) {
                true => assert!(built.is_ok(), "{} refuses {mode}", entry.name),
                false => {
                    let e = built.err().unwrap().to_string();
                    assert!(
                        e.contains("weight_decay_mode")
                            && e.contains(&format!("does not support \"{mode}\"")),
                        "{}: {e}",
                        entry.name
                    );
                }
            }
        }
        let e = create(entry.name, &HParams::parse(&["weight_decay_mode=l2"]).unwrap(), w())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("unknown mode \"l2\"") && e.contains("expected one of"), "{}: {e}", entry.name);
    }
    // The references' own flags are aliases; an explicit contradiction is an error.
    let w =
        || vec![("w".to_string(), Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true))];
    for (name, flag) in [
        ("nadam", "decoupled_weight_decay"),
        ("radam", "decoupled_weight_decay"),
        ("adan", "weight_decouple"),
        ("novograd", "weight_decouple"),
    ] {
        assert!(
            create(
                name,
                &HParams::parse(&[&format!("{flag}=true"), "weight_decay_mode=decoupled"]).unwrap(),
                w()
            )
            .is_ok()
        );
        let other = supported(name)[0].name();
        let e = create(
            name,
            &HParams::parse(&[&format!("{flag}=true"), &format!("weight_decay_mode={other}")]).unwrap(),
            w(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("contradicts") && e.contains(flag), "{name}: {e}");
    }
    // The flag alone selects the mode: the same trajectory as the mode.
    let by_flag = run(
        "adan",
        &HParams::parse(&["weight_decay=0.1", "weight_decouple=true"]).unwrap(),
        Kind::Double,
        4,
        false,
    )
    .0;
    let by_mode = run(
        "adan",
        &HParams::parse(&["weight_decay=0.1", "weight_decay_mode=decoupled"]).unwrap(),
        Kind::Double,
        4,
        false,
    )
    .0;
    assert_eq!(rel_diff(&by_flag, &by_mode), 0.0);
}
