//! Criterion bench of batch assembly on CIFAR-shaped data: read 128 examples, pad-4 random crop, flip,
//! normalise, into one tensor. `cargo xtask bench data` also compares the whole loader with PyTorch's
//! `DataLoader` (`python/bench_data_loader.py`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vrl_data::transforms::Augment;
use vrl_data::{DataError, SplitMix64};
use vrl_loader::{ImageSource, make_batch};

struct Images(Vec<u8>);

impl ImageSource for Images {
    fn len(&self) -> usize {
        self.0.len() / 3072
    }
    fn shape(&self) -> [usize; 3] {
        [3, 32, 32]
    }
    fn label(&self, i: usize) -> i64 {
        (i % 10) as i64
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<(), DataError> {
        out.copy_from_slice(&self.0[i * 3072..(i + 1) * 3072]);
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let mut rng = SplitMix64::new(0);
    let source = Images((0..1024 * 3072).map(|_| rng.next_u64() as u8).collect());
    let augment = Augment::cifar_train([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]);
    let indices: Vec<usize> = (0..128).map(|i| i * 7 % 1024).collect();
    let mut group = c.benchmark_group("loader");
    group.throughput(Throughput::Elements(128));
    let mut epoch = 0;
    group.bench_function("cifar_batch_b128", |b| {
        b.iter(|| {
            epoch += 1;
            make_batch(&source, &augment, &indices, 0, epoch).expect("batch")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
