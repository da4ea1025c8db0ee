//! A data set held in memory as tensors, with deterministic shuffled batches.

use rayon::prelude::*;
use tch::{Kind, Tensor};

use vrl_data::{ImageSet, permutation};

/// Images `[N, C, H, W]` (float32, normalised) and labels `[N]` (int64), on the CPU.
#[derive(Debug)]
pub struct TensorDataset {
    /// The images.
    pub images: Tensor,
    /// The labels.
    pub labels: Tensor,
}

impl TensorDataset {
    /// Converts grayscale byte images to normalised float tensors: `(x / 255 - mean) / std`.
    pub fn from_images(set: &ImageSet, mean: f32, std: f32) -> Self {
        let scale = 1.0 / (255.0 * std);
        let shift = mean / std;
        let pixels: Vec<f32> = set.images.par_iter().map(|&p| f32::from(p) * scale - shift).collect();
        let images = Tensor::from_slice(&pixels).view([set.n as i64, 1, set.rows as i64, set.cols as i64]);
        let labels = Tensor::from_slice(&set.labels).to_kind(Kind::Int64);
        TensorDataset { images, labels }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of batches per epoch (the last one may be smaller).
    pub fn num_batches(&self, batch_size: usize) -> usize {
        self.len().div_ceil(batch_size.max(1))
    }

    /// The batches of one epoch, starting at batch `skip`. With `shuffle`, the order is the
    /// permutation for (`seed`, `epoch`), so it can be recomputed on resume.
    pub fn batches(
        &self,
        batch_size: usize,
        epoch: u64,
        seed: u64,
        shuffle: bool,
        skip: usize,
    ) -> Batches<'_> {
        let n = self.len();
        let order = if shuffle {
            let p: Vec<i64> = permutation(n, seed, epoch).into_iter().map(|i| i as i64).collect();
            Some(Tensor::from_slice(&p))
        } else {
            None
        };
        Batches { data: self, order, batch_size: batch_size.max(1), next: skip }
    }
}

/// Iterator over `(images, labels)` batches; see [`TensorDataset::batches`].
#[derive(Debug)]
pub struct Batches<'a> {
    data: &'a TensorDataset,
    order: Option<Tensor>,
    batch_size: usize,
    next: usize,
}

impl Iterator for Batches<'_> {
    type Item = (Tensor, Tensor);

    fn next(&mut self) -> Option<Self::Item> {
        let n = self.data.len();
        let start = self.next * self.batch_size;
        if start >= n {
            return None;
        }
        let len = self.batch_size.min(n - start);
        self.next += 1;
        Some(match &self.order {
            Some(order) => {
                let idx = order.narrow(0, start as i64, len as i64);
                (self.data.images.index_select(0, &idx), self.data.labels.index_select(0, &idx))
            }
            None => (
                self.data.images.narrow(0, start as i64, len as i64),
                self.data.labels.narrow(0, start as i64, len as i64),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> ImageSet {
        ImageSet {
            images: (0..n * 4).map(|i| (i % 256) as u8).collect(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            n,
            rows: 2,
            cols: 2,
        }
    }

    #[test]
    fn normalisation_and_shapes() {
        let d = TensorDataset::from_images(&set(5), 0.5, 0.25);
        assert_eq!(d.images.size(), [5, 1, 2, 2]);
        let first = d.images.double_value(&[0, 0, 0, 1]);
        assert!((first - (1.0 / 255.0 - 0.5) / 0.25).abs() < 1e-6);
        assert_eq!(d.labels.kind(), Kind::Int64);
    }

    #[test]
    fn batches_cover_the_set_once_and_resume_mid_epoch() {
        let d = TensorDataset::from_images(&set(23), 0.0, 1.0);
        let labels: Vec<Vec<i64>> =
            d.batches(5, 2, 9, true, 0).map(|(_, y)| Vec::<i64>::try_from(&y).unwrap()).collect();
        assert_eq!(labels.len(), d.num_batches(5));
        assert_eq!(labels.last().unwrap().len(), 3);
        let resumed: Vec<Vec<i64>> =
            d.batches(5, 2, 9, true, 2).map(|(_, y)| Vec::<i64>::try_from(&y).unwrap()).collect();
        assert_eq!(resumed, labels[2..]);
        let other_epoch: Vec<Vec<i64>> =
            d.batches(5, 3, 9, true, 0).map(|(_, y)| Vec::<i64>::try_from(&y).unwrap()).collect();
        assert_ne!(other_epoch, labels);
        let mut seen: Vec<i64> = labels.concat();
        seen.sort_unstable();
        let mut all: Vec<i64> = (0..23).map(|i| i % 10).collect();
        all.sort_unstable();
        assert_eq!(seen, all);
    }
}
