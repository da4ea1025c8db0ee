//! vrl-disentangle against `python/disentangle_reference.py`: disentanglement_lib's metric code
//! transcribed with numpy and scikit-learn 1.9.1, on the fixed arrays in `fixtures/`.
//!
//! Tolerances: MIG, modularity, continuous SAP and the D/C arithmetic are the same float operations
//! in another order (1e-12). The discrete SAP scores and the β-VAE accuracies come from convex
//! problems that vrl solves exactly: they must equal scikit-learn's to the point. DCI's boosted trees
//! are scikit-learn's tree for tree when both use the same `random_state`, so they agree to 1e-12.

use std::collections::HashMap;
use std::path::PathBuf;

use ndarray::{Array1, Array2};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use vrl_disentangle::{
    DciSettings, MigSettings, ModularitySettings, SapMode, SapSettings, beta_vae_accuracy, dci,
    disentanglement_completeness, mig, modularity, sap,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Reference {
    f64s: HashMap<String, Array2<f64>>,
    i64s: HashMap<String, Array2<i64>>,
    json: Value,
}

fn load() -> Reference {
    let bytes = std::fs::read(fixtures().join("reference.safetensors")).expect("read reference.safetensors");
    let tensors = SafeTensors::deserialize(&bytes).expect("parse reference.safetensors");
    let (mut f64s, mut i64s) = (HashMap::new(), HashMap::new());
    for (name, view) in tensors.tensors() {
        let shape = view.shape().to_vec();
        let (rows, cols) = if shape.len() == 2 { (shape[0], shape[1]) } else { (shape[0], 1) };
        let words = view.data().chunks_exact(8).map(|c| <[u8; 8]>::try_from(c).expect("8 bytes"));
        match view.dtype() {
            Dtype::F64 => {
                let v: Vec<f64> = words.map(f64::from_le_bytes).collect();
                f64s.insert(name, Array2::from_shape_vec((rows, cols), v).expect("shape"));
            }
            Dtype::I64 => {
                let v: Vec<i64> = words.map(i64::from_le_bytes).collect();
                i64s.insert(name, Array2::from_shape_vec((rows, cols), v).expect("shape"));
            }
            other => panic!("{name}: unexpected dtype {other:?}"),
        }
    }
    let json = serde_json::from_slice(&std::fs::read(fixtures().join("reference.json")).expect("read json"))
        .expect("parse reference.json");
    Reference { f64s, i64s, json }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn vector(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(num).collect()
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().expect("array").iter().map(vector).collect()
}

fn close(name: &str, got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= tol, "{name}: vrl {got} vs reference {want} (tolerance {tol})");
}

fn close_all(name: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        close(&format!("{name}[{i}]"), *g, *w, tol);
    }
}

const CASES: [&str; 3] = ["random", "mixed", "relabelled"];

#[test]
fn mig_and_modularity_match_disentanglement_lib() {
    let r = load();
    for case in CASES {
        let codes = &r.f64s[&format!("{case}/codes")];
        let factors = &r.i64s[&format!("{case}/factors")];
        let want = &r.json["cases"][case];
        let m = mig(codes.view(), factors.view(), &MigSettings::default()).expect("mig");
        close(&format!("{case} mig"), m.score, num(&want["mig"]["score"]), 1e-12);
        close_all(
            &format!("{case} mig per factor"),
            &m.per_factor,
            &vector(&want["mig"]["per_factor"]),
            1e-12,
        );
        close_all(
            &format!("{case} entropy"),
            &m.factor_entropy,
            &vector(&want["mig"]["factor_entropy"]),
            1e-12,
        );
        for (j, row) in matrix(&want["mig"]["mutual_information"]).iter().enumerate() {
            close_all(&format!("{case} MI row {j}"), &m.mutual_information[j], row, 1e-12);
        }
        let md =
            modularity(codes.view(), factors.view(), &ModularitySettings::default()).expect("modularity");
        close(&format!("{case} modularity"), md.score, num(&want["modularity"]["score"]), 1e-12);
        close_all(
            &format!("{case} modularity per code"),
            &md.per_code,
            &vector(&want["modularity"]["per_code"]),
            1e-12,
        );
    }
}

#[test]
fn sap_matches_disentanglement_lib() {
    let r = load();
    for case in CASES {
        let codes = &r.f64s[&format!("{case}/codes")];
        let factors = &r.i64s[&format!("{case}/factors")];
        let want = &r.json["cases"][case];
        let s = sap(codes.view(), factors.view(), &SapSettings::default()).expect("sap");
        assert_eq!(s.num_train, 400);
        for key in ["sap_discrete", "sap_discrete_tight"] {
            close(&format!("{case} {key}"), s.score, num(&want[key]["score"]), 1e-12);
            for (j, row) in matrix(&want[key]["score_matrix"]).iter().enumerate() {
                close_all(&format!("{case} {key} row {j}"), &s.score_matrix[j], row, 1e-12);
            }
        }
        let settings = SapSettings { mode: SapMode::Continuous, ..SapSettings::default() };
        let s = sap(codes.view(), factors.view(), &settings).expect("sap");
        close(&format!("{case} sap continuous"), s.score, num(&want["sap_continuous"]["score"]), 1e-12);
        for (j, row) in matrix(&want["sap_continuous"]["score_matrix"]).iter().enumerate() {
            close_all(&format!("{case} sap continuous row {j}"), &s.score_matrix[j], row, 1e-12);
        }
    }
}

#[test]
fn dci_matches_disentanglement_lib_with_the_same_random_state() {
    // With random_state = 0 for vrl's trees and scikit-learn's, the trees are the same (the same
    // splits, ties decided by the same feature draws, sums in the same order): importances, D and C
    // agree to 1e-12, accuracies exactly. (disentanglement_lib itself leaves random_state unset; the
    // fixture's other seeds show how much its DCI moves from run to run.)
    let r = load();
    for case in CASES {
        let codes = &r.f64s[&format!("{case}/codes")];
        let factors = &r.i64s[&format!("{case}/factors")];
        let want = &r.json["cases"][case]["dci_seeds"][0];
        let d = dci(codes.view(), factors.view(), &DciSettings::default()).expect("dci");
        for (j, row) in matrix(&want["importance"]).iter().enumerate() {
            close_all(&format!("{case} importance row {j}"), &d.importance[j], row, 1e-12);
        }
        close_all(
            &format!("{case} train accuracy"),
            &d.train_accuracy,
            &vector(&want["train_accuracy"]),
            1e-12,
        );
        close_all(&format!("{case} test accuracy"), &d.test_accuracy, &vector(&want["test_accuracy"]), 1e-12);
        close(&format!("{case} disentanglement"), d.disentanglement, num(&want["disentanglement"]), 1e-12);
        close(&format!("{case} completeness"), d.completeness, num(&want["completeness"]), 1e-12);
    }
}

#[test]
fn disentanglement_and_completeness_of_given_importances() {
    let r = load();
    for (i, case) in r.json["dci_matrices"].as_array().expect("array").iter().enumerate() {
        let (d, c) = disentanglement_completeness(&matrix(&case["importance"])).expect("d, c");
        close(&format!("matrix {i} disentanglement"), d, num(&case["disentanglement"]), 1e-12);
        close(&format!("matrix {i} completeness"), c, num(&case["completeness"]), 1e-12);
    }
}

#[test]
fn beta_vae_classifier_matches_scikit_learn() {
    let r = load();
    for case in ["beta5", "beta2"] {
        let labels = |key: &str| -> Vec<i64> {
            let a: Array1<i64> = r.i64s[&format!("{case}/{key}")].column(0).to_owned();
            a.to_vec()
        };
        let (train, eval) = beta_vae_accuracy(
            r.f64s[&format!("{case}/train_points")].view(),
            &labels("train_labels"),
            r.f64s[&format!("{case}/eval_points")].view(),
            &labels("eval_labels"),
            1.0,
        )
        .expect("beta-vae accuracy");
        for key in ["default", "tight"] {
            close(&format!("{case} {key} train"), train, num(&r.json[case][key]["train_accuracy"]), 1e-12);
            close(&format!("{case} {key} eval"), eval, num(&r.json[case][key]["eval_accuracy"]), 1e-12);
        }
    }
}
