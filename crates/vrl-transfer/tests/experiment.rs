//! The `transfer` experiment end to end on a tiny preset (a 2-block ViT of width 16, a few steps,
//! toy digits written by the test in MNIST's layout): outputs, the checkpoint cache, resume after
//! an interruption, and configuration errors.

use std::path::{Path, PathBuf};

use serde_json::Value;
use vrl_config::{ExperimentFile, Override};
use vrl_train::{Outcome, RunOptions, StopSignal};

/// `experiments/transfer.toml` with a `tiny` preset appended.
fn experiment() -> ExperimentFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/transfer.toml");
    let text = std::fs::read_to_string(&path).expect("experiments/transfer.toml");
    let tiny = r#"
[presets.tiny]
description = "tests: a width-16 ViT, 64 toy images, four tuning steps per method"
config = { device = "cpu", threads = 1, model = { args = { in_chans = 1, img_size = 28, patch_size = 7, depths = [2], widths = [16], num_heads = [2], mlp_ratio = 2.0 } }, pretrain = { images = 64, test_images = 32, supervised = { epochs = 1, batch_size = 32, optimizer = "adamw", hparams = { lr = 1e-3 }, schedule = { kind = "cosine", warmup_steps = 0, min_lr_ratio = 0.0 } }, mae = { epochs = 1, batch_size = 32, optimizer = "adamw", hparams = { lr = 1e-3 }, schedule = { kind = "cosine", warmup_steps = 0, min_lr_ratio = 0.0 }, mask_ratio = 0.75, norm_pix_loss = true, decoder_embed_dim = 8, decoder_depth = 1, decoder_num_heads = 2 } }, data = { train_images = 64, test_images = 32 }, settings = { num_prompts = 3, lowrank_rank = 2, whitening_images = 32, toast = { lambda_var = 0.1, pretune_steps = 2, pretune_lr = 1e-3 } }, tune = { steps = 4, batch_size = 16, eval_every = 2, eval_batch_size = 16, schedule = { kind = "cosine", warmup_steps = 0, min_lr_ratio = 0.0 } }, burstiness = { images = 8, bins = 10, range = 4.0 } }
"#;
    ExperimentFile::parse(&format!("{text}{tiny}"), path).expect("parse")
}

fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
    std::fs::write(path, vrl_data::encode_idx(dims, data)).expect("write idx");
}

/// A learnable toy set in MNIST's layout: class c lights up a 7×7 block at a class-dependent place.
fn make_data(dir: &Path, n: usize) {
    let mut state = 12345u64;
    let mut rand = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    for prefix in ["train", "t10k"] {
        let mut images = vec![0u8; n * 784];
        let mut labels = vec![0u8; n];
        for i in 0..n {
            let c = (rand() % 10) as usize;
            labels[i] = c as u8;
            let (r0, c0) = ((c / 4) * 7 + 2, (c % 4) * 7);
            for r in 0..28 {
                for col in 0..28 {
                    let noise = (rand() % 60) as u8;
                    let on = (r0..r0 + 7).contains(&r) && (c0..c0 + 7).contains(&col);
                    images[i * 784 + r * 28 + col] = if on { 200u8.saturating_add(noise / 2) } else { noise };
                }
            }
        }
        write_idx(&dir.join(format!("{prefix}-images-idx3-ubyte")), &[n as u32, 28, 28], &images);
        write_idx(&dir.join(format!("{prefix}-labels-idx1-ubyte")), &[n as u32], &labels);
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    cache: PathBuf,
    root: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    let data = root.join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    make_data(&data, 96);
    Fixture { data, cache: root.join("cache"), root, _tmp: tmp }
}

fn options(f: &Fixture, runs: &str, extra: &[&str]) -> RunOptions {
    let mut o = vec![
        format!("data.dir={:?}", f.data.display().to_string()),
        format!("pretrain.dir={:?}", f.data.display().to_string()),
        format!("pretrain.cache_dir={:?}", f.cache.display().to_string()),
    ];
    o.extend(extra.iter().map(|s| s.to_string()));
    RunOptions {
        runs_dir: f.root.join(runs),
        preset: Some("tiny".into()),
        overrides: o.iter().map(|s| Override::parse(s).expect("override")).collect(),
        fresh: false,
        command: vec![],
    }
}

fn finished(outcome: Outcome) -> (PathBuf, Value, bool) {
    match outcome {
        Outcome::Finished { dir, results, already } => (dir, results, already),
        Outcome::Interrupted { .. } => panic!("interrupted"),
    }
}

/// `v` without what depends on the clock or on the cache: `*seconds*`, `cached`, `timing`.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !(k.contains("seconds") || *k == "cached" || *k == "timing"))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        other => other.clone(),
    }
}

const METHODS: [&str; 10] = [
    "linear",
    "full_ft",
    "vpt_shallow",
    "vpt_deep",
    "bpt_full_shallow",
    "bpt_full_deep",
    "bpt_lowrank_shallow",
    "bpt_lowrank_deep",
    "lora",
    "toast",
];

#[test]
fn tiny_preset_runs_end_to_end_caches_backbones_and_resumes() {
    let file = experiment();
    let f = fixture();
    let stop = StopSignal::install().expect("signals");
    let (dir, results, already) =
        finished(vrl_transfer::run(&file, &options(&f, "a", &[]), &stop, "test").expect("run"));
    assert!(!already);
    for backbone in ["supervised", "mae"] {
        let b = &results["backbones"][backbone];
        assert_eq!(b["pretrain"]["cached"], false, "{backbone}");
        for m in METHODS {
            let r = &results["results"][backbone][m];
            let top1 = r["top1"].as_f64().unwrap_or(f64::NAN);
            assert!((0.0..=1.0).contains(&top1), "{backbone}/{m}: {r}");
            let full = &b["methods"][m];
            assert_eq!(full["trainable_params"], full["trainable_params_formula"], "{backbone}/{m}");
            assert!(r["steps_to_90pct_final"].as_u64().is_some(), "{backbone}/{m}");
            assert!(r["train_seconds"].as_f64().is_some_and(|s| s > 0.0));
            assert_eq!(full["curve"].as_array().map(Vec::len), Some(3), "steps 0, 2, 4");
        }
        // Bilinear prompts train fewer parameters in low rank; VPT deep has depth × the shallow prompts.
        let p = |m: &str| b["methods"][m]["trainable_params"].as_i64().unwrap_or(0);
        assert_eq!(p("vpt_deep") - p("linear"), 2 * (p("vpt_shallow") - p("linear")));
        assert_eq!(p("bpt_lowrank_shallow") - p("linear"), (3 + 16) * 2);
        let layers = b["burstiness"]["layers"].as_array().expect("burstiness");
        assert_eq!(layers.len(), 2);
        for l in layers {
            assert!(l["kurtosis"].as_f64().is_some_and(f64::is_finite), "{l}");
            assert!(l["kurtosis_whitened"].as_f64().is_some_and(f64::is_finite), "{l}");
        }
    }
    assert!(results["backbones"]["supervised"]["pretrain"]["test_accuracy"].as_f64().is_some());
    assert!(results["headline"]["top1_mae"]["toast"].as_f64().is_some());
    for file in [
        "results.json",
        "report.md",
        "metrics.jsonl",
        "convergence_mae_prompts.svg",
        "convergence_supervised_others.svg",
        "burstiness_mae_before.svg",
        "burstiness_mae_after.svg",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let report = std::fs::read_to_string(dir.join("report.md")).expect("report");
    assert!(report.contains("bpt_lowrank_deep") && report.contains("kurtosis"), "{report}");
    let ckpts: Vec<PathBuf> = std::fs::read_dir(&f.cache)
        .expect("cache")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    assert_eq!(ckpts.len(), 2, "{ckpts:?}");

    // Finished: nothing runs again.
    let (_, _, already) =
        finished(vrl_transfer::run(&file, &options(&f, "a", &[]), &stop, "test").expect("again"));
    assert!(already);

    // An interruption during the MAE backbone's LoRA: the methods after it, and the summary, are
    // missing (`lora`'s half-written metrics too). The same command finishes with the same results.
    for m in ["lora", "toast"] {
        std::fs::remove_file(dir.join("mae").join(m).join("result.json")).expect("remove");
    }
    std::fs::remove_dir_all(dir.join("mae/toast")).expect("remove");
    std::fs::remove_file(dir.join("results.json")).expect("remove");
    let (dir2, resumed, already) =
        finished(vrl_transfer::run(&file, &options(&f, "a", &[]), &stop, "test").expect("resume"));
    assert!(!already);
    assert_eq!(dir2, dir);
    assert_eq!(resumed["backbones"]["mae"]["pretrain"]["cached"], true);
    assert_eq!(strip(&resumed), strip(&results));

    // A new run elsewhere reuses the cached backbones and computes the same numbers.
    let (_, fresh, _) = finished(vrl_transfer::run(&file, &options(&f, "b", &[]), &stop, "test").expect("b"));
    assert_eq!(fresh["backbones"]["supervised"]["pretrain"]["cached"], true);
    assert_eq!(strip(&fresh), strip(&results));
}

#[test]
fn bad_settings_are_clear_errors() {
    let file = experiment();
    let f = fixture();
    let stop = StopSignal::install().expect("signals");
    let err = |extra: &[&str]| {
        vrl_transfer::run(&file, &options(&f, "runs", extra), &stop, "t").expect_err("must fail").to_string()
    };
    let e = err(&["methods=[\"linear\", \"adapter\"]"]);
    assert!(e.contains("unknown method `adapter`") && e.contains("methods"), "{e}");
    let e = err(&["settings.num_prompts=2"]);
    assert!(
        e.contains("settings.num_prompts") && e.contains("bpt_lowrank") && e.contains("got num_prompts = 2"),
        "{e}"
    );
    let e = err(&["settings.num_prompts=0", "methods=[\"vpt_deep\"]"]);
    assert!(e.contains("settings.num_prompts") && e.contains("got 0"), "{e}");
    let e = err(&["tune.stepz=3"]);
    assert!(e.contains("stepz"), "{e}");
    let e = err(&[
        "backbones=[{name = \"mae\", source = \"checkpoint\", checkpoint = \"/no/such/vit_base.safetensors\"}]",
    ]);
    assert!(e.contains("backbones[0].checkpoint") && e.contains("/no/such/vit_base.safetensors"), "{e}");
    let e = err(&["backbones=[{name = \"mae\", source = \"imagenet\"}]"]);
    assert!(e.contains("unknown source `imagenet`"), "{e}");
    // The paper preset parses, then names what the user must provide: the checkpoint, then the data.
    let paper = |extra: &[&str]| {
        let mut o = options(&f, "runs", extra);
        o.preset = Some("paper".into());
        vrl_transfer::run(&file, &o, &stop, "t").expect_err("paper without files").to_string()
    };
    let e = paper(&[]);
    assert!(e.contains("backbones[0].checkpoint") && e.contains("safetensors"), "{e}");
    let ckpt = f.root.join("vit.safetensors");
    std::fs::write(&ckpt, b"not read before the data is checked").expect("write");
    let e = paper(&[&format!(
        "backbones=[{{name = \"mae\", source = \"checkpoint\", checkpoint = {:?}}}]",
        ckpt.display().to_string()
    )]);
    assert!(e.contains("data.train_dir"), "{e}");
}
