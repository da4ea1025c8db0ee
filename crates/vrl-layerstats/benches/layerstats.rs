//! Criterion benches of the layer statistics: one ResNet-50-sized 3×3 convolution (512 → 512) and the
//! classifier (2048 → 1000). `cargo xtask bench layers` compares a whole ResNet-50 with WeightWatcher.

use criterion::{Criterion, criterion_group, criterion_main};
use vrl_layerstats::{Options, analyze};

fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.05
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("layerstats");
    group.sample_size(10);
    let conv = [("conv", vec![512usize, 512, 3, 3], noise(512 * 512 * 9, 1))];
    group.bench_function("conv_512x512x3x3", |b| {
        b.iter(|| analyze(&conv, &Options::default()).expect("stats"))
    });
    let fc = [("fc", vec![1000usize, 2048], noise(1000 * 2048, 2))];
    group.bench_function("dense_1000x2048", |b| b.iter(|| analyze(&fc, &Options::default()).expect("stats")));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
