//! Sophia's Hessian-diagonal estimator (Hutchinson's, `hutchinson_estimate`: the mean over probes z of
//! z ⊙ (H z), one Hessian-vector product by double backward per probe) on quadratics whose Hessian is
//! known, alone and through the optimizer's running average `hessian_moment`.
//!
//! For L(θ) = ½ θᵀAθ with a symmetric A, H = A and z ⊙ (A z) has mean diag(A) for any probe with
//! E[z zᵀ] = I; entry i has variance Σ_{j≠i} A_ij² for Rademacher probes and 2 A_ii² + Σ_{j≠i} A_ij²
//! for Gaussian ones (the reference's default), so the mean of N probes is within a few σ_i/√N of
//! A_ii, and exact for Rademacher probes when A is diagonal.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};
use vrl_optim::{HParams, HessianNoise, Optimizer, create, hutchinson_estimate};

const OPTS: (Kind, Device) = (Kind::Double, Device::Cpu);

/// A symmetric 6×6 matrix with off-diagonal couplings (one diagonal entry is negative).
fn matrix() -> Tensor {
    tch::manual_seed(21);
    let b = Tensor::randn([6, 6], OPTS) * 0.5;
    (&b + b.tr()) * 0.5 + Tensor::from_slice(&[1.0, 2.0, 3.0, 0.5, 4.0, 1.5]).diag(0)
}

/// The per-entry standard deviation of one probe's z ⊙ (A z).
fn probe_std(a: &Tensor, noise: HessianNoise) -> Tensor {
    let diag = a.diagonal(0, 0, 1);
    let off = a.square().sum_dim_intlist(1, false, Kind::Double) - diag.square();
    match noise {
        HessianNoise::Rademacher => off.sqrt(),
        HessianNoise::Gaussian => (off + diag.square() * 2.0).sqrt(),
    }
}

/// ½ θᵀAθ and its gradient with a graph (for double backward).
fn quadratic(a: &Tensor, theta: &Tensor) -> (Tensor, Vec<Tensor>) {
    let loss = theta.dot(&a.mv(theta)) * 0.5;
    let grads = Tensor::run_backward(&[&loss], &[theta], true, true);
    (loss, grads)
}

#[test]
fn hutchinson_converges_to_the_hessian_diagonal() {
    let a = matrix();
    let diag = a.diagonal(0, 0, 1);
    let theta = Tensor::randn([6], OPTS).set_requires_grad(true);
    let (_, grads) = quadratic(&a, &theta);
    for noise in [HessianNoise::Gaussian, HessianNoise::Rademacher] {
        let sigma = probe_std(&a, noise);
        let mut errors = Vec::new();
        for n in [16usize, 256, 4096] {
            tch::manual_seed(n as i64);
            let h = hutchinson_estimate(&grads, &[theta.shallow_clone()], n, noise).expect("estimate");
            // In units of the standard error σ_i / √n of each entry.
            let z = ((&h[0] - &diag).abs() / (&sigma / (n as f64).sqrt())).max().double_value(&[]);
            let err = (&h[0] - &diag).abs().max().double_value(&[]);
            assert!(z < 5.0, "{noise:?}, {n} probes: an entry is {z:.1} standard errors off diag(A)");
            errors.push(err);
        }
        println!("{noise:?}: max |estimate − diag(A)| with 16, 256, 4096 probes: {errors:?}");
        assert!(errors[2] < errors[0] / 4.0, "{noise:?}: no convergence ({errors:?})");
    }
}

#[test]
fn rademacher_probes_are_exact_for_a_diagonal_hessian() {
    // L = ½ Σ a ⊙ θ² over a matrix and a bias: H = diag(a), z ⊙ (a ⊙ z) = a for z = ±1.
    let a_w = Tensor::from_slice(&[0.5, 2.0, 3.0, 4.0, 1.0, 6.0]).reshape([2, 3]);
    let a_b = Tensor::from_slice(&[7.0, 0.25]);
    let w = Tensor::randn([2, 3], OPTS).set_requires_grad(true);
    let b = Tensor::randn([2], OPTS).set_requires_grad(true);
    let params = vec![("w".to_string(), w.shallow_clone()), ("b".to_string(), b.shallow_clone())];
    let hparams = HParams::parse(&["update_period=1", "betas=0.9,0.8"]).expect("hyper-parameters");
    let mut opt = create("sophia", &hparams, params).expect("sophia");
    for _ in 0..7 {
        let loss = ((&a_w * &w * &w).sum(Kind::Double) + (&a_b * &b * &b).sum(Kind::Double)) * 0.5;
        let grads = Tensor::run_backward(&[&loss], &[&w, &b], true, true);
        assert!(opt.hessian_due());
        let h =
            hutchinson_estimate(&grads, &[w.shallow_clone(), b.shallow_clone()], 1, HessianNoise::Rademacher)
                .expect("estimate");
        assert!(h[0].equal(&a_w) && h[1].equal(&a_b), "not exact: {h:?}");
        opt.update_hessian(h).expect("update_hessian");
        opt.zero_grad();
        loss.backward();
        opt.step(1e-3).expect("step");
    }
    // The running average of n exact estimates, from zero: (1 − β₂ⁿ) diag(H).
    let state: HashMap<String, Tensor> = opt.state().into_iter().collect();
    let scale = 1.0 - 0.8f64.powi(7);
    for (key, a) in [("w.hessian_moment", &a_w), ("b.hessian_moment", &a_b)] {
        let err = (&state[key] - a * scale).abs().max().double_value(&[]);
        assert!(err < 1e-14, "`{key}` off by {err}");
    }
}

#[test]
fn the_running_average_of_gaussian_estimates_tracks_the_hessian_diagonal() {
    let a = matrix();
    let diag = a.diagonal(0, 0, 1);
    let theta = Tensor::randn([6], OPTS).set_requires_grad(true);
    let beta2: f64 = 0.99;
    let hparams = HParams::parse(&["update_period=1", "betas=0.9,0.99"]).expect("hyper-parameters");
    let mut opt = create("sophia", &hparams, vec![("theta".into(), theta.shallow_clone())]).expect("sophia");
    tch::manual_seed(5);
    let steps = 1500;
    for _ in 0..steps {
        let (loss, grads) = quadratic(&a, &theta);
        let h = hutchinson_estimate(&grads, &[theta.shallow_clone()], 1, HessianNoise::Gaussian)
            .expect("estimate");
        opt.update_hessian(h).expect("update_hessian");
        opt.zero_grad();
        loss.backward();
        opt.step(1e-3).expect("step");
    }
    let state: HashMap<String, Tensor> = opt.state().into_iter().collect();
    let h = &state["theta.hessian_moment"];
    // An exponential average of independent probes has variance (1 − β₂)/(1 + β₂) σ²; the bias from
    // the zero start, β₂ⁿ diag(A), is negligible after 1500 steps.
    let sd = probe_std(&a, HessianNoise::Gaussian) * ((1.0 - beta2) / (1.0 + beta2)).sqrt();
    let z = ((h - &diag).abs() / &sd).max().double_value(&[]);
    println!("hessian_moment {h:?} vs diag(A) {diag:?}: largest deviation {z:.2} standard deviations");
    assert!(z < 5.0, "hessian_moment is {z:.1} standard deviations off diag(A)");
    // Without a Hessian estimate the due step is refused rather than taken as first order.
    let (loss, _) = quadratic(&a, &theta);
    opt.zero_grad();
    loss.backward();
    assert!(opt.step(1e-3).is_err());
}

/// Sophia on a quadratic with a badly conditioned diagonal Hessian (100 and 1): with Hutchinson's
/// estimates its steps η m / h are Newton-like and both coordinates reach the minimum; told the
/// curvature is 1 everywhere instead, the stiff coordinate keeps bouncing at the clip.
#[test]
fn sophia_uses_the_estimated_curvature() {
    let a = Tensor::from_slice(&[100.0, 1.0]);
    let run = |estimated: bool| {
        let theta = Tensor::from_slice(&[0.37, 1.0]).set_requires_grad(true);
        let hparams = HParams::parse(&["update_period=1", "p=1", "betas=0.5,0.9"]).expect("hyper-parameters");
        let mut opt: Box<dyn Optimizer> =
            create("sophia", &hparams, vec![("theta".into(), theta.shallow_clone())]).expect("sophia");
        for _ in 0..300 {
            let loss = (&a * &theta * &theta).sum(Kind::Double) * 0.5;
            let grads = Tensor::run_backward(&[&loss], &[&theta], true, true);
            let h = match estimated {
                true => hutchinson_estimate(&grads, &[theta.shallow_clone()], 1, HessianNoise::Rademacher)
                    .expect("estimate"),
                false => vec![theta.ones_like().detach()],
            };
            opt.update_hessian(h).expect("update_hessian");
            opt.zero_grad();
            loss.backward();
            opt.step(0.5).expect("step");
        }
        Vec::<f64>::try_from(theta.detach()).expect("theta")
    };
    let (estimated, flat) = (run(true), run(false));
    println!("after 300 steps: θ = {estimated:?} with the estimates, {flat:?} with curvature 1");
    assert!(estimated.iter().all(|x| x.abs() < 1e-6), "no convergence with the estimates: {estimated:?}");
    assert!(flat[0].abs() > 1e-2, "the stiff coordinate converged without curvature: {flat:?}");
}
