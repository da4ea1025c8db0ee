//! The `longtail` study end to end on a few fake CIFAR-10 records (a tiny ViT, one epoch): every
//! method and ablation gets its figures at the imbalance factor, on the long-tailed counts, and the
//! training split as given (imbalance factor 0) runs too.

use std::path::Path;

use vrl_config::{ExperimentFile, Override};
use vrl_data::longtail::longtail_counts;
use vrl_train::{Outcome, RunOptions, StopSignal};

/// The six CIFAR-10 binary files with `per_class` records of each class per file; record `k` of
/// class `c` has pixels `(c · 20 + k + p) mod 256` so that images differ.
fn fake_cifar10(dir: &Path, per_class: usize) {
    let files = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ];
    for file in files {
        let mut v = Vec::new();
        for k in 0..per_class {
            for c in 0..10usize {
                v.push(c as u8);
                v.extend((0..3072).map(|p| ((c * 20 + k + p) % 256) as u8));
            }
        }
        std::fs::write(dir.join(file), v).expect("write");
    }
}

#[test]
fn tiny_run_on_fake_cifar10() {
    let data = tempfile::tempdir().expect("tempdir");
    fake_cifar10(data.path(), 4);
    let runs = tempfile::tempdir().expect("tempdir");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/longtail.toml");
    let file = ExperimentFile::load(&path).expect("experiments/longtail.toml");
    let dir = format!("data.dir=\"{}\"", data.path().display());
    let sets = [
        "data.dataset=\"cifar10\"",
        dir.as_str(),
        "data.imbalance_factors=[5.0, 0.0]",
        "ablation_ifs=[5.0]",
        "model.args={num_classes = 10, in_chans = 3, img_size = 32, patch_size = 16, depths = [1], widths = [16], num_heads = [2], mlp_ratio = 2.0}",
        "train.epochs=1",
        "train.batch_size=32",
        "train.schedule={kind = \"cosine\", warmup_steps = 1, min_lr_ratio = 0.0}",
        "stage2.epochs=1",
        "calibration.samples=20",
        "causal.blocks=[0]",
    ];
    let opts = RunOptions {
        runs_dir: runs.path().to_path_buf(),
        preset: Some("smoke".into()),
        overrides: sets.iter().map(|o| Override::parse(o).expect("override")).collect(),
        fresh: true,
        command: vec![],
    };
    let stop = StopSignal::install().expect("signals");
    let results = match vrl_longtail::run(&file, &opts, &stop, "test").expect("run") {
        Outcome::Finished { results, .. } => results,
        Outcome::Interrupted { .. } => panic!("interrupted"),
    };
    assert_eq!(results["dataset"], "cifar10");
    // 20 training images per class (4 in each of 5 batches), IF 5.
    let counts = longtail_counts(20, 10, 5.0).expect("counts");
    assert_eq!(results["train_counts"]["if5"], serde_json::json!(counts));
    // Imbalance factor 0: the training split as it is.
    assert_eq!(results["train_counts"]["as_given"], serde_json::json!(vec![20; 10]));
    assert!(results["results"]["bs"]["as_given"]["overall"].is_f64());
    let methods = ["ce", "la_posthoc", "ce_crt", "cb", "la", "bs", "tde", "causal"];
    let ablations = ["causal-no_patch", "causal-no_global", "causal-no_calibration", "causal-no_stage2"];
    for m in methods.iter().chain(&ablations) {
        let f = &results["results"][m]["if5"];
        for key in ["overall", "ece"] {
            let x = f[key].as_f64().unwrap_or_else(|| panic!("{m}: {key} = {}", f[key]));
            assert!((0.0..=1.0).contains(&x), "{m}: {key} = {x}");
        }
        assert_eq!(results["per_class"][m]["if5"].as_array().map(Vec::len), Some(10), "{m}");
    }
}
