//! What the estimators and objectives must do: β-STCVAE with groups of one is β-TCVAE, the estimated
//! total correlation against the closed form of a Gaussian aggregate posterior, and a few training
//! steps on procedural dSprites.

use tch::{Device, Kind, Tensor, nn};
use vrl_data::dsprites::DSprites;
use vrl_vae::{ConvVae, ConvVaeConfig, Estimator, Objective, VaeLoss, log_densities};

const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

fn v(t: &Tensor) -> f64 {
    t.double_value(&[])
}

/// A binary batch of procedural dSprites images, `[B, 1, 64, 64]`, spread over the factor grid.
fn dsprites_batch(b: usize) -> Tensor {
    let d = DSprites::new();
    let indices: Vec<usize> = (0..b).map(|i| (i * 104_729 + 12_345) % d.len()).collect();
    let mut pixels = vec![0u8; b * DSprites::IMAGE_LEN];
    d.render_batch(&indices, &mut pixels).expect("render");
    Tensor::from_slice(&pixels).to_kind(Kind::Float).view([b as i64, 1, 64, 64])
}

#[test]
fn stcvae_with_groups_of_one_is_tcvae() {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = ConvVae::new(&vs.root(), ConvVaeConfig::default()).expect("model");
    let x = dsprites_batch(16);
    let out = model.forward(&x).expect("forward");
    for estimator in [Estimator::MinibatchWeighted, Estimator::MinibatchStratified] {
        let loss = |objective| {
            VaeLoss { objective, estimator, dataset_size: DSprites::LEN }.compute(&x, &out).expect("loss")
        };
        let tc = loss(Objective::BetaTcVae { alpha: 0.7, beta: 6.0, gamma: 1.3 });
        let stc = loss(Objective::BetaStcVae {
            group_size: 1,
            alpha: 0.7,
            beta_between: 6.0,
            beta_within: 3.0,
            gamma: 1.3,
        });
        // Same value, bit for bit, and the same terms.
        assert_eq!(tc.terms, stc.terms, "{estimator:?}");
        assert_eq!(stc.terms.tc_within, 0.0);
        assert!(tc.terms.tc_between != 0.0);
        // And the same gradients, up to float32 rounding: β-STCVAE's gradient also flows through the
        // within-group term, whose two halves cancel exactly in value but are accumulated separately.
        let params = vs.trainable_variables();
        let grads = |l: &Tensor| Tensor::run_backward(&[l], &params, true, false);
        for (a, b) in grads(&tc.loss).iter().zip(grads(&stc.loss)) {
            let err = v(&(a - &b).abs().max());
            let scale = v(&a.abs().max());
            assert!(err <= 1e-5 * scale + 1e-7, "{estimator:?}: gradient differs by {err} (scale {scale})");
        }
        // With groups of two, the split differs but the TC is the same.
        let stc2 = loss(Objective::beta_stcvae(2, 6.0, 3.0));
        let tc_sum = stc2.terms.tc_between + stc2.terms.tc_within;
        assert!((tc_sum - tc.terms.tc_between).abs() < 1e-3 * tc_sum.abs().max(1.0));
        assert!(stc2.terms.tc_within != 0.0);
    }
}

/// Samples from the posteriors `N(μₙ, σ²I)` of `m` points whose means are drawn from `N(0, C)`,
/// with `C = ρ·11ᵀ + (1 − ρ)·I`; the aggregate posterior is then Gaussian with covariance
/// `Σ = C + σ²I` as `m → ∞`, with total correlation `½(Σ_d log Σ_dd − log det Σ)`.
fn correlated_aggregate(m: i64, d: i64, rho: f64, sigma: f64) -> (Tensor, Tensor, Tensor, f64) {
    let shared = Tensor::randn([m, 1], F64) * rho.sqrt();
    let mean = shared + Tensor::randn([m, d], F64) * (1.0 - rho).sqrt();
    let log_var = Tensor::full([m, d], 2.0 * sigma.ln(), F64);
    let z = &mean + Tensor::randn([m, d], F64) * sigma;
    // Eigenvalues of Σ: (1 − ρ + σ²) (d − 1 times) and (1 − ρ + σ² + dρ).
    let (a, df) = (1.0 - rho + sigma * sigma, d as f64);
    let log_det = (df - 1.0) * a.ln() + (a + df * rho).ln();
    let tc = 0.5 * (df * (1.0 + sigma * sigma).ln() - log_det);
    (z, mean, log_var, tc)
}

/// The minibatch estimate of `log q(z)` includes each sample's own posterior, so in 10 dimensions it
/// overestimates the joint density more than the marginals': the estimated TC of independent latents
/// is small and positive and shrinks as the batch grows (about 0.24, 0.17, 0.10, 0.06 nats for
/// M = 256, 512, 1024, 2048 in `python/vae_reference.py`'s formulas, σ = 1). The tolerances below are
/// that bias plus the sampling noise of one draw (the closed forms hold for M → ∞).
#[test]
fn total_correlation_near_zero_for_independent_latents_and_closed_form_for_correlated() {
    tch::manual_seed(11);
    let (m, d) = (1024, 10);
    let mss = |z: &Tensor, mean: &Tensor, log_var: &Tensor, s| {
        let m = z.size()[0] as usize;
        // The batch is the whole data set: MSS then estimates q(z) = (1/N) Σₙ q(z|xₙ) with N = M.
        log_densities(z, mean, log_var, Some(s), Estimator::MinibatchStratified, m)
            .expect("densities")
            .terms()
    };
    let (z, mean, log_var, want) = correlated_aggregate(m, d, 0.0, 1.0);
    assert_eq!(want, 0.0);
    let independent = mss(&z, &mean, &log_var, 1);
    let tc0 = v(&independent.tc_between);
    assert!((0.0..0.2).contains(&tc0), "independent latents: TC {tc0}");
    let small = mss(&z.narrow(0, 0, 256), &mean.narrow(0, 0, 256), &log_var.narrow(0, 0, 256), 1);
    assert!(v(&small.tc_between) > tc0, "the bias shrinks with the batch size");
    let t5 = mss(&z, &mean, &log_var, 5);
    assert!(v(&t5.tc_between).abs() < 0.2 && v(&t5.tc_within).abs() < 0.2);

    let (z, mean, log_var, want) = correlated_aggregate(m, d, 0.8, 1.0);
    assert!((want - 1.536).abs() < 1e-3);
    let correlated = mss(&z, &mean, &log_var, 1);
    let tc = v(&correlated.tc_between);
    assert!((tc - want).abs() < 0.3 && tc > 10.0 * tc0, "correlated latents: TC {tc}, closed form {want}");
    // Groups of 5: TC within the groups and between them, both clearly positive, adding up to the TC.
    let t5 = mss(&z, &mean, &log_var, 5);
    let (between, within) = (v(&t5.tc_between), v(&t5.tc_within));
    assert!((between + within - tc).abs() < 1e-9);
    assert!(between > 0.3 && within > 0.3, "{between} {within}");

    // The dimension-wise KL against its closed form: every marginal is N(0, 1 + σ²) = N(0, 2).
    let dwkl = d as f64 * 0.5 * (2.0 - 1.0 - 2f64.ln());
    for t in [&independent, &correlated] {
        assert!((v(&t.dimwise_kl) - dwkl).abs() < 0.25, "{} vs {dwkl}", v(&t.dimwise_kl));
    }
}

#[test]
fn a_few_adam_steps_on_dsprites_decrease_the_loss() {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = ConvVae::new(&vs.root(), ConvVaeConfig::default()).expect("model");
    let params = vs.variables().into_iter().collect::<Vec<_>>();
    let hparams = vrl_optim::HParams::parse(&["lr=1e-3"]).expect("hparams");
    let mut opt = vrl_optim::create("adam", &hparams, params).expect("adam");
    let x = dsprites_batch(8);
    let criterion = VaeLoss {
        objective: Objective::beta_stcvae(2, 4.0, 2.0),
        estimator: Estimator::MinibatchStratified,
        dataset_size: DSprites::LEN,
    };
    let mut losses = Vec::new();
    for _ in 0..6 {
        tch::manual_seed(5); // the same ε every step, so the loss is a fixed function of the weights
        let out = model.forward(&x).expect("forward");
        let loss = criterion.compute(&x, &out).expect("loss");
        opt.zero_grad();
        loss.loss.backward();
        opt.step(1e-3).expect("step");
        losses.push(loss.terms.total);
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(last < 0.9 * first, "{losses:?}");
}
