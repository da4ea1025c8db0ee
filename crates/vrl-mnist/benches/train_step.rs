//! Criterion bench of one MNIST training step (forward, loss, backward, SGD-Nesterov update) at batch 128.
//! `cargo xtask bench` runs it and compares the same step in PyTorch (`python/bench_mnist_step.py`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tch::{Device, Kind, Tensor};
use vrl_mnist::TrainStep;
use vrl_models::ModelArgs;
use vrl_optim::HParams;

fn bench(c: &mut Criterion) {
    let batch = 128i64;
    vrl_train::configure_threads(0);
    tch::manual_seed(0);
    let hp =
        HParams::parse(&["lr=0.05", "momentum=0.9", "nesterov=true", "weight_decay=5e-4"]).expect("hparams");
    let mut ts = TrainStep::new("mnist_cnn", &ModelArgs::default(), "sgd", &hp, Device::Cpu).expect("model");
    let x = Tensor::randn([batch, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [batch], (Kind::Int64, Device::Cpu));
    let mut group = c.benchmark_group("mnist");
    group.sample_size(30);
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function("train_step_b128", |b| {
        b.iter(|| {
            let (loss, _) = ts.step(&x, &y, 0.05).expect("step");
            loss.double_value(&[])
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
