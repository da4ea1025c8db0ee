//! vrl's optimizers against their references (`torch.optim` for SGD, AdamW, Adam, RMSprop, Adagrad,
//! Adadelta, Adamax, NAdam, RAdam; `pytorch_optimizer` 4.1.0 for the others), over 100 steps.
//!
//! The fixture `tests/fixtures/optim_reference.safetensors` is written by `python/optim_reference.py`
//! (`~/.cache/vrl/venv/bin/python python/optim_reference.py`; its docstring describes the layout): for
//! each case and dtype, the initial parameters, the gradient of every step, the per-step learning rates
//! and the reference's final parameters. Here the same gradients are fed to `vrl_optim::create(…)` and
//! the final parameters compared (`cargo test -p vrl-optim --test reference -- --nocapture` prints the
//! largest difference of each case).
//!
//! The measure is the relative error per tensor, `max|vrl − ref| / max|ref|` (the largest absolute
//! difference over the largest magnitude of the reference tensor, so an entry near zero cannot inflate
//! it); it must be at most 1e-9 in float64 and 1e-5 in float32 for every parameter of every case.

use std::collections::HashMap;
use std::ops::Range;

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use tch::{Kind, Tensor};
use vrl_optim::{HParams, NamedParam, Optimizer, REGISTRY, create};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/optim_reference.safetensors");

/// One entry of the fixture's `__metadata__["cases"]`.
#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    optimizer: String,
    hparams: HParams,
    steps: usize,
    params: Vec<(String, Vec<i64>)>,
    dtypes: Vec<String>,
    /// The steps given a Hessian-diagonal estimate (`{case}/{dtype}/hessian/{k}/{param}`), for SophiaH.
    #[serde(default)]
    hessian_steps: Vec<usize>,
    /// Parameters whose gradients are the case's own (`{case}/{dtype}/grads/{param}`) rather than the
    /// shared ones (`grads/{dtype}/{param}`).
    #[serde(default)]
    own_grads: Vec<String>,
    /// False where the optimizer ignores the rate given to `step` (AdaFactor's `relative_step`).
    #[serde(default = "yes")]
    lr_sensitive: bool,
}

fn yes() -> bool {
    true
}

struct Fixture {
    bytes: Vec<u8>,
    cases: Vec<Case>,
}

impl Fixture {
    fn load() -> Self {
        let bytes = std::fs::read(FIXTURE)
            .unwrap_or_else(|e| panic!("{FIXTURE}: {e}; run python/optim_reference.py"));
        let (_, metadata) = SafeTensors::read_metadata(&bytes).expect("fixture header");
        let json =
            metadata.metadata().as_ref().and_then(|m| m.get("cases")).expect("`cases` in __metadata__");
        let cases: Vec<Case> = serde_json::from_str(json).expect("`cases` JSON");
        // Every registered optimizer has at least one case, so both tests below cover it.
        for entry in REGISTRY {
            assert!(cases.iter().any(|c| c.optimizer == entry.name), "no case for `{}`", entry.name);
        }
        Fixture { bytes, cases }
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("fixture tensors")
    }
}

/// A case in one dtype: reads its tensors and runs vrl's optimizer over them.
struct Run<'a> {
    st: &'a SafeTensors<'a>,
    case: &'a Case,
    dtype: &'a str,
    /// `grads[k][i]`: the gradient of parameter i at step k.
    grads: Vec<Vec<Tensor>>,
    /// `hessians[&k][i]`: the Hessian-diagonal estimate given to parameter i before step k.
    hessians: HashMap<usize, Vec<Tensor>>,
}

impl<'a> Run<'a> {
    fn new(st: &'a SafeTensors<'a>, case: &'a Case, dtype: &'a str) -> Self {
        let mut run = Run { st, case, dtype, grads: Vec::new(), hessians: HashMap::new() };
        let (steps, name) = (case.steps as i64, &case.name);
        let per_param: Vec<Tensor> = (case.params.iter())
            .map(|(param, shape)| {
                let key = match case.own_grads.contains(param) {
                    true => format!("{name}/{dtype}/grads/{param}"),
                    false => format!("grads/{dtype}/{param}"),
                };
                let g = run.tensor(&key);
                assert_eq!(g.size(), [&[steps][..], shape].concat(), "{}: `{key}`", run.what());
                g
            })
            .collect();
        run.grads = (0..steps).map(|k| per_param.iter().map(|g| g.get(k)).collect()).collect();
        if !case.hessian_steps.is_empty() {
            let per_param: Vec<Tensor> = (case.params.iter())
                .map(|(param, _)| run.tensor(&format!("{name}/{dtype}/hessians/{param}")))
                .collect();
            for (j, &k) in case.hessian_steps.iter().enumerate() {
                run.hessians.insert(k, per_param.iter().map(|h| h.get(j as i64)).collect());
            }
        }
        run
    }

    fn what(&self) -> String {
        format!("case `{}`, dtype {}", self.case.name, self.dtype)
    }

    fn tensor(&self, key: &str) -> Tensor {
        let view = self.st.tensor(key).unwrap_or_else(|e| panic!("{}: tensor `{key}`: {e}", self.what()));
        let kind = match view.dtype() {
            Dtype::F64 => Kind::Double,
            Dtype::F32 => Kind::Float,
            d => panic!("tensor `{key}`: unexpected dtype {d:?}"),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        Tensor::f_from_data_size(view.data(), &shape, kind).expect("tensor from fixture bytes")
    }

    /// The learning rate of each step.
    fn lrs(&self) -> Vec<f64> {
        let lrs = Vec::<f64>::try_from(self.tensor(&format!("{}/lrs", self.case.name))).expect("lrs");
        assert_eq!(lrs.len(), self.case.steps, "{}: lrs", self.what());
        lrs
    }

    /// The parameters `{case}/{dtype}/{stage}/{param}` for `stage` = `init` or `final`.
    fn params(&self, stage: &str) -> Vec<NamedParam> {
        (self.case.params.iter())
            .map(|(name, shape)| {
                let t = self.tensor(&format!("{}/{}/{stage}/{name}", self.case.name, self.dtype));
                assert_eq!(&t.size(), shape, "{}, param `{name}`: shape", self.what());
                (name.clone(), t)
            })
            .collect()
    }

    /// Leaf copies of `params` that require gradients.
    fn leaves(params: &[NamedParam]) -> Vec<NamedParam> {
        params.iter().map(|(n, t)| (n.clone(), t.detach().copy().set_requires_grad(true))).collect()
    }

    fn optimizer(&self, params: &[NamedParam]) -> Box<dyn Optimizer> {
        let shared = params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        create(&self.case.optimizer, &self.case.hparams, shared)
            .unwrap_or_else(|e| panic!("{}: {e}", self.what()))
    }

    /// Steps `ks` with the fixture's gradients, the learning rate of step k taken from `lrs[k]`.
    fn steps(&self, opt: &mut dyn Optimizer, params: &[NamedParam], lrs: &[f64], ks: Range<usize>) {
        for k in ks {
            opt.zero_grad();
            for ((_, p), g) in params.iter().zip(&self.grads[k]) {
                // d/dp Σ p·g = g exactly, accumulated onto a zeroed (or absent) gradient.
                (p * g).sum(p.kind()).backward();
            }
            if let Some(estimates) = self.hessians.get(&k) {
                let estimates = estimates.iter().map(Tensor::shallow_clone).collect();
                opt.update_hessian(estimates).unwrap_or_else(|e| panic!("{}, step {k}: {e}", self.what()));
            }
            opt.step(lrs[k]).unwrap_or_else(|e| panic!("{}, step {k}: {e}", self.what()));
        }
    }

    /// Runs all steps from the initial parameters and returns the final ones.
    fn trajectory(&self, lrs: &[f64]) -> Vec<NamedParam> {
        let params = Self::leaves(&self.params("init"));
        let mut opt = self.optimizer(&params);
        self.steps(opt.as_mut(), &params, lrs, 0..self.case.steps);
        params
    }

    fn tolerance(&self) -> f64 {
        match self.dtype {
            "f64" => 1e-9,
            "f32" => 1e-5,
            d => panic!("unexpected dtype {d}"),
        }
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.detach() - b.detach()).abs().max().double_value(&[])
}

/// `max|a − b| / max|b|`: the relative error of `a` against the reference `b`, per tensor.
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    max_abs_diff(a, b) / b.detach().abs().max().double_value(&[])
}

#[test]
fn final_parameters_match_the_reference() {
    let fixture = Fixture::load();
    let st = fixture.tensors();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut worst = [("", 0.0f64), ("", 0.0f64)];
    for case in &fixture.cases {
        assert_eq!(case.steps, 100, "case `{}`: 100-step trajectories", case.name);
        for dtype in &case.dtypes {
            let run = Run::new(&st, case, dtype);
            let tol = run.tolerance();
            let lrs = run.lrs();
            let init = run.params("init");
            let expected = run.params("final");
            let got = run.trajectory(&lrs);
            let mut worst_case = 0.0f64;
            for (((name, e), (_, g)), (_, i)) in expected.iter().zip(&got).zip(&init) {
                // A reference tensor of tiny magnitude would make the relative error meaningless.
                let size = e.abs().max().double_value(&[]);
                assert!(size > 0.01, "{}, param `{name}`: max|ref| = {size}", run.what());
                // The fixture must be sensitive: every parameter moves by far more than the tolerance.
                let moved = rel_err(i, e);
                assert!(
                    moved > 100.0 * tol,
                    "{}, param `{name}`: the reference moved it by only {moved:e} (relative)",
                    run.what()
                );
                let err = rel_err(g, e);
                worst_case = worst_case.max(err);
                if err.is_nan() || err > tol {
                    failures.push(format!(
                        "{}, param `{name}`: max|vrl − ref| / max|ref| = {err:e} > {tol:e}",
                        run.what()
                    ));
                }
                checked += 1;
            }
            println!("{}: relative error {worst_case:.2e}", run.what());
            let slot = &mut worst[usize::from(dtype == "f32")];
            if worst_case > slot.1 {
                *slot = (&case.name, worst_case);
            }
            // Sanity: a wrong schedule (the first step's rate throughout) must fail the comparison, so
            // the per-step rate is really what is being checked; where the optimizer ignores the rate,
            // a doubled rate must change nothing.
            if case.lr_sensitive {
                let wrong = run.trajectory(&vec![lrs[0]; lrs.len()]);
                let off =
                    expected.iter().zip(&wrong).map(|((_, e), (_, w))| rel_err(w, e)).fold(0.0, f64::max);
                assert!(
                    off > 10.0 * tol,
                    "{}: a constant learning rate went unnoticed ({off:e})",
                    run.what()
                );
            } else {
                let doubled = run.trajectory(&lrs.iter().map(|lr| 2.0 * lr).collect::<Vec<_>>());
                for ((name, a), (_, b)) in got.iter().zip(&doubled) {
                    assert!(a.equal(b), "{}, param `{name}`: the ignored rate made a difference", run.what());
                }
            }
        }
    }
    println!(
        "worst: float64 {:.2e} ({}), float32 {:.2e} ({})",
        worst[0].1, worst[0].0, worst[1].1, worst[1].0
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} parameters differ from the reference:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 20 * 2 * 3, "only {checked} parameters checked");
}

#[test]
fn state_round_trips_mid_trajectory() {
    let fixture = Fixture::load();
    let st = fixture.tensors();
    for case in &fixture.cases {
        for dtype in &case.dtypes {
            let run = Run::new(&st, case, dtype);
            let lrs = run.lrs();
            let (steps, half) = (case.steps, case.steps / 2);
            let straight = run.trajectory(&lrs);

            // First half, then a checkpoint: deep copies of the parameters and the state.
            let first = Run::leaves(&run.params("init"));
            let mut opt = run.optimizer(&first);
            run.steps(opt.as_mut(), &first, &lrs, 0..half);
            let state: HashMap<String, Tensor> =
                opt.state().into_iter().map(|(k, t)| (k, t.detach().copy())).collect();
            assert_eq!(state["step"].int64_value(&[]), half as i64, "{}: state `step`", run.what());
            let resumed = Run::leaves(&first);
            drop(opt);
            drop(first);

            // Second half on a fresh optimizer.
            let mut opt = run.optimizer(&resumed);
            opt.load_state(&state).unwrap_or_else(|e| panic!("{}: load_state: {e}", run.what()));
            run.steps(opt.as_mut(), &resumed, &lrs, half..steps);

            for ((name, a), (_, b)) in straight.iter().zip(&resumed) {
                // Same operations on the same numbers: bitwise equal, in float32 as in float64.
                assert!(
                    a.detach().equal(&b.detach()),
                    "{}, param `{name}`: resumed run differs from the straight one by {:e}",
                    run.what(),
                    max_abs_diff(a, b)
                );
            }
        }
    }
}
