//! Helpers shared by the binary's end-to-end tests: the experiments directory and a toy data set in
//! the IDX layout the tests write.

#![allow(clippy::unwrap_used, dead_code)] // test helpers; each test file uses some of them

use std::path::{Path, PathBuf};

/// The source tree's `experiments/`.
pub fn experiments_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments")
}

/// Writes an IDX file of unsigned bytes with dimensions `dims`.
fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
    std::fs::write(path, vrl_data::encode_idx(dims, data)).unwrap();
}

/// A learnable toy set in the IDX layout of MNIST and Fashion-MNIST: class c lights up a 7×7 block
/// at a class-dependent place.
pub fn make_data(dir: &Path, n_train: usize, n_test: usize) {
    let mut state = 12345u64;
    let mut rand = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
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
