//! `vrl bench`: time a step the same way `python/bench_*.py` does, for `cargo xtask bench`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tch::{Device, Kind, Tensor};
use vrl_data::transforms::Augment;
use vrl_loader::{ImageSource, Loader, LoaderConfig};
use vrl_mnist::TrainStep;
use vrl_models::ModelArgs;
use vrl_optim::HParams;

/// Arguments of `vrl bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to time.
    #[arg(value_enum)]
    what: What,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: i64,
    /// Seconds of timed steps (after 10 warm-up steps; at least 20 steps).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Intra-op threads (default: LibTorch's).
    #[arg(long)]
    threads: Option<usize>,
    /// `data`: examples in the in-memory CIFAR-format data set.
    #[arg(long, default_value_t = 50_000)]
    images: usize,
    /// `model-step`: the model (see `vrl models list`).
    #[arg(long, default_value = "resnet18")]
    model: String,
    /// `model-step`: a model argument, e.g. `--set model.num_classes=100` (repeatable); the input is
    /// `[batch, in_chans, img_size, img_size]` (default 3 channels, 32×32).
    #[arg(long = "set", value_name = "model.KEY=VALUE")]
    set: Vec<String>,
    /// `layers`: the weights (safetensors) whose layer statistics are timed.
    #[arg(long, required_if_eq("what", "layers"))]
    weights: Option<PathBuf>,
    /// `layers`: also write the statistics as CSV here (for comparing α with WeightWatcher);
    /// `metrics`: write the time and every number computed as JSON here (for comparing with Python).
    #[arg(long)]
    output: Option<PathBuf>,
    /// `optim-step`: the optimizer (`sgd` is SGD with momentum 0.9).
    #[arg(long, default_value = "adamw")]
    optimizer: String,
    /// `optim-step`: extra hyper-parameters, `KEY=VALUE` (e.g. `fused=false` for the tensor-op path).
    #[arg(long = "hparam")]
    hparams: Vec<String>,
    /// `metrics`: the metric timed (mig, sap or dci).
    #[arg(long, required_if_eq("what", "metrics"))]
    metric: Option<String>,
    /// `metrics`: codes `[N, D]` (.npy, float32 or float64).
    #[arg(long, required_if_eq("what", "metrics"))]
    codes: Option<PathBuf>,
    /// `metrics`: factors `[N, K]` (.npy, integer).
    #[arg(long, required_if_eq("what", "metrics"))]
    factors: Option<PathBuf>,
    /// `metrics`: the factor columns DCI scores (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    dci_factors: Vec<usize>,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
    /// `model-step`: also time the phases (forward with the loss, backward, optimizer step) and print
    /// their mean milliseconds on stderr, to find where a gap to PyTorch comes from.
    #[arg(long)]
    phases: bool,
    /// `model-step`: `fp32`, or `bf16` for autocast around forward and loss (weights, gradients and
    /// AdamW stay float32); the twin uses `torch.autocast` with the same dtype.
    #[arg(long, default_value = "fp32", value_parser = vrl_train::parse_precision)]
    precision: vrl_train::Precision,
    /// `model-step`: `cpu`, `cuda` or `cuda:N` (the twin takes the same); a CUDA step is timed to
    /// the loss's value, which waits for the GPU.
    #[arg(long, default_value = "cpu", value_parser = vrl_train::parse_device)]
    device: Device,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum What {
    /// One MNIST CNN training step: forward, cross-entropy, backward, SGD-Nesterov with weight decay.
    MnistStep,
    /// The loader on CIFAR-format records: decode, pad-4 random crop, flip, normalise, batch, as tensors.
    Data,
    /// One training step of a zoo model (`--model`, `--set`): forward in train mode, cross-entropy,
    /// backward, AdamW (lr 1e-3, weight decay 0.05 on weights of two or more dimensions).
    ModelStep,
    /// Layer statistics (vrl-layerstats, default options) of every layer of `--weights`, file reading
    /// included; one run (WeightWatcher's twin takes tens of seconds).
    Layers,
    /// One optimizer step over ResNet-50's 161 parameter tensors (float32, fixed random gradients),
    /// with the memory-bandwidth bound of the update (bytes it must move ÷ measured copy bandwidth).
    OptimStep,
    /// One disentanglement metric (`--metric` mig, sap or dci, disentanglement_lib's settings) on
    /// `--codes` and `--factors`; the Python twin is `python/bench_disentangle.py`. Repeated until a
    /// second has passed; the time is the mean.
    Metrics,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Layers => return layers(&args),
        What::Metrics => return metrics(&args),
        What::MnistStep | What::Data | What::ModelStep | What::OptimStep => {}
    }
    let threads = vrl_train::configure_threads(args.threads.unwrap_or(0));
    match args.what {
        What::Data => return data(&args),
        What::ModelStep => return model_step(&args, threads),
        What::OptimStep => return optim_step(&args, threads),
        What::MnistStep | What::Layers | What::Metrics => {}
    }
    tch::manual_seed(0);
    let hp = HParams::parse(&["lr=0.05", "momentum=0.9", "nesterov=true", "weight_decay=5e-4"])?;
    let mut ts = TrainStep::new("mnist_cnn", &ModelArgs::default(), "sgd", &hp, Device::Cpu)?;
    let x = Tensor::randn([args.batch_size, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [args.batch_size], (Kind::Int64, Device::Cpu));
    for _ in 0..10 {
        let _ = ts.step(&x, &y, 0.05)?;
    }
    let start = Instant::now();
    let mut steps = 0u64;
    while steps < 20 || start.elapsed().as_secs_f64() < args.seconds {
        let (loss, _) = ts.step(&x, &y, 0.05)?;
        // Like PyTorch eager on CPU, every op has run when the step returns; reading the loss keeps it honest.
        let _ = loss.double_value(&[]);
        steps += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let ips = (steps as f64 * args.batch_size as f64) / secs;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"name": "mnist_train_step", "impl": "vrl", "batch_size": args.batch_size,
                "threads": threads, "steps": steps, "images_per_sec": ips})
        );
    } else {
        println!(
            "mnist_train_step: {ips:.0} images/s ({steps} steps of {}, {threads} threads)",
            args.batch_size
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `model-step`: the PyTorch twin is `python/bench_model_step.py` (timm's model of the same name).
fn model_step(args: &BenchArgs, threads: usize) -> anyhow::Result<ExitCode> {
    let margs = crate::models::model_args(&args.set)?;
    tch::manual_seed(0);
    let hp = HParams::parse(&["lr=1e-3", "weight_decay=0.05"])?;
    let device = args.device;
    let mut ts = TrainStep::new(&args.model, &margs, "adamw", &hp, device)?.with_precision(args.precision);
    let side = margs.img_size.unwrap_or(32);
    let classes = margs.num_classes_or(1000);
    let x = Tensor::randn([args.batch_size, margs.in_chans(), side, side], (Kind::Float, device));
    let y = Tensor::randint(classes, [args.batch_size], (Kind::Int64, device));
    if args.phases {
        phases(&mut ts, &x, &y, args.seconds)?;
    }
    let (steps, secs) = time_steps(args.seconds, || {
        let (loss, _) = ts.step(&x, &y, 1e-3)?;
        let loss = loss.double_value(&[]);
        anyhow::ensure!(loss.is_finite(), "{}: the loss is not finite ({loss})", args.model);
        Ok(())
    })?;
    let ips = (steps as f64 * args.batch_size as f64) / secs;
    let name = format!("{}_step", args.model);
    if args.json {
        println!(
            "{}",
            serde_json::json!({"name": name, "impl": "vrl", "model": args.model, "batch_size": args.batch_size,
                "threads": threads, "precision": args.precision.as_str(), "device": vrl_train::device_label(device),
                "steps": steps, "images_per_sec": ips})
        );
    } else {
        println!(
            "{name}: {ips:.0} images/s ({steps} steps of {}, {threads} threads, {}, {})",
            args.batch_size,
            args.precision,
            vrl_train::device_label(device)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Mean milliseconds of forward (with the loss), backward and optimizer step over `seconds` of steps,
/// on stderr (`--phases`).
fn phases(ts: &mut TrainStep, x: &Tensor, y: &Tensor, seconds: f64) -> anyhow::Result<()> {
    let mut total = [0.0f64; 3];
    let mut phase = || -> anyhow::Result<[f64; 3]> {
        let t0 = Instant::now();
        let (loss, _) = ts.forward_loss(x, y, true, tch::Reduction::Mean)?;
        let _ = loss.double_value(&[]);
        let t1 = Instant::now();
        ts.optimizer.zero_grad();
        loss.f_backward()?;
        let t2 = Instant::now();
        ts.optimizer.step(1e-3)?;
        let t3 = Instant::now();
        Ok([(t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64(), (t3 - t2).as_secs_f64()])
    };
    for _ in 0..10 {
        phase()?;
    }
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut steps = 0u64;
    while steps < 20 || start.elapsed().as_secs_f64() < seconds {
        for (sum, t) in total.iter_mut().zip(phase()?) {
            *sum += t;
        }
        steps += 1;
    }
    let n = steps as f64;
    let cpu = cpu_start.zip(cpu_seconds()).map_or(f64::NAN, |(a, b)| (b - a) / n * 1e3);
    eprintln!(
        "phases (ms per step): forward+loss {:.1}, backward {:.1}, optimizer {:.1}; CPU time {cpu:.1}",
        total[0] / n * 1e3,
        total[1] / n * 1e3,
        total[2] / n * 1e3
    );
    Ok(())
}

/// User + system CPU seconds of this process, all threads (`/proc/self/stat`, in the kernel's
/// 100 Hz ticks): on a busy machine a steadier measure of the work per step than wall time.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which ends with the last ')'): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
    Some((ticks(14)? + ticks(15)?) / 100.0)
}

/// Runs `step` 10 times to warm up, then until `seconds` have passed (at least 20 times); returns
/// the timed steps and their seconds.
fn time_steps(seconds: f64, mut step: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<(u64, f64)> {
    for _ in 0..10 {
        step()?;
    }
    let start = Instant::now();
    let mut steps = 0u64;
    while steps < 20 || start.elapsed().as_secs_f64() < seconds {
        step()?;
        steps += 1;
    }
    Ok((steps, start.elapsed().as_secs_f64()))
}

/// CIFAR-10 binary records (label byte + 3072 planar RGB bytes) in memory; reading an example is
/// decoding its record.
struct CifarRecords {
    bytes: Vec<u8>,
}

const RECORD: usize = 1 + 3 * 32 * 32;

impl ImageSource for CifarRecords {
    fn len(&self) -> usize {
        self.bytes.len() / RECORD
    }
    fn shape(&self) -> [usize; 3] {
        [3, 32, 32]
    }
    fn label(&self, i: usize) -> i64 {
        i64::from(self.bytes[i * RECORD])
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<(), vrl_data::DataError> {
        out.copy_from_slice(&self.bytes[i * RECORD + 1..(i + 1) * RECORD]);
        Ok(())
    }
}

fn data(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let mut rng = vrl_data::SplitMix64::new(0);
    let mut bytes: Vec<u8> = (0..args.images * RECORD).map(|_| rng.next_u64() as u8).collect();
    for i in 0..args.images {
        bytes[i * RECORD] %= 10;
    }
    let config = LoaderConfig { batch_size: args.batch_size as usize, ..Default::default() };
    let augment = Augment::cifar_train([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]);
    let loader = Loader::new(Arc::new(CifarRecords { bytes }), augment, config);
    let mut batches = (0u64..).flat_map(|epoch| loader.epoch(epoch, 0));
    for _ in 0..10 {
        batches.next().transpose()?;
    }
    let start = Instant::now();
    let (mut images, mut n) = (0usize, 0usize);
    while n < 20 || start.elapsed().as_secs_f64() < args.seconds {
        let batch = batches.next().transpose()?.ok_or_else(|| anyhow::anyhow!("the loader ended"))?;
        images += batch.labels.size()[0] as usize;
        n += 1;
    }
    let ips = images as f64 / start.elapsed().as_secs_f64();
    let workers = rayon::current_num_threads();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"name": "cifar_loader", "impl": "vrl", "batch_size": args.batch_size,
                "workers": workers, "images_per_sec": ips})
        );
    } else {
        println!("cifar_loader: {ips:.0} images/s (batch {}, {workers} rayon threads)", args.batch_size);
    }
    Ok(ExitCode::SUCCESS)
}

fn layers(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let weights =
        args.weights.as_ref().ok_or_else(|| anyhow::anyhow!("`vrl bench layers` needs --weights"))?;
    let options = vrl_layerstats::Options::default();
    let start = Instant::now();
    let stats = vrl_layerstats::analyze_safetensors(weights, &options)?;
    let secs = start.elapsed().as_secs_f64();
    let fitted = stats.iter().filter(|s| s.alpha().is_some()).count();
    if let Some(path) = &args.output {
        vrl_cache::write_atomic(path, vrl_layerstats::to_csv(&stats).as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let threads = rayon::current_num_threads();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"name": "layerstats", "impl": "vrl", "weights": weights.display().to_string(),
                "layers": stats.len(), "fitted": fitted, "threads": threads, "seconds": secs,
                "layers_per_sec": stats.len() as f64 / secs})
        );
    } else {
        println!(
            "layerstats: {} layers of {} in {secs:.3} s (α fitted for {fitted}; {threads} rayon threads)",
            stats.len(),
            weights.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The benchmarked optimizers: hyper-parameters (the same in `python/bench_optim_step.py`) and the
/// float32 words each update must move per parameter element (reads + writes; for the norm-based LAMB
/// the minimum of a two-pass update: the moments and ‖u‖ (5: g, m, v read, m, v written; ‖θ‖ comes
/// from the previous step's update), then the step (4: m, v, θ read, θ written)).
pub const OPTIM_BENCH: &[(&str, &[&str], u64)] = &[
    ("sgd", &["lr=0.1", "momentum=0.9", "weight_decay=1e-4"], 5),
    ("adamw", &["lr=1e-3", "weight_decay=0.05"], 7),
    ("lamb", &["lr=1e-3", "weight_decay=0.05"], 9),
    ("lion", &["lr=1e-4", "weight_decay=0.05"], 5),
    ("adan", &["lr=1e-3", "weight_decay=0.02"], 11),
];

fn optim_step(args: &BenchArgs, threads: usize) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    // The fused kernels run on rayon's global pool: the same number of threads as LibTorch's.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    let pool = rayon::current_num_threads();
    let name = args.optimizer.to_lowercase();
    let (_, defaults, words) = OPTIM_BENCH.iter().find(|(n, _, _)| *n == name).ok_or_else(|| {
        crate::UserError(format!(
            "`--optimizer {}`: not benchmarked; expected one of {}",
            args.optimizer,
            OPTIM_BENCH.iter().map(|(n, ..)| *n).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let items: Vec<&str> = defaults.iter().copied().chain(args.hparams.iter().map(String::as_str)).collect();
    let hp = HParams::parse(&items).map_err(|e| crate::UserError(e.to_string()))?;

    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    vrl_models::create("resnet50", &vs.root(), &ModelArgs::default())?;
    let mut named: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let elements: i64 = named.iter().map(|(_, t)| t.numel() as i64).sum();
    // Fixed random gradients: d/dθ Σ θ·G = G, accumulated once; a step does not change them.
    let loss = named
        .iter()
        .map(|(_, t)| (t * Tensor::randn_like(t)).sum(Kind::Float))
        .reduce(|a, b| a + b)
        .context("no parameters")?;
    loss.backward();
    let mut opt =
        vrl_optim::create(&name, &hp, named.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect())?;
    let lr = match hp.0.get("lr") {
        Some(vrl_optim::HValue::Num(lr)) => *lr,
        _ => anyhow::bail!("no `lr` for {name}"),
    };
    for _ in 0..3 {
        opt.step(lr)?;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 10 || start.elapsed().as_secs_f64() < args.seconds {
        let t = Instant::now();
        opt.step(lr)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let (torch_copy, rayon_copy) = copy_bandwidth();
    let copy_gbps = torch_copy.max(rayon_copy);
    let bytes = words * 4 * elements as u64;
    let ms = median(&mut times) * 1e3;
    let bound_ms = bytes as f64 / (copy_gbps * 1e9) * 1e3;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"name": format!("optim_step_{name}"), "impl": "vrl", "optimizer": name,
                "params": named.len(), "elements": elements, "threads": threads, "rayon_threads": pool,
                "steps": times.len(), "ms": ms, "min_ms": times[0] * 1e3, "bytes": bytes,
                "copy_gb_per_s": copy_gbps, "torch_copy_gb_per_s": torch_copy,
                "rayon_copy_gb_per_s": rayon_copy, "bound_ms": bound_ms})
        );
    } else {
        println!(
            "optim_step {name}: {ms:.2} ms per step (median of {}; {} tensors, {elements} elements, {threads} \
             threads); bound {bound_ms:.2} ms ({:.0} MB at {copy_gbps:.1} GB/s copy bandwidth)",
            times.len(),
            named.len(),
            bytes as f64 / 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `metrics`: one metric's mean time and every number it computed (score, per-factor values,
/// matrices; in `python/bench_disentangle.py`'s order, for `--compare`).
fn metrics(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    use vrl_disentangle::{DciSettings, MigSettings, SapSettings};
    let (Some(metric), Some(codes), Some(factors)) = (&args.metric, &args.codes, &args.factors) else {
        anyhow::bail!(crate::UserError("`vrl bench metrics` needs --metric, --codes and --factors".into()));
    };
    let codes_array = crate::metrics::read_codes(codes)?;
    let factors_array = crate::metrics::read_factors(factors)?;
    let (c, f) = (codes_array.view(), factors_array.view());
    let flat = |m: &[Vec<f64>]| m.iter().flatten().copied().collect::<Vec<f64>>();
    let evaluate = || -> anyhow::Result<(f64, Vec<f64>)> {
        Ok(match metric.as_str() {
            "mig" => {
                let r = vrl_disentangle::mig(c, f, &MigSettings::default())?;
                let values = [vec![r.score], r.per_factor.clone(), flat(&r.mutual_information)].concat();
                (r.score, values)
            }
            "sap" => {
                let r = vrl_disentangle::sap(c, f, &SapSettings::default())?;
                (r.score, [vec![r.score], flat(&r.score_matrix)].concat())
            }
            "dci" => {
                let settings = DciSettings { factors: Some(args.dci_factors.clone()), ..Default::default() };
                let r = vrl_disentangle::dci(c, f, &settings)?;
                let head =
                    vec![r.disentanglement, r.completeness, r.informativeness_train, r.informativeness_test];
                (r.disentanglement, [head, flat(&r.importance)].concat())
            }
            other => {
                anyhow::bail!(crate::UserError(format!(
                    "--metric: unknown metric `{other}`; expected mig, sap or dci"
                )))
            }
        })
    };
    let start = Instant::now();
    let mut runs = 0u32;
    let (score, values) = loop {
        let result = evaluate()?;
        runs += 1;
        if start.elapsed().as_secs_f64() >= 1.0 {
            break result;
        }
    };
    let secs = start.elapsed().as_secs_f64() / f64::from(runs);
    if let Some(path) = &args.output {
        let record = serde_json::json!({"metric": metric, "seconds": secs, "values": values});
        vrl_cache::write_atomic(path, record.to_string().as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let threads = rayon::current_num_threads();
    let counted = if metric == "dci" { args.dci_factors.len() } else { factors_array.ncols() };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"name": format!("metrics_{metric}"), "impl": "vrl", "points": codes_array.nrows(),
                "codes": codes_array.ncols(), "factors": counted, "threads": threads, "runs": runs,
                "score": score, "seconds": secs, "evaluations_per_sec": 1.0 / secs})
        );
    } else {
        println!(
            "metrics_{metric}: {secs:.4} s per evaluation ({runs} runs; {} × {} codes, {counted} factors, {threads} \
             rayon threads); score {score}",
            codes_array.nrows(),
            codes_array.ncols()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The median of `values` (sorted in place; the first element is then the minimum).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Copy bandwidth in GB/s (bytes read + bytes written per second): the best of 20 copies of 64 MiB
/// of float32 (far more than the caches hold) by `copy_from_slice` (`memcpy`) of one part per rayon
/// thread, then by LibTorch's `copy_` on its threads; both are reported, the better one makes the bound.
fn copy_bandwidth() -> (f64, f64) {
    use rayon::prelude::*;
    let n = 16 << 20;
    let bytes = (2 * 4 * n) as f64;
    let (src, mut dst) = (vec![1.0f32; n], vec![0.0f32; n]);
    let mut best = f64::INFINITY;
    for _ in 0..20 {
        let t = Instant::now();
        let part = n.div_ceil(rayon::current_num_threads());
        dst.par_chunks_mut(part).zip(src.par_chunks(part)).for_each(|(d, s)| d.copy_from_slice(s));
        best = best.min(t.elapsed().as_secs_f64());
    }
    let rayon = bytes / best / 1e9;
    let src = Tensor::ones([n as i64], (Kind::Float, Device::Cpu));
    let mut dst = Tensor::zeros([n as i64], (Kind::Float, Device::Cpu));
    let mut best = f64::INFINITY;
    for _ in 0..20 {
        let t = Instant::now();
        dst.copy_(&src);
        best = best.min(t.elapsed().as_secs_f64());
    }
    (bytes / best / 1e9, rayon)
}
