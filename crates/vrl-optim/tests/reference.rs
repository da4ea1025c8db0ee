//! vrl's optimizers against their references (`torch.optim` for SGD, AdamW, Adam, RMSprop, Adagrad,
//! Adadelta, Adamax, NAdam, RAdam; `pytorch_optimizer` 4.1.0 for the others), step for step.
//!
//! The fixture `tests/fixtures/optim_reference.safetensors` is written by `python/optim_reference.py`
//! (`$VRL_PYTHON python/optim_reference.py`; its docstring describes the layout): for each case and
//! dtype, the initial parameters, the gradient of every step, the per-step learning rates and torch's
//! final parameters. Here the same gradients are fed to `vrl_optim::create(…)` and the final
//! parameters compared (`cargo test -p vrl-optim --test reference -- --nocapture` prints the largest
//! difference of each case).

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
    lrs: Vec<f64>,
    steps: usize,
    params: Vec<(String, Vec<i64>)>,
    dtypes: Vec<String>,
    /// The steps given a Hessian-diagonal estimate (`{case}/{dtype}/hessian/{k}/{param}`), for SophiaH.
    #[serde(default)]
    hessian_steps: Vec<usize>,
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
}

impl Run<'_> {
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

    /// The learning rate of each step, exact (the metadata's decimal copy is only checked against it).
    fn lrs(&self) -> Vec<f64> {
        let lrs = Vec::<f64>::try_from(self.tensor(&format!("{}/lrs", self.case.name))).expect("lrs");
        assert_eq!(lrs.len(), self.case.steps, "{}: lrs", self.what());
        for (a, b) in lrs.iter().zip(&self.case.lrs) {
            assert!((a - b).abs() <= 1e-15 * a.abs(), "{}: lrs in tensor and metadata differ", self.what());
        }
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
            for (name, p) in params {
                let g = self.tensor(&format!("{}/{}/grad/{k}/{name}", self.case.name, self.dtype));
                // d/dp Σ p·g = g exactly, accumulated onto a zeroed (or absent) gradient.
                (p * g).sum(p.kind()).backward();
            }
            if self.case.hessian_steps.contains(&k) {
                let estimates = (params.iter())
                    .map(|(name, _)| {
                        self.tensor(&format!("{}/{}/hessian/{k}/{name}", self.case.name, self.dtype))
                    })
                    .collect();
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
            "f64" => 1e-12,
            "f32" => 1e-5,
            d => panic!("unexpected dtype {d}"),
        }
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.detach() - b.detach()).abs().max().double_value(&[])
}

#[test]
fn final_parameters_match_torch() {
    let fixture = Fixture::load();
    let st = fixture.tensors();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &fixture.cases {
        for dtype in &case.dtypes {
            let run = Run { st: &st, case, dtype };
            let tol = run.tolerance();
            let lrs = run.lrs();
            let init = run.params("init");
            let expected = run.params("final");
            let got = run.trajectory(&lrs);
            let mut worst_case = 0.0f64;
            for (((name, e), (_, g)), (_, i)) in expected.iter().zip(&got).zip(&init) {
                // The fixture must be sensitive: every parameter moves by far more than the tolerance.
                let moved = max_abs_diff(e, i);
                assert!(
                    moved > 100.0 * tol,
                    "{}, param `{name}`: torch moved it by only {moved:e}",
                    run.what()
                );
                let diff = max_abs_diff(e, g);
                worst_case = worst_case.max(diff);
                if diff.is_nan() || diff > tol {
                    failures.push(format!(
                        "{}, param `{name}`: max |vrl - torch| = {diff:e} > {tol:e}",
                        run.what()
                    ));
                }
                checked += 1;
            }
            println!("{}: max |vrl - reference| = {worst_case:e}", run.what());
            // Sanity: a wrong schedule (the first step's rate throughout) must fail the comparison,
            // so the per-step rate is really what is being checked.
            let wrong = run.trajectory(&vec![lrs[0]; lrs.len()]);
            let worst =
                expected.iter().zip(&wrong).map(|((_, e), (_, w))| max_abs_diff(e, w)).fold(0.0, f64::max);
            assert!(
                worst > 10.0 * tol,
                "{}: a constant learning rate went unnoticed ({worst:e})",
                run.what()
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} parameters differ from torch:\n{}",
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
            let run = Run { st: &st, case, dtype };
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
