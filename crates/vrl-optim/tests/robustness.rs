//! Every optimizer, with each of its modes, on gradients that are zero, NaN or infinite, and with bad
//! learning rates.
//!
//! * Zero gradients from the start leave the parameters bit-identical (no weight decay) and the state
//!   finite; zero gradients after a warm-up keep parameters and state finite, and no step is larger
//!   than the largest step of the warm-up (the remaining momentum decays instead of blowing up).
//! * A gradient holding NaN or ±infinity in one entry is refused with `OptimError::NonFinite` naming
//!   the parameter; parameters and state are bit-identical afterwards, and the next finite step is
//!   exactly the step the optimizer would have taken had it never seen the bad gradient. The same holds
//!   for optimizers built with parameter groups, and for a non-finite Hessian estimate (Sophia).
//! * A negative or non-finite learning rate given to `step` is refused before anything changes.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};
use vrl_optim::{HParams, HValue, NamedParam, OptimError, Optimizer, REGISTRY, create, create_with_groups};

/// Each optimizer with its defaults and with the settings that change its code path.
fn variants() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = REGISTRY.iter().map(|e| (e.name, vec![])).collect();
    out.extend([
        ("sgd", vec!["momentum=0.9", "nesterov=true"]),
        ("sgd", vec!["momentum=0.9", "dampening=0.5"]),
        ("adam", vec!["amsgrad=true"]),
        ("adamw", vec!["amsgrad=true"]),
        ("rmsprop", vec!["momentum=0.9", "centered=true"]),
        ("adagrad", vec!["lr_decay=0.1", "initial_accumulator_value=0.1"]),
        ("nadam", vec!["decoupled_weight_decay=true"]),
        ("radam", vec!["decoupled_weight_decay=true"]),
        ("adan", vec!["weight_decouple=true"]),
        ("novograd", vec!["grad_averaging=true"]),
        ("sgdp", vec!["momentum=0.9", "nesterov=true"]),
        ("adamp", vec!["nesterov=true"]),
        ("lars", vec!["momentum=0.9", "nesterov=true"]),
        ("lars", vec!["momentum=0"]),
        ("adafactor", vec!["relative_step=true"]),
        ("adafactor", vec!["scale_parameter=false", "betas=0,0.999"]),
        ("sophia", vec!["update_period=1"]),
    ]);
    out
}

const LR: f64 = 0.01;

fn hparams(optimizer: &str, items: &[&str], wd: f64) -> HParams {
    let mut h = HParams::parse(items).expect("hyper-parameters");
    h.0.insert("lr".into(), HValue::Num(LR));
    let entry = REGISTRY.iter().find(|e| e.name == optimizer).expect("registered");
    if (entry.defaults)().0.contains_key("weight_decay") {
        h.0.insert("weight_decay".into(), HValue::Num(wd));
    }
    h
}

/// A matrix, a conv-shaped tensor and a bias.
fn params(seed: i64) -> Vec<NamedParam> {
    tch::manual_seed(seed);
    let opts = (Kind::Double, Device::Cpu);
    [("w", vec![3i64, 4]), ("c", vec![2, 3, 2, 2]), ("b", vec![4])]
        .into_iter()
        .map(|(n, s)| (n.to_string(), Tensor::randn(s, opts).set_requires_grad(true)))
        .collect()
}

fn shared(params: &[NamedParam]) -> Vec<NamedParam> {
    params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
}

fn snapshot(params: &[NamedParam]) -> Vec<Tensor> {
    params.iter().map(|(_, p)| p.detach().copy()).collect()
}

fn state_snapshot(opt: &dyn Optimizer) -> HashMap<String, Tensor> {
    opt.state().into_iter().map(|(k, t)| (k, t.detach().copy())).collect()
}

fn finite(t: &Tensor) -> bool {
    t.isfinite().all().int64_value(&[]) == 1
}

/// Puts `grads` on the parameters (as a backward pass would) and gives a Hessian estimate where due.
fn feed(opt: &mut dyn Optimizer, params: &[NamedParam], grads: &[Tensor]) {
    opt.zero_grad();
    for ((_, p), g) in params.iter().zip(grads) {
        (p * g).sum(Kind::Double).backward();
    }
    if opt.hessian_due() {
        let estimates = params.iter().map(|(_, p)| p.ones_like() * 2.0).collect();
        opt.update_hessian(estimates).expect("Hessian estimate");
    }
}

fn random_grads(params: &[NamedParam]) -> Vec<Tensor> {
    params.iter().map(|(_, p)| p.randn_like()).collect()
}

fn zeros(params: &[NamedParam]) -> Vec<Tensor> {
    params.iter().map(|(_, p)| p.zeros_like()).collect()
}

fn largest_move(before: &[Tensor], params: &[NamedParam]) -> f64 {
    (before.iter().zip(params))
        .map(|(b, (_, p))| (p.detach() - b).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

#[test]
fn zero_gradients_from_the_start_change_nothing() {
    for (optimizer, items) in variants() {
        let what = format!("{optimizer} {items:?}");
        let ps = params(1);
        let start = snapshot(&ps);
        let mut opt = create(optimizer, &hparams(optimizer, &items, 0.0), shared(&ps)).expect("optimizer");
        for _ in 0..5 {
            feed(opt.as_mut(), &ps, &zeros(&ps));
            opt.step(LR).unwrap_or_else(|e| panic!("{what}: {e}"));
        }
        for ((name, p), s) in ps.iter().zip(&start) {
            assert!(p.detach().equal(s), "{what}: zero gradients moved `{name}`");
        }
        for (k, t) in opt.state() {
            assert!(finite(&t), "{what}: state `{k}` is not finite after zero gradients");
        }
    }
}

#[test]
fn zero_gradients_after_warm_up_keep_the_state_sane() {
    let mut report = Vec::new();
    for (optimizer, items) in variants() {
        let what = format!("{optimizer} {items:?}");
        let ps = params(2);
        let mut opt = create(optimizer, &hparams(optimizer, &items, 0.0), shared(&ps)).expect("optimizer");
        let mut warm = 0.0f64;
        for _ in 0..10 {
            let before = snapshot(&ps);
            feed(opt.as_mut(), &ps, &random_grads(&ps));
            opt.step(LR).unwrap_or_else(|e| panic!("{what}: {e}"));
            warm = warm.max(largest_move(&before, &ps));
        }
        let mut idle = 0.0f64;
        for k in 0..100 {
            let before = snapshot(&ps);
            feed(opt.as_mut(), &ps, &zeros(&ps));
            opt.step(LR).unwrap_or_else(|e| panic!("{what}: zero-gradient step {k}: {e}"));
            idle = idle.max(largest_move(&before, &ps));
            for (name, p) in &ps {
                assert!(finite(p), "{what}: `{name}` not finite after zero-gradient step {k}");
            }
        }
        for (k, t) in opt.state() {
            assert!(finite(&t), "{what}: state `{k}` is not finite after zero gradients");
        }
        report.push(format!("{what}: largest step {warm:.2e} with gradients, {idle:.2e} without"));
        assert!(
            idle <= warm,
            "{what}: a zero-gradient step ({idle:e}) is larger than any warm-up step ({warm:e})"
        );
    }
    println!("{}", report.join("\n"));
}

/// Builds the optimizer plainly or as two parameter groups (`b` without weight decay).
fn build(optimizer: &str, items: &[&str], ps: &[NamedParam], grouped: bool) -> Box<dyn Optimizer> {
    let h = hparams(optimizer, items, 0.1);
    match grouped {
        false => create(optimizer, &h, shared(ps)),
        true => create_with_groups(optimizer, &h, shared(ps), &[false, false, true]),
    }
    .unwrap_or_else(|e| panic!("{optimizer} {items:?}: {e}"))
}

fn assert_same_state(what: &str, a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) {
    assert_eq!(a.len(), b.len(), "{what}: number of state tensors");
    for (k, t) in a {
        let u = b.get(k).unwrap_or_else(|| panic!("{what}: state `{k}` missing"));
        assert!(t.equal(u), "{what}: state `{k}` changed");
    }
}

#[test]
fn a_non_finite_gradient_is_refused_and_changes_nothing() {
    for (optimizer, items) in variants() {
        for grouped in [false, true] {
            let what = format!("{optimizer} {items:?}{}", if grouped { ", grouped" } else { "" });
            // Twins: `opt` meets the bad gradients, `twin` never does.
            let (ps, twin_ps) = (params(3), params(3));
            let mut opt = build(optimizer, &items, &ps, grouped);
            let mut twin = build(optimizer, &items, &twin_ps, grouped);
            tch::manual_seed(4);
            for _ in 0..3 {
                let grads = random_grads(&ps);
                for (o, p) in [(&mut opt, &ps), (&mut twin, &twin_ps)] {
                    feed(o.as_mut(), p, &grads);
                    o.step(LR).unwrap_or_else(|e| panic!("{what}: {e}"));
                }
            }
            for (bad, index) in [(f64::NAN, 0usize), (f64::INFINITY, 2), (f64::NEG_INFINITY, 1)] {
                let (params_before, state_before) = (snapshot(&ps), state_snapshot(opt.as_ref()));
                let grads = random_grads(&ps);
                let _ = grads[index].view(-1).get(1).fill_(bad);
                feed(opt.as_mut(), &ps, &grads);
                let name = &ps[index].0;
                match opt.step(LR) {
                    Err(OptimError::NonFinite { optimizer: o, param }) => {
                        assert_eq!((o.as_str(), &param), (optimizer, name), "{what}: error names")
                    }
                    other => panic!("{what}: a gradient with {bad} in `{name}` gave {other:?}"),
                }
                for ((n, p), b) in ps.iter().zip(&params_before) {
                    assert!(
                        p.detach().equal(b),
                        "{what}: the refused step ({bad} in `{name}`) changed `{n}`"
                    );
                }
                assert_same_state(&what, &state_before, &state_snapshot(opt.as_ref()));
                // The next finite step is the one the optimizer would have taken anyway.
                let grads = random_grads(&ps);
                for (o, p) in [(&mut opt, &ps), (&mut twin, &twin_ps)] {
                    feed(o.as_mut(), p, &grads);
                    o.step(LR).unwrap_or_else(|e| panic!("{what}: {e}"));
                }
                for ((n, a), (_, b)) in ps.iter().zip(&twin_ps) {
                    assert!(a.detach().equal(&b.detach()), "{what}: `{n}` differs from the twin after {bad}");
                }
                assert_same_state(&what, &state_snapshot(twin.as_ref()), &state_snapshot(opt.as_ref()));
            }
        }
    }
}

#[test]
fn a_non_finite_hessian_estimate_is_refused() {
    // In the grouped optimizer `c` is in the decayed group and `b` in the other: neither group may
    // keep its part of a refused set of estimates.
    for (grouped, index) in [(false, 1usize), (true, 1), (true, 2)] {
        let ps = params(5);
        let mut opt = build("sophia", &["update_period=2"], &ps, grouped);
        let before = snapshot(&ps);
        assert!(opt.hessian_due());
        let estimates: Vec<Tensor> = ps.iter().map(|(_, p)| p.ones_like()).collect();
        let _ = estimates[index].view(-1).get(3).fill_(f64::NAN);
        let err = opt.update_hessian(estimates).expect_err("a NaN estimate must be refused").to_string();
        assert!(err.contains(&format!("`{}`", ps[index].0)) && err.contains("not finite"), "{err}");
        // The refused estimates are not used: the due step still asks for one, and changes nothing.
        opt.zero_grad();
        for (_, p) in &ps {
            p.sum(Kind::Double).backward();
        }
        let err = opt.step(LR).expect_err("no estimate was taken").to_string();
        assert!(err.contains("needs a Hessian-diagonal estimate"), "{err}");
        for ((n, p), b) in ps.iter().zip(&before) {
            assert!(p.detach().equal(b), "`{n}` changed");
        }
        let estimates: Vec<Tensor> = ps.iter().map(|(_, p)| p.ones_like()).collect();
        opt.update_hessian(estimates).expect("finite estimates");
        opt.step(LR).expect("a step with an estimate");
    }
}

#[test]
fn a_bad_learning_rate_is_refused() {
    for (optimizer, items) in variants() {
        let ps = params(6);
        let mut opt = build(optimizer, &items, &ps, false);
        feed(opt.as_mut(), &ps, &random_grads(&ps));
        let (params_before, state_before) = (snapshot(&ps), state_snapshot(opt.as_ref()));
        for lr in [-0.01, f64::NAN, f64::INFINITY] {
            let err = opt.step(lr).expect_err("a bad learning rate must be refused").to_string();
            assert!(
                err.contains(&format!("`{optimizer}`"))
                    && err.contains("`lr`")
                    && err.contains(&lr.to_string()),
                "{optimizer}: {err}"
            );
        }
        for ((n, p), b) in ps.iter().zip(&params_before) {
            assert!(p.detach().equal(b), "{optimizer}: a refused step changed `{n}`");
        }
        assert_same_state(optimizer, &state_before, &state_snapshot(opt.as_ref()));
        opt.step(0.0).expect("a zero learning rate is fine");
        // A negative rate among the hyper-parameters is refused when the optimizer is built.
        let err = create(optimizer, &HParams::parse(&["lr=-0.1"]).expect("parse"), shared(&ps))
            .err()
            .expect("lr=-0.1 must be refused")
            .to_string();
        assert!(err.contains("`lr`") && err.contains("-0.1"), "{optimizer}: {err}");
    }
}
