//! AlexNet (Krizhevsky et al., 2012, "ImageNet Classification with Deep Convolutional Neural
//! Networks"; the single-tower variant of Krizhevsky, 2014, "One weird trick…"), as torchvision's
//! `torchvision.models.alexnet` — timm has no AlexNet, so names, keys and numerics follow torchvision:
//! five convolutions with bias and ReLU (11×11 stride 4 padding 2, 5×5 padding 2, then three 3×3
//! padding 1), 3×3 stride-2 max-pools after the first, second and fifth; adaptive average pooling to
//! 6×6; and a classifier of dropout → linear → ReLU → dropout → linear → ReLU → linear.
//!
//! Registered: `alexnet` (widths 64-192-384-256-256, hidden width 4096).
//!
//! [`ModelArgs`] that apply:
//! - `num_classes`; `drop_rate` → torchvision's `dropout` (both classifier dropouts), default **0.5**
//!   as torchvision (not 0 as in timm's families);
//! - `in_chans` (default 3; torchvision has no such argument: it changes the input channels of
//!   `features.0` only);
//! - `widths`: the five convolution widths; `mlp_ratio`: the classifier's hidden width is
//!   `int(4096 × mlp_ratio)` (default 1). Neither is a torchvision argument (they make small versions
//!   for tests; the layer structure and keys stay torchvision's);
//! - `img_size`: checked to be at least 63, the smallest input the three max-pools accept (torchvision's
//!   `min_size`); otherwise the network takes any size.
//!
//! State-dict keys (torchvision's `nn.Sequential` indices): `features.{0,3,6,8,10}.{weight,bias}` for the
//! convolutions and `classifier.{1,4,6}.{weight,bias}` for the linear layers.
//!
//! Initialisation as torchvision, which keeps PyTorch's defaults: weights and biases of convolutions
//! and linear layers uniform on `±1/√fan_in`.

use tch::Tensor;
use tch::nn;

use crate::layers::pytorch_default_init;
use crate::{Model, ModelArgs, ModelError};

/// Default convolution widths.
pub const WIDTHS: [i64; 5] = [64, 192, 384, 256, 256];
/// Default hidden width of the classifier.
const HIDDEN: i64 = 4096;
/// Side of the adaptive average pool before the classifier.
const POOL: i64 = 6;
/// Smallest input side (torchvision's `min_size`).
const MIN_SIZE: i64 = 63;
/// (kernel, stride, padding, followed by a max-pool) of the five convolutions.
const CONVS: [(i64, i64, i64, bool); 5] =
    [(11, 4, 2, true), (5, 1, 2, true), (3, 1, 1, false), (3, 1, 1, false), (3, 1, 1, true)];
/// Indices of the convolutions in torchvision's `features` (ReLU and max-pools count too).
const FEATURE_KEYS: [i64; 5] = [0, 3, 6, 8, 10];

fn linear(p: nn::Path, c_in: i64, c_out: i64) -> nn::Linear {
    let init = pytorch_default_init(c_in);
    nn::linear(p, c_in, c_out, nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true })
}

/// See the module documentation.
#[derive(Debug)]
pub struct AlexNet {
    /// The convolutions, each with whether a max-pool follows.
    convs: Vec<(nn::Conv2D, bool)>,
    fc1: nn::Linear,
    fc2: nn::Linear,
    fc3: nn::Linear,
    drop_rate: f64,
}

impl AlexNet {
    /// Builds AlexNet with `args` under `p`.
    pub fn new(p: &nn::Path, args: &ModelArgs) -> Result<Self, ModelError> {
        let name = "alexnet";
        args.check_supported(
            name,
            &["num_classes", "in_chans", "img_size", "drop_rate", "widths", "mlp_ratio"],
        )?;
        args.check_ranges(name)?;
        let bad = |message: String| ModelError::BadArgs { model: name.to_string(), message };
        if let Some(s) = args.img_size.filter(|&s| s < MIN_SIZE) {
            return Err(bad(format!("`img_size` must be at least {MIN_SIZE}, got {s}")));
        }
        let widths = args.widths.clone().unwrap_or_else(|| WIDTHS.to_vec());
        if widths.len() != WIDTHS.len() || widths.iter().any(|&w| w <= 0) {
            return Err(bad(format!("`widths` must be 5 positive convolution widths, got {widths:?}")));
        }
        let mlp_ratio = args.mlp_ratio.unwrap_or(1.0);
        let hidden = (HIDDEN as f64 * mlp_ratio).trunc();
        if !(1.0..=(1u64 << 31) as f64).contains(&hidden) {
            return Err(bad(format!("`mlp_ratio` {mlp_ratio} gives a hidden width of {hidden}")));
        }
        let hidden = hidden as i64;

        let fp = p / "features";
        let mut c_in = args.in_chans();
        let mut convs = Vec::new();
        for ((&(k, stride, padding, pool), &key), &width) in CONVS.iter().zip(&FEATURE_KEYS).zip(&widths) {
            let init = pytorch_default_init(c_in * k * k);
            let config =
                nn::ConvConfig { stride, padding, ws_init: init, bs_init: init, ..Default::default() };
            convs.push((nn::conv2d(&fp / key, c_in, width, k, config), pool));
            c_in = width;
        }
        let cp = p / "classifier";
        Ok(AlexNet {
            convs,
            fc1: linear(&cp / 1, c_in * POOL * POOL, hidden),
            fc2: linear(&cp / 4, hidden, hidden),
            fc3: linear(&cp / 6, hidden, args.num_classes_or(1000)),
            drop_rate: args.drop_rate.unwrap_or(0.5),
        })
    }

    fn dropout(&self, x: Tensor, train: bool) -> Tensor {
        if train && self.drop_rate > 0.0 { x.dropout(self.drop_rate, true) } else { x }
    }
}

impl Model for AlexNet {
    fn forward_features(&self, x: &Tensor, _train: bool) -> Tensor {
        let mut x = x.shallow_clone();
        for (conv, pool) in &self.convs {
            x = x.apply(conv).relu();
            if *pool {
                x = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
            }
        }
        x
    }

    /// Adaptive average pool to 6×6, flatten, and the three-layer classifier.
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let x = features.adaptive_avg_pool2d([POOL, POOL]).flatten(1, -1);
        let x = self.dropout(x, train).apply(&self.fc1).relu();
        let x = self.dropout(x, train).apply(&self.fc2).relu();
        x.apply(&self.fc3)
    }

    /// The width the last linear layer sees (4096 by default).
    fn num_features(&self) -> i64 {
        self.fc3.ws.size()[1]
    }

    fn head_prefixes(&self) -> &'static [&'static str] {
        &["classifier.6."]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn keys_and_initialisation_follow_torchvision() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = AlexNet::new(&vs.root(), &ModelArgs::default()).unwrap();
        let v = vs.variables();
        let mut keys: Vec<&str> = v.keys().map(|k| k.as_str()).collect();
        keys.sort();
        let mut expected = Vec::new();
        for i in ["classifier.1", "classifier.4", "classifier.6", "features.0", "features.10"]
            .into_iter()
            .chain(["features.3", "features.6", "features.8"])
        {
            expected.push(format!("{i}.bias"));
            expected.push(format!("{i}.weight"));
        }
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(v["classifier.1.weight"].size(), [4096, 256 * 36]);
        // features.3: [192, 64, 5, 5], uniform on ±1/√(64·25) = ±0.025, std 0.025/√3.
        let w = &v["features.3.weight"];
        let bound = 1.0 / (64.0 * 25.0f64).sqrt();
        assert!(w.abs().max().double_value(&[]) <= bound);
        let std = w.std(true).double_value(&[]);
        assert!((std / (bound / 3f64.sqrt()) - 1.0).abs() < 0.02, "{std}");
        let b = v["classifier.4.bias"].abs().max().double_value(&[]);
        assert!(b <= 1.0 / 64.0 && b > 0.9 / 64.0, "{b}");
        assert_eq!(m.num_features(), 4096);
    }

    #[test]
    fn small_version_runs_and_bad_args_are_named() {
        let vs = nn::VarStore::new(Device::Cpu);
        let args = ModelArgs {
            widths: Some(vec![4, 4, 4, 4, 4]),
            mlp_ratio: Some(1.0 / 512.0),
            in_chans: Some(1),
            num_classes: Some(3),
            ..Default::default()
        };
        let m = AlexNet::new(&vs.root(), &args).unwrap();
        let y = m.forward_t(&Tensor::ones([2, 1, 63, 63], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), [2, 3]);
        let err = |args: ModelArgs| {
            let vs = nn::VarStore::new(Device::Cpu);
            AlexNet::new(&vs.root(), &args).unwrap_err().to_string()
        };
        assert!(err(ModelArgs { img_size: Some(32), ..Default::default() }).contains("img_size"));
        assert!(err(ModelArgs { widths: Some(vec![4; 4]), ..Default::default() }).contains("widths"));
        assert!(err(ModelArgs { depths: Some(vec![1]), ..Default::default() }).contains("depths"));
    }
}
