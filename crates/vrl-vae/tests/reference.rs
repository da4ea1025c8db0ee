//! The ELBO decomposition and the objectives against `python/vae_reference.py`
//! (fixture `tests/fixtures/vae_reference.json`; float64 on both sides, so agreement is to rounding).

use serde::Deserialize;
use tch::{Device, Tensor};
use vrl_vae::{ConvVae, ConvVaeConfig, Estimator, Objective, VaeLoss, VaeOutput, log_densities};

const FIXTURE: &str = include_str!("fixtures/vae_reference.json");

#[derive(Deserialize)]
struct Inputs {
    z: Vec<Vec<f64>>,
    mean: Vec<Vec<f64>>,
    log_var: Vec<Vec<f64>>,
    x: Vec<Vec<f64>>,
    logits: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
struct Case {
    estimator: Estimator,
    group_size: usize,
    dataset_size: usize,
    index_code_mi: f64,
    tc_between: f64,
    tc_within: f64,
    dimwise_kl: f64,
    kl: f64,
}

#[derive(Deserialize)]
struct LossCase {
    case: String,
    estimator: Estimator,
    dataset_size: usize,
    objective: Objective,
    total: f64,
}

#[derive(Deserialize)]
struct Fixture {
    inputs: Inputs,
    reconstruction: f64,
    kl_closed_form: f64,
    decomposition: Vec<Case>,
    losses: Vec<LossCase>,
    param_count: i64,
    state_dict: std::collections::BTreeMap<String, Vec<i64>>,
}

fn fixture() -> Fixture {
    serde_json::from_str(FIXTURE).expect("fixture parses")
}

fn matrix(rows: &[Vec<f64>]) -> Tensor {
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, -1])
}

/// Relative error with a floor of 1 nat, so that terms near zero are compared absolutely.
fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-10 * want.abs().max(1.0)
}

#[test]
fn decomposition_matches_pytorch() {
    let f = fixture();
    let (z, mean, log_var) = (matrix(&f.inputs.z), matrix(&f.inputs.mean), matrix(&f.inputs.log_var));
    assert_eq!(f.decomposition.len(), 24);
    for c in &f.decomposition {
        let t = log_densities(&z, &mean, &log_var, Some(c.group_size), c.estimator, c.dataset_size)
            .expect("densities")
            .terms();
        let label = format!("{:?} s={} N={}", c.estimator, c.group_size, c.dataset_size);
        for (name, got, want) in [
            ("mi", &t.index_code_mi, c.index_code_mi),
            ("tc_between", &t.tc_between, c.tc_between),
            ("tc_within", &t.tc_within, c.tc_within),
            ("dimwise_kl", &t.dimwise_kl, c.dimwise_kl),
            ("kl", &t.kl, c.kl),
        ] {
            let got = got.double_value(&[]);
            assert!(close(got, want), "{label} {name}: {got} vs {want}");
        }
    }
}

#[test]
fn objectives_match_pytorch() {
    let f = fixture();
    let b = f.inputs.x.len() as i64;
    let out = VaeOutput {
        z: matrix(&f.inputs.z),
        mean: matrix(&f.inputs.mean),
        log_var: matrix(&f.inputs.log_var),
        logits: matrix(&f.inputs.logits).view([b, 1, 8, 8]),
    };
    let x = matrix(&f.inputs.x).view([b, 1, 8, 8]);
    assert_eq!(f.losses.len(), 8);
    for c in &f.losses {
        let criterion =
            VaeLoss { objective: c.objective, estimator: c.estimator, dataset_size: c.dataset_size };
        let loss = criterion.compute(&x, &out).expect("loss");
        assert!(
            close(loss.terms.total, c.total),
            "{} {:?}: {} vs {}",
            c.case,
            c.estimator,
            loss.terms.total,
            c.total
        );
        assert!(close(loss.loss.double_value(&[]), c.total));
        assert!(close(loss.terms.reconstruction, f.reconstruction));
        assert!(close(loss.terms.kl_closed_form, f.kl_closed_form));
    }
}

#[test]
fn architecture_matches_the_pytorch_twin() {
    let f = fixture();
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _model = ConvVae::new(&vs.root(), ConvVaeConfig::default()).expect("model");
    let ours: std::collections::BTreeMap<String, Vec<i64>> =
        vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
    assert_eq!(ours, f.state_dict);
    let n: i64 = vs.variables().values().map(|v| v.numel() as i64).sum();
    assert_eq!(n, f.param_count);
}
