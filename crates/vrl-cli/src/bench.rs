//! `vrl bench`: time a step the same way `python/bench_*.py` does, for `cargo xtask bench`.

use std::process::ExitCode;
use std::time::Instant;

use tch::{Device, Kind, Tensor};
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
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum What {
    /// One MNIST CNN training step: forward, cross-entropy, backward, SGD-Nesterov with weight decay.
    MnistStep,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let threads = vrl_train::configure_threads(args.threads.unwrap_or(0));
    let What::MnistStep = args.what;
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
