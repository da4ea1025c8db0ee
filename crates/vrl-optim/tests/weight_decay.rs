//! Weight decay, optimizer by optimizer, against the closed form of its reference.
//!
//! For every optimizer (and every weight-decay mode it has), one step with `weight_decay = λ` (run A)
//! is compared with one step of the same optimizer with `weight_decay = 0` (run B) from the same
//! parameters and the same state — fresh, and after three warm-up steps (the state is copied into both
//! with `load_state`). What A must equal follows from the reference's formula:
//!
//! * coupled L2 (`torch.optim`'s `grad.add(param, alpha=λ)`): A(θ, g) = B(θ, g + λθ);
//! * decoupled (`θ ← θ (1 − η λ r)` before an update that never sees the undecayed θ): A(θ, g) =
//!   B(θ (1 − η λ r), g), with r = 1, except SGDP/AdamP's `wd_ratio` (divided by 1 − μ for SGDP) where
//!   the projection is taken;
//! * Adan's proximal form: A = B / (1 + η λ);
//! * AdaFactor's decay scaled by the effective rate α = η max(ε₂, RMS(θ)) of the undecayed θ:
//!   A = B − α λ θ;
//! * NovoGrad's coupled decay added after the normalisation: A = B − η a λ θ (a = 1 at the first step,
//!   1 − β₁ later with `grad_averaging`, 1 without);
//! * LARS's decay inside the trust ratio: the decayed gradient r_λ (g + λθ) with
//!   r_λ = κ‖θ‖ / (‖g‖ + λ‖θ‖) against r₀ g, through the momentum buffer.
//!
//! Tensors of fewer than two dimensions never decay: the bias is bit-identical in A and B. Every case
//! also checks that the decay changed the step by far more than the tolerance.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};
use vrl_optim::{HParams, HValue, NamedParam, Optimizer, create};

const WD: f64 = 0.1;
const LR: f64 = 0.05;
const TOL: f64 = 1e-12;

/// What the step with decay must equal, given the step without.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// A(θ, g) = B(θ, g + λθ).
    Coupled,
    /// A(θ, g) = B(θ (1 − η λ r), g); `r` for a projected tensor (SGDP/AdamP; 1 elsewhere), and for
    /// the others.
    Decoupled { projected: f64, other: f64 },
    /// A = B / (1 + η λ).
    Proximal,
    /// A = B − η max(ε₂, RMS(θ)) λ θ.
    AdaFactorScaled { eps2: f64 },
    /// A = B − η a λ θ, a = `first` at the first step, `later` afterwards.
    NovoGradCoupled { first: f64, later: f64 },
    /// A = B − η c (r_λ (g + λθ) − r₀ g), c = 1 − τ (momentum), 1 + μ(1 − τ) (Nesterov) or 1 (none).
    Lars { trust: f64, c: f64 },
}

const DECOUPLED: Rule = Rule::Decoupled { projected: 1.0, other: 1.0 };

/// (optimizer, hyper-parameters besides `weight_decay`, rule, whether the gradient of the 4-d tensor is
/// orthogonal to it and that of the matrix nearly parallel, so that SGDP/AdamP project exactly one).
fn cases() -> Vec<(&'static str, Vec<&'static str>, Rule, bool)> {
    vec![
        ("sgd", vec![], Rule::Coupled, false),
        ("sgd", vec!["momentum=0.9"], Rule::Coupled, false),
        ("sgd", vec!["momentum=0.9", "nesterov=true"], Rule::Coupled, false),
        ("adam", vec![], Rule::Coupled, false),
        ("adam", vec!["amsgrad=true"], Rule::Coupled, false),
        ("adamax", vec![], Rule::Coupled, false),
        ("rmsprop", vec!["momentum=0.9", "centered=true"], Rule::Coupled, false),
        ("adagrad", vec!["lr_decay=0.01"], Rule::Coupled, false),
        ("adadelta", vec![], Rule::Coupled, false),
        ("nadam", vec![], Rule::Coupled, false),
        ("nadam", vec!["decoupled_weight_decay=true"], DECOUPLED, false),
        ("radam", vec![], Rule::Coupled, false),
        ("radam", vec!["decoupled_weight_decay=true"], DECOUPLED, false),
        ("adamw", vec![], DECOUPLED, false),
        ("adamw", vec!["amsgrad=true"], DECOUPLED, false),
        ("lion", vec![], DECOUPLED, false),
        ("lamb", vec![], DECOUPLED, false),
        ("adabelief", vec![], DECOUPLED, false),
        ("adabound", vec![], DECOUPLED, false),
        ("sophia", vec!["update_period=2"], DECOUPLED, false),
        ("adan", vec![], Rule::Proximal, false),
        ("adan", vec!["weight_decouple=true"], DECOUPLED, false),
        ("novograd", vec![], Rule::NovoGradCoupled { first: 1.0, later: 1.0 }, false),
        (
            "novograd",
            vec!["grad_averaging=true"],
            Rule::NovoGradCoupled { first: 1.0, later: 1.0 - 0.95 },
            false,
        ),
        ("novograd", vec!["weight_decouple=true"], DECOUPLED, false),
        // eps = 0: the projection's unit vector θ / (‖θ‖ + ε) is then exactly scale invariant.
        (
            "sgdp",
            vec!["momentum=0.9", "eps=0", "wd_ratio=0.2"],
            Rule::Decoupled { projected: 0.2 / (1.0 - 0.9), other: 1.0 / (1.0 - 0.9) },
            true,
        ),
        ("adamp", vec!["eps=0", "wd_ratio=0.2"], Rule::Decoupled { projected: 0.2, other: 1.0 }, true),
        ("adamp", vec!["eps=0", "nesterov=true"], Rule::Decoupled { projected: 0.1, other: 1.0 }, true),
        ("lars", vec!["momentum=0.9", "trust_coefficient=0.01"], Rule::Lars { trust: 0.01, c: 1.0 }, false),
        (
            "lars",
            vec!["momentum=0.8", "dampening=0.1", "nesterov=true", "trust_coefficient=0.01"],
            Rule::Lars { trust: 0.01, c: 1.0 + 0.8 * 0.9 },
            false,
        ),
        ("lars", vec!["momentum=0", "trust_coefficient=0.01"], Rule::Lars { trust: 0.01, c: 1.0 }, false),
        ("adafactor", vec![], Rule::AdaFactorScaled { eps2: 1e-3 }, false),
        ("adafactor", vec!["scale_parameter=false"], DECOUPLED, false),
    ]
}

fn hparams(items: &[&str], wd: f64) -> HParams {
    let mut h = HParams::parse(items).expect("hyper-parameters");
    h.0.insert("lr".into(), HValue::Num(LR));
    h.0.insert("weight_decay".into(), HValue::Num(wd));
    h
}

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Double, Device::Cpu))
}

fn leaves(params: &[NamedParam]) -> Vec<NamedParam> {
    params.iter().map(|(n, t)| (n.clone(), t.detach().copy().set_requires_grad(true))).collect()
}

fn shared(params: &[NamedParam]) -> Vec<NamedParam> {
    params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
}

/// One step of `opt` with gradients `grads` (and a fixed Hessian estimate where one is due).
fn step(opt: &mut dyn Optimizer, params: &[NamedParam], grads: &[Tensor]) {
    opt.zero_grad();
    for ((_, p), g) in params.iter().zip(grads) {
        (p * g).sum(Kind::Double).backward();
    }
    if opt.hessian_due() {
        // Positive, varied, and the same whatever the parameters (A and B start from different ones).
        let estimates = (params.iter())
            .map(|(_, p)| {
                Tensor::arange(p.numel() as i64, (Kind::Double, Device::Cpu)).reshape(p.size()) * 0.1 + 1.0
            })
            .collect();
        opt.update_hessian(estimates).expect("Hessian estimate");
    }
    opt.step(LR).unwrap_or_else(|e| panic!("{}: {e}", opt.name()));
}

/// `g` without its component along each output channel of `p` (as for a weight followed by
/// normalisation), so that SGDP/AdamP take the projection.
fn orthogonal(g: &Tensor, p: &Tensor) -> Tensor {
    let (gv, pv) = (g.reshape([g.size()[0], -1]), p.detach().reshape([p.size()[0], -1]));
    let along = (&gv * &pv).sum_dim_intlist(1, true, Kind::Double)
        / (&pv * &pv).sum_dim_intlist(1, true, Kind::Double);
    (gv - along * pv).reshape(g.size())
}

/// Gradients for the parameters `[w (matrix), c (4-d), b (bias)]`.
fn gradients(params: &[NamedParam], projection: bool) -> Vec<Tensor> {
    params
        .iter()
        .map(|(name, p)| match (projection, name.as_str()) {
            // Nearly parallel to θ: SGDP/AdamP do not project.
            (true, "w") => p.detach() + randn(&p.size()) * 0.1,
            (true, "c") => orthogonal(&randn(&p.size()), p),
            _ => randn(&p.size()),
        })
        .collect()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
}

fn norm(t: &Tensor) -> f64 {
    t.norm().double_value(&[])
}

/// The parameters A must end with, from where B ended, the undecayed θ and the gradient g.
fn expected(rule: Rule, first: bool, theta: &Tensor, g: &Tensor, b_end: &Tensor) -> Tensor {
    match rule {
        Rule::Coupled | Rule::Decoupled { .. } => b_end.shallow_clone(),
        Rule::Proximal => b_end / (1.0 + LR * WD),
        Rule::AdaFactorScaled { eps2 } => {
            let rms = norm(theta) / (theta.numel() as f64).sqrt();
            b_end - theta * (LR * eps2.max(rms) * WD)
        }
        Rule::NovoGradCoupled { first: a1, later } => {
            let a = if first { a1 } else { later };
            b_end - theta * (LR * a * WD)
        }
        Rule::Lars { trust, c } => {
            let (pn, gn) = (norm(theta), norm(g));
            let r_decay = trust * pn / (gn + WD * pn);
            let r_plain = trust * pn / gn;
            let delta = (g + theta * WD) * r_decay - g * r_plain;
            b_end - delta * (LR * c)
        }
    }
}

#[test]
fn weight_decay_changes_one_step_as_the_reference_formula_says() {
    tch::manual_seed(11);
    let mut report = Vec::new();
    for (optimizer, items, rule, projection) in cases() {
        for warm in [0usize, 3] {
            let what = format!("{optimizer} {items:?}, after {warm} steps");
            let init: Vec<NamedParam> = vec![
                ("w".into(), randn(&[3, 4])),
                ("c".into(), randn(&[2, 3, 2, 2])),
                ("b".into(), randn(&[4])),
            ];
            // Warm-up without decay; its parameters and state are the common start of A and B.
            let warm_params = leaves(&init);
            let mut warmer =
                create(optimizer, &hparams(&items, 0.0), shared(&warm_params)).expect("optimizer");
            for _ in 0..warm {
                let grads = gradients(&warm_params, projection);
                step(warmer.as_mut(), &warm_params, &grads);
            }
            let state: HashMap<String, Tensor> =
                warmer.state().into_iter().map(|(k, t)| (k, t.detach().copy())).collect();
            // Small against λθ, so that the decay flips signs even where the step is nearly sign(g)
            // (Adam's and Lion's first steps).
            let grads: Vec<Tensor> = gradients(&warm_params, projection).iter().map(|g| g * 0.1).collect();

            // A: with decay.
            let a_params = leaves(&warm_params);
            let mut a = create(optimizer, &hparams(&items, WD), shared(&a_params)).expect("optimizer");
            // B: without, from a start and with gradients transformed by the rule.
            let b_start: Vec<NamedParam> = (warm_params.iter())
                .map(|(n, p)| {
                    let theta = p.detach();
                    let t = match rule {
                        Rule::Decoupled { projected, other } if theta.dim() >= 2 => {
                            let r = if projection && n == "c" { projected } else { other };
                            &theta * (1.0 - LR * WD * r)
                        }
                        _ => theta.copy(),
                    };
                    (n.clone(), t)
                })
                .collect();
            let b_grads: Vec<Tensor> = (warm_params.iter().zip(&grads))
                .map(|((_, p), g)| match rule {
                    Rule::Coupled if p.dim() >= 2 => g + p.detach() * WD,
                    _ => g.shallow_clone(),
                })
                .collect();
            let b_params = leaves(&b_start);
            let mut b = create(optimizer, &hparams(&items, 0.0), shared(&b_params)).expect("optimizer");
            // C: without decay and without any transformation (to show that the decay matters).
            let c_params = leaves(&warm_params);
            let mut c = create(optimizer, &hparams(&items, 0.0), shared(&c_params)).expect("optimizer");
            if warm > 0 {
                for opt in [&mut a, &mut b, &mut c] {
                    opt.load_state(&state).unwrap_or_else(|e| panic!("{what}: {e}"));
                }
            }
            step(a.as_mut(), &a_params, &grads);
            step(b.as_mut(), &b_params, &b_grads);
            step(c.as_mut(), &c_params, &grads);

            for (i, (name, a_end)) in a_params.iter().enumerate() {
                let (theta, g) = (warm_params[i].1.detach(), &grads[i]);
                let (b_end, c_end) = (b_params[i].1.detach(), c_params[i].1.detach());
                if theta.dim() < 2 {
                    assert!(a_end.equal(&c_end), "{what}: `{name}` (1-d) was decayed");
                    continue;
                }
                let want = expected(rule, warm == 0, &theta, g, &b_end);
                let err = rel_err(a_end, &want);
                let effect = rel_err(a_end, &c_end);
                report.push(format!("{what}, `{name}`: error {err:.1e}, effect of the decay {effect:.1e}"));
                assert!(
                    err <= TOL,
                    "{what}, `{name}`: max|A − expected| / max|expected| = {err:e} > {TOL:e}"
                );
                assert!(
                    effect > 1e4 * TOL,
                    "{what}, `{name}`: the decay changed the step by only {effect:e}"
                );
            }
        }
    }
    println!("{}", report.join("\n"));
}
