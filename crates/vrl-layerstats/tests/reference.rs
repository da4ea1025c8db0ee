//! Agreement with WeightWatcher 0.7.7 and the `powerlaw` package.
//!
//! The fixtures `tests/fixtures/layerstats_reference.{safetensors,json}` are written by
//! `python/layerstats_reference.py`: seeded weights, WeightWatcher's `analyze()` of them (defaults),
//! and WeightWatcher's and `powerlaw`'s fits of 1-D samples.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use vrl_layerstats::{AlphaFit, FitMethod, LayerKind, LayerStats, NotFitted, Options, fit_power_law};

const WEIGHTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/layerstats_reference.safetensors");
const REFERENCE: &str = include_str!("fixtures/layerstats_reference.json");

fn reference() -> Value {
    serde_json::from_str(REFERENCE).expect("fixture JSON")
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn ours() -> HashMap<String, LayerStats> {
    let stats =
        vrl_layerstats::analyze_safetensors(Path::new(WEIGHTS), &Options::default()).expect("analyze");
    stats.into_iter().map(|s| (s.name.clone(), s)).collect()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

#[test]
fn layers_agree_with_weightwatcher() {
    let ours = ours();
    let r = reference();
    let layers = r["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 16);
    let mut both_fitted = 0;
    for w in layers {
        let name = w["name"].as_str().expect("name");
        let s = ours.get(name).unwrap_or_else(|| panic!("no stats for {name}"));
        assert_eq!(s.num_evals as u64, w["num_evals"].as_u64().expect("num_evals"), "{name}");
        assert_eq!(s.rf as u64, w["rf"].as_u64().expect("rf"), "{name}");

        // Entropy from the same eigenvalues (Gram in f64 here, SVD there).
        let entropy = s.entropy.expect("entropy");
        assert!((entropy - f(w, "entropy")).abs() < 1e-9, "{name}: entropy {entropy} vs {}", w["entropy"]);

        // WeightWatcher's `norm` is Σλ = ‖W‖²_F after conv2d_norm's √½ (so half for convolutions);
        // `spectral_norm` is λ_max.
        let half = if s.kind == LayerKind::Conv2d { 0.5 } else { 1.0 };
        let l2 = s.l2.expect("l2");
        assert!(rel(half * l2 * l2, f(w, "norm")) < 1e-9, "{name}: l2² {} vs norm {}", l2 * l2, w["norm"]);
        assert!(rel(s.spectral_norm.expect("λ_max"), f(w, "spectral_norm")) < 1e-9, "{name}: spectral norm");

        match (&s.fit, w["status"].as_str()) {
            (AlphaFit::Fitted(fit), Some("success")) => {
                both_fitted += 1;
                let (alpha, xmin) = (f(w, "alpha"), f(w, "xmin"));
                // Same eigenvalues to ~1e-12, same estimator: the same x_min and α.
                assert!((fit.alpha - alpha).abs() < 0.05, "{name}: α {} vs {alpha}", fit.alpha);
                assert!(
                    (fit.alpha - alpha).abs() < 1e-6,
                    "{name}: α {} vs {alpha} (x_min moved?)",
                    fit.alpha
                );
                assert!(rel(fit.xmin, xmin) < 1e-9, "{name}: x_min {} vs {xmin}", fit.xmin);
                assert!((fit.ks_distance - f(w, "D")).abs() < 1e-9, "{name}: D");
                assert!((fit.sigma - f(w, "sigma")).abs() < 1e-6, "{name}: sigma");
                assert_eq!(fit.tail_len as u64, w["num_pl_spikes"].as_u64().expect("spikes"), "{name}");
                let small = s.num_evals < vrl_layerstats::SMALL_N;
                assert_eq!(fit.method == FitMethod::SmallN, small, "{name}: estimator");
            }
            // Every eigenvalue is below 1e-5: WeightWatcher's fit fails on an empty array (α = -1);
            // here the reason is given.
            (AlphaFit::NotFitted(NotFitted::TooFewEigenvalues { found: 0, .. }), Some("failed")) => {
                assert_eq!(name, "conv_silent.weight");
                assert_eq!(f(w, "alpha"), -1.0);
            }
            (fit, status) => panic!("{name}: ours {fit:?}, WeightWatcher {status:?}"),
        }
    }
    assert_eq!(both_fitted, 15);

    // Layers WeightWatcher leaves out: the 5 eigenvalues of a 10 × 5 weight (fewer than min_evals = 8)
    // and every 1-D tensor.
    let analysed: Vec<&str> = layers.iter().map(|w| w["name"].as_str().expect("name")).collect();
    let mut extra: Vec<&str> = ours.keys().map(String::as_str).filter(|n| !analysed.contains(n)).collect();
    extra.sort();
    assert_eq!(extra, ["dense_tiny.weight"]);
    assert_eq!(
        ours["dense_tiny.weight"].fit,
        AlphaFit::NotFitted(NotFitted::TooFewEigenvalues { found: 5, min: 8, threshold: 1e-5 })
    );
}

#[test]
fn the_bookkeeping_quirks_of_weightwatcher_leave_the_statistics_alone() {
    let ours = ours();
    let r = reference();
    let by_name = |n: &str| -> Value {
        r["layers"].as_array().expect("layers").iter().find(|w| w["name"] == n).cloned().expect(n)
    };
    // 16 × 32 × 2 × 2: WeightWatcher swaps N and M once per kernel position, ending with M = 32;
    // its eigenvalues (and α) are the same as ours, with M = 16.
    let even = by_name("conv_even.weight");
    assert_eq!((even["M"].as_u64(), ours["conv_even.weight"].m), (Some(32), 16));
    // 2 × 1 × 7 × 7 (out + in < kh + kw): its other slicing branch, the same 49 matrices.
    assert_eq!(ours["conv_flip.weight"].num_evals, 49);
}

#[test]
fn power_law_fits_agree_with_weightwatcher_and_powerlaw() {
    let tensors: HashMap<String, Vec<f64>> = {
        let bytes = std::fs::read(WEIGHTS).expect("fixture");
        let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        file.iter()
            .filter(|(n, _)| n.starts_with("sample."))
            .map(|(n, v)| {
                let data =
                    v.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8"))).collect();
                (n.to_string(), data)
            })
            .collect()
    };
    let r = reference();
    let samples = r["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 4);
    for case in samples {
        let name = case["name"].as_str().expect("name");
        let fit = fit_power_law(&tensors[name], 2).expect(name);
        let ww = &case["ww"];
        assert!((fit.alpha - f(ww, "alpha")).abs() < 1e-9, "{name}: α {} vs WeightWatcher {}", fit.alpha, ww);
        assert!(rel(fit.xmin, f(ww, "xmin")) < 1e-12, "{name}: x_min");
        assert!((fit.ks_distance - f(ww, "D")).abs() < 1e-9, "{name}: D");
        assert!((fit.sigma - f(ww, "sigma")).abs() < 1e-9, "{name}: sigma");
        // The powerlaw package itself: the same estimator for 20 values or more (its KS statistic
        // differs slightly, which can move x_min by a few points); WeightWatcher's small-sample
        // variant is a different estimator, so the 15-value sample is left out.
        if name != "sample.small_n" {
            let pl = &case["powerlaw"];
            assert!((fit.alpha - f(pl, "alpha")).abs() < 0.05, "{name}: α {} vs powerlaw {pl}", fit.alpha);
        } else {
            assert_eq!(fit.method, FitMethod::SmallN);
        }
    }
}
