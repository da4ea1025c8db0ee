//! Metric properties on constructed representations with known answers: a perfect (identity,
//! permuted, rescaled) representation scores 1, a random one scores near 0 or chance, one that
//! ignores a factor loses exactly that factor's share; bad input is a clear error.

use ndarray::{Array2, ArrayView2};
use vrl_data::SplitMix64;
use vrl_disentangle::{
    BetaVaeSettings, CodeKind, DciSettings, Discretization, FactorError, FactorVaeSettings, GroundTruthData,
    MetricError, MigSettings, ModularitySettings, SapMode, SapSettings, Strategy, beta_vae_score, dci,
    factor_vae_score, mig, modularity, sap,
};

/// A factor grid whose observation is the factor values themselves, `[1, 1, K]`.
struct Grid {
    names: Vec<&'static str>,
    sizes: Vec<usize>,
}

impl Grid {
    fn new(sizes: &[usize]) -> Grid {
        Grid { names: ["a", "b", "c", "d", "e"][..sizes.len()].to_vec(), sizes: sizes.to_vec() }
    }
}

impl GroundTruthData for Grid {
    fn factor_names(&self) -> &[&str] {
        &self.names
    }
    fn factor_sizes(&self) -> &[usize] {
        &self.sizes
    }
    fn observation_shape(&self) -> [usize; 3] {
        [1, 1, self.sizes.len()]
    }
    fn render_into(&self, factors: &[usize], out: &mut [f32]) -> Result<(), FactorError> {
        self.check_factors(factors)?;
        for (o, &f) in out.iter_mut().zip(factors) {
            *o = f as f32;
        }
        Ok(())
    }
}

/// Every combination of the factor grid `sizes`, `repeat` times: exactly independent factors.
fn full_grid(sizes: &[usize], repeat: usize) -> Array2<i64> {
    let combos: usize = sizes.iter().product();
    Array2::from_shape_fn((combos * repeat, sizes.len()), |(i, k)| {
        let mut rest = i % combos;
        for &s in &sizes[k + 1..] {
            rest /= s;
        }
        (rest % sizes[k]) as i64
    })
}

/// Codes `[N, D]` from factors by `code_j = scale_j · factor_{perm_j} + shift_j` (a constant code
/// where `perm_j` is `None`).
fn linear_codes(factors: &Array2<i64>, perm: &[Option<usize>], scale: &[f64]) -> Array2<f64> {
    Array2::from_shape_fn((factors.nrows(), perm.len()), |(i, j)| match perm[j] {
        Some(k) => scale[j] * factors[[i, k]] as f64 + j as f64,
        None => 0.25,
    })
}

fn noise(n: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut rng = SplitMix64::new(seed);
    Array2::from_shape_fn((n, d), |_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

/// A representation of [`Grid`] observations: code `j` is `scale_j · obs[perm_j]` (constant where
/// `None`), plus `noise` times a uniform draw.
fn grid_representation(
    perm: Vec<Option<usize>>,
    scale: Vec<f64>,
    noise: f64,
    seed: u64,
) -> impl FnMut(ArrayView2<'_, f32>) -> Result<Array2<f64>, String> {
    let mut rng = SplitMix64::new(seed);
    move |obs: ArrayView2<'_, f32>| {
        Ok(Array2::from_shape_fn((obs.nrows(), perm.len()), |(b, j)| {
            let signal = perm[j].map_or(0.0, |k| scale[j] * f64::from(obs[[b, k]]));
            signal + noise * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
        }))
    }
}

const SIZES: [usize; 3] = [3, 4, 5];

#[test]
fn perfect_codes_score_one_whatever_their_order_and_scale() {
    let factors = full_grid(&SIZES, 8);
    let perm = [Some(2), Some(0), Some(1)];
    let codes = linear_codes(&factors, &perm, &[-3.0, 0.5, 7.0]);
    for strategy in [Strategy::Histogram, Strategy::Quantile] {
        let settings = MigSettings {
            discretization: Discretization { num_bins: 20, strategy },
            ..MigSettings::default()
        };
        let m = mig(codes.view(), factors.view(), &settings).expect("mig");
        assert!((m.score - 1.0).abs() < 1e-12, "{strategy:?}: {m:?}");
    }
    let md = modularity(codes.view(), factors.view(), &ModularitySettings::default()).expect("modularity");
    assert!((md.score - 1.0).abs() < 1e-12, "{md:?}");
    let d = dci(codes.view(), factors.view(), &DciSettings::default()).expect("dci");
    println!("perfect DCI: {} {} {}", d.disentanglement, d.completeness, d.informativeness_test);
    assert!(d.disentanglement > 0.99 && d.completeness > 0.99, "{d:?}");
    assert_eq!(d.informativeness_test, 1.0);
    let continuous = SapSettings { mode: SapMode::Continuous, ..SapSettings::default() };
    let s = sap(codes.view(), factors.view(), &continuous).expect("sap");
    assert!(s.score > 0.95, "{s:?}");
}

#[test]
fn random_codes_score_near_zero() {
    let factors = full_grid(&SIZES, 40);
    let codes = noise(factors.nrows(), 4, 7);
    let m = mig(codes.view(), factors.view(), &MigSettings::default()).expect("mig");
    let d = dci(codes.view(), factors.view(), &DciSettings::default()).expect("dci");
    let s = sap(codes.view(), factors.view(), &SapSettings::default()).expect("sap");
    println!("random: MIG {} D {} C {} SAP {}", m.score, d.disentanglement, d.completeness, s.score);
    assert!(m.score < 0.02, "{m:?}");
    assert!(d.disentanglement < 0.05 && d.completeness < 0.05, "{d:?}");
    assert!(s.score < 0.05, "{s:?}");
}

#[test]
fn ignoring_a_factor_loses_exactly_its_share_of_mig() {
    let factors = full_grid(&SIZES, 6);
    // Factor 1 is encoded nowhere.
    let codes = linear_codes(&factors, &[Some(0), None, Some(2)], &[1.0, 1.0, -2.0]);
    let m = mig(codes.view(), factors.view(), &MigSettings::default()).expect("mig");
    assert!((m.score - 2.0 / 3.0).abs() < 1e-12, "{m:?}");
    assert!(m.per_factor[1].abs() < 1e-12);
    // Counting only the encoded factors gives 1 again, and the result says which factors counted.
    let settings =
        MigSettings { factors: Some(vec![0, 2]), codes: CodeKind::Sample, ..MigSettings::default() };
    let m = mig(codes.view(), factors.view(), &settings).expect("mig");
    assert!((m.score - 1.0).abs() < 1e-12, "{m:?}");
    let json = serde_json::to_value(&m).expect("json");
    assert_eq!(json["settings"]["factors"], serde_json::json!([0, 2]));
    assert_eq!(json["settings"]["codes"], "sample");
    assert_eq!(json["settings"]["discretization"]["strategy"], "histogram");
}

fn small_factor_vae(seed: u64) -> FactorVaeSettings {
    FactorVaeSettings {
        batch_size: 32,
        num_train: 400,
        num_eval: 300,
        num_variance_estimate: 500,
        seed,
        max_encode_batch: 256,
        ..FactorVaeSettings::default()
    }
}

fn small_beta_vae(seed: u64) -> BetaVaeSettings {
    BetaVaeSettings {
        batch_size: 16,
        num_train: 400,
        num_eval: 300,
        seed,
        max_encode_batch: 256,
        ..BetaVaeSettings::default()
    }
}

#[test]
fn factor_vae_and_beta_vae_scores_of_perfect_random_and_partial_representations() {
    let grid = Grid::new(&SIZES);
    let perfect = || grid_representation(vec![Some(1), Some(2), Some(0)], vec![2.0, -0.3, 5.0], 0.0, 0);
    let f = factor_vae_score(&grid, perfect(), &small_factor_vae(1)).expect("factor-vae");
    assert_eq!((f.train_accuracy, f.eval_accuracy), (1.0, 1.0), "{f:?}");
    let b = beta_vae_score(&grid, perfect(), &small_beta_vae(1)).expect("beta-vae");
    assert_eq!((b.train_accuracy, b.eval_accuracy), (1.0, 1.0), "{b:?}");

    // Pure noise: chance (1/3) on held-out votes.
    let random = || grid_representation(vec![None, None, None, None], vec![0.0; 4], 1.0, 9);
    let f = factor_vae_score(&grid, random(), &small_factor_vae(2)).expect("factor-vae");
    let b = beta_vae_score(&grid, random(), &small_beta_vae(2)).expect("beta-vae");
    println!("random: FactorVAE {} β-VAE {}", f.eval_accuracy, b.eval_accuracy);
    assert!((f.eval_accuracy - 1.0 / 3.0).abs() < 0.1, "{f:?}");
    assert!((b.eval_accuracy - 1.0 / 3.0).abs() < 0.1, "{b:?}");

    // Factor 2 ignored (its code constant, hence pruned): exactly the votes for factor 2 are lost.
    let partial = grid_representation(vec![Some(0), Some(1), None], vec![1.0, 1.0, 0.0], 0.0, 0);
    let f = factor_vae_score(&grid, partial, &small_factor_vae(3)).expect("factor-vae");
    assert_eq!(f.active_dims, vec![0, 1]);
    let total: u64 = f.train_votes.iter().flatten().sum();
    let lost: u64 = f.train_votes[2].iter().sum();
    assert_eq!(f.train_accuracy, 1.0 - lost as f64 / total as f64, "{f:?}");
    assert!((f.eval_accuracy - 2.0 / 3.0).abs() < 0.08, "{f:?}");
}

#[test]
fn sampling_metrics_are_deterministic_in_the_seed() {
    let grid = Grid::new(&SIZES);
    let noisy = || grid_representation(vec![Some(0), Some(1), Some(2)], vec![1.0, 1.0, 1.0], 3.0, 4);
    let a = factor_vae_score(&grid, noisy(), &small_factor_vae(5)).expect("a");
    let b = factor_vae_score(&grid, noisy(), &small_factor_vae(5)).expect("b");
    assert_eq!(a, b);
    let c = factor_vae_score(&grid, noisy(), &small_factor_vae(6)).expect("c");
    assert_ne!(a.train_votes, c.train_votes);
    // The encode batch does not change the result.
    let d =
        factor_vae_score(&grid, noisy(), &FactorVaeSettings { max_encode_batch: 64, ..small_factor_vae(5) });
    assert_eq!(a.train_votes, d.expect("d").train_votes);
    let e = beta_vae_score(&grid, noisy(), &small_beta_vae(5)).expect("e");
    let g = beta_vae_score(&grid, noisy(), &BetaVaeSettings { max_encode_batch: 32, ..small_beta_vae(5) });
    assert_eq!(e.eval_accuracy, g.expect("g").eval_accuracy);
}

#[test]
fn bad_input_is_a_clear_error() {
    let factors = full_grid(&SIZES, 2);
    let codes = linear_codes(&factors, &[Some(0), Some(1), Some(2)], &[1.0, 1.0, 1.0]);
    let settings = MigSettings::default();
    let short = codes.slice(ndarray::s![..10, ..]);
    let e = mig(short, factors.view(), &settings).unwrap_err().to_string();
    assert!(e.contains("10 rows") && e.contains("120"), "{e}");
    let mut nan = codes.clone();
    nan[[5, 2]] = f64::NAN;
    let e = mig(nan.view(), factors.view(), &settings).unwrap_err().to_string();
    assert!(e.contains("non-finite") && e.contains("row 5, column 2"), "{e}");
    let mut constant = factors.clone();
    constant.column_mut(1).fill(4);
    let e = dci(codes.view(), constant.view(), &DciSettings::default()).unwrap_err();
    assert!(matches!(e, MetricError::ConstantFactor { factor: 1, value: 4, .. }), "{e}");
    assert!(e.to_string().contains("single value 4"), "{e}");
    let one = codes.slice(ndarray::s![.., ..1]);
    let e = mig(one, factors.view(), &settings).unwrap_err().to_string();
    assert!(e.contains("MIG needs at least 2 code dimensions, found 1"), "{e}");
    let bad = MigSettings { factors: Some(vec![0, 3]), ..settings };
    let e = mig(codes.view(), factors.view(), &bad).unwrap_err().to_string();
    assert!(e.contains("factors") && e.contains("0..3"), "{e}");
    let e = sap(codes.view(), factors.view(), &SapSettings { train_fraction: 1.0, ..SapSettings::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("train_fraction"), "{e}");
    let grid = Grid::new(&SIZES);
    let wrong =
        |obs: ArrayView2<'_, f32>| -> Result<Array2<f64>, String> { Ok(Array2::zeros((obs.nrows() + 1, 2))) };
    let e = factor_vae_score(&grid, wrong, &small_factor_vae(0)).unwrap_err().to_string();
    assert!(e.contains("representation output"), "{e}");
    let failing = |_: ArrayView2<'_, f32>| -> Result<Array2<f64>, String> { Err("encoder exploded".into()) };
    let e = beta_vae_score(&grid, failing, &small_beta_vae(0)).unwrap_err().to_string();
    assert!(e.contains("encoder exploded"), "{e}");
}

#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let factors = full_grid(&SIZES, 10);
    let mut codes = noise(factors.nrows(), 4, 3);
    codes.column_mut(0).zip_mut_with(&factors.column(0), |c, &f| *c += f as f64);
    let run = || {
        (
            mig(codes.view(), factors.view(), &MigSettings::default()).expect("mig"),
            dci(codes.view(), factors.view(), &DciSettings::default()).expect("dci"),
            sap(codes.view(), factors.view(), &SapSettings::default()).expect("sap"),
        )
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    assert_eq!(run(), pool.install(run));
}

mod invariance {
    use super::*;
    use proptest::prelude::{ProptestConfig, prop_assert, prop_assert_eq, proptest};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Reordering code dimensions changes nothing; a strictly increasing transform of a code
        /// changes nothing under equal-frequency bins.
        #[test]
        fn mig_and_modularity_ignore_code_order_and_monotone_transforms(seed in 0u64..1000, shift in -5.0f64..5.0) {
            let factors = full_grid(&SIZES, 5);
            let mut codes = noise(factors.nrows(), 3, seed);
            for i in 0..factors.nrows() {
                codes[[i, 0]] += factors[[i, 0]] as f64;
                codes[[i, 2]] += 0.5 * factors[[i, 2]] as f64;
            }
            let swapped = Array2::from_shape_fn(codes.dim(), |(i, j)| codes[[i, 2 - j]]);
            let warped = codes.mapv(|v| (v + shift).exp());
            let quantile = MigSettings {
                discretization: Discretization { num_bins: 10, strategy: Strategy::Quantile },
                ..MigSettings::default()
            };
            for settings in [MigSettings::default(), quantile.clone()] {
                let a = mig(codes.view(), factors.view(), &settings).expect("mig");
                let b = mig(swapped.view(), factors.view(), &settings).expect("mig");
                prop_assert_eq!(a.score, b.score);
            }
            let a = mig(codes.view(), factors.view(), &quantile).expect("mig");
            let c = mig(warped.view(), factors.view(), &quantile).expect("mig");
            prop_assert_eq!(a.score, c.score);
            let m = ModularitySettings::default();
            let a = modularity(codes.view(), factors.view(), &m).expect("modularity");
            let b = modularity(swapped.view(), factors.view(), &m).expect("modularity");
            prop_assert!((a.score - b.score).abs() < 1e-15);
        }
    }
}

#[test]
fn settings_round_trip_through_json() {
    let dci_settings = DciSettings::default();
    let json = serde_json::to_string(&dci_settings).expect("json");
    assert!(json.contains("\"kind\":\"gradient_boosting\"") && json.contains("\"random_state\":0"), "{json}");
    assert_eq!(serde_json::from_str::<DciSettings>(&json).expect("back"), dci_settings);
    let sap_settings = SapSettings::default();
    let json = serde_json::to_string(&sap_settings).expect("json");
    assert!(json.contains("\"kind\":\"discrete\",\"c\":0.01"), "{json}");
    assert_eq!(serde_json::from_str::<SapSettings>(&json).expect("back"), sap_settings);
    let partial: MigSettings = serde_json::from_str(r#"{"factors": [1, 2, 3, 4]}"#).expect("partial");
    assert_eq!(partial.discretization.num_bins, 20);
    assert!(serde_json::from_str::<MigSettings>(r#"{"bins": 10}"#).is_err());
    for text in [
        serde_json::to_string(&FactorVaeSettings::default()),
        serde_json::to_string(&BetaVaeSettings::default()),
        serde_json::to_string(&ModularitySettings::default()),
    ] {
        assert!(text.expect("json").contains("\"codes\":\"mean\""));
    }
}
