//! DenseNet (Huang et al., 2017, "Densely Connected Convolutional Networks"), as timm's `DenseNet`
//! with its default options (the torchvision architecture): a 7×7 stride-2 stem convolution to
//! `2k` channels (`k` the growth rate), BN-ReLU and a 3×3 stride-2 max-pool; dense blocks in which every
//! layer sees the concatenation of the block input and all earlier layers' outputs and adds `k`
//! channels (BN-ReLU → 1×1 convolution to `4k` → BN-ReLU → 3×3 convolution to `k`); between blocks a
//! transition (BN-ReLU → 1×1 convolution halving the channels, rounded down → 2×2 average pool); a
//! final BN-ReLU, global average pooling, dropout and a linear classifier.
//!
//! Registered: `densenet121` (growth rate 32, dense layers 6-12-24-16).
//!
//! [`ModelArgs`] that apply:
//! - `num_classes`, `in_chans`, `drop_rate` (dropout before the classifier; timm's `proj_drop_rate`
//!   inside dense layers stays 0);
//! - `depths` → timm's `block_config` (dense layers per block, any number of blocks);
//! - `widths` → timm's `growth_rate`, given as a single entry `[k]` (DenseNet has one width parameter;
//!   the stem has `2k` channels and the bottleneck `4k`, timm's `bn_size = 4`);
//! - `img_size` is accepted and only checked for being positive: the network takes any input size.
//!
//! State-dict keys (timm's): `features.conv0.weight`, `features.norm0.*`, then
//! `features.denseblock{b}.denselayer{l}.{norm1,conv1,norm2,conv2}` (1-based), between blocks
//! `features.transition{b}.norm.*` and `features.transition{b}.conv.weight`, then `features.norm5.*`
//! and `classifier.{weight,bias}`. Batch norms have `weight`, `bias`, `running_mean`, `running_var`,
//! `num_batches_tracked`.
//!
//! Initialisation as timm: convolutions Kaiming-normal with fan-in (std √(2/fan_in)), batch norms 1 and
//! 0, the classifier weight as PyTorch's `nn.Linear` default and its bias 0.

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::layers::{BatchNorm2d, pytorch_default_init};
use crate::{Model, ModelArgs, ModelError};

/// Bottleneck width of a dense layer as a multiple of the growth rate (timm's `bn_size`).
const BN_SIZE: i64 = 4;

/// A registered configuration.
#[derive(Debug, Clone, Copy)]
pub struct DenseNetConfig {
    /// timm's model name.
    pub name: &'static str,
    /// Growth rate `k`.
    pub growth_rate: i64,
    /// Dense layers per block.
    pub depths: [i64; 4],
}

impl DenseNetConfig {
    /// DenseNet-121.
    pub const DENSENET121: DenseNetConfig =
        DenseNetConfig { name: "densenet121", growth_rate: 32, depths: [6, 12, 24, 16] };
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> nn::Conv2D {
    // timm: nn.init.kaiming_normal_(w), i.e. fan-in with ReLU gain.
    let config = nn::ConvConfig {
        stride,
        padding: k / 2,
        bias: false,
        ws_init: nn::init::DEFAULT_KAIMING_NORMAL,
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, config)
}

/// Batch norm then ReLU (timm's `BatchNormAct2d`), then a convolution.
#[derive(Debug)]
struct NormConv {
    norm: BatchNorm2d,
    conv: nn::Conv2D,
}

impl NormConv {
    fn new(p: &nn::Path, (norm, conv_name): (&str, &str), c_in: i64, c_out: i64, k: i64) -> Self {
        NormConv { norm: BatchNorm2d::new(&(p / norm), c_in), conv: conv(p / conv_name, c_in, c_out, k, 1) }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.norm.forward_t(x, train).relu().apply(&self.conv)
    }
}

/// A dense block: each layer is (norm1-conv1 1×1, norm2-conv2 3×3) and its output is concatenated.
#[derive(Debug)]
struct DenseBlock {
    layers: Vec<(NormConv, NormConv)>,
}

impl DenseBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut features = x.shallow_clone();
        for (bottleneck, conv) in &self.layers {
            let new = conv.forward_t(&bottleneck.forward_t(&features, train), train);
            features = Tensor::cat(&[features, new], 1);
        }
        features
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct DenseNet {
    conv0: nn::Conv2D,
    norm0: BatchNorm2d,
    blocks: Vec<DenseBlock>,
    /// Transitions after every block but the last.
    transitions: Vec<NormConv>,
    norm5: BatchNorm2d,
    classifier: nn::Linear,
    num_features: i64,
    drop_rate: f64,
}

impl DenseNet {
    /// Builds `config` with `args` under `p`.
    pub fn new(p: &nn::Path, config: &DenseNetConfig, args: &ModelArgs) -> Result<Self, ModelError> {
        let name = config.name;
        args.check_supported(
            name,
            &["num_classes", "in_chans", "img_size", "drop_rate", "depths", "widths"],
        )?;
        args.check_ranges(name)?;
        let bad = |message: String| ModelError::BadArgs { model: name.to_string(), message };
        let depths = args.depths.clone().unwrap_or_else(|| config.depths.to_vec());
        if depths.is_empty() || depths.iter().any(|&d| d <= 0) {
            return Err(bad(format!("`depths` must be one or more positive layer counts, got {depths:?}")));
        }
        let k = match args.widths.as_deref() {
            None => config.growth_rate,
            Some(&[k]) if k > 0 => k,
            Some(w) => {
                return Err(bad(format!("`widths` must be one positive growth rate `[k]`, got {w:?}")));
            }
        };

        let fp = p / "features";
        let mut c = 2 * k;
        let conv0 = conv(&fp / "conv0", args.in_chans(), c, 7, 2);
        let norm0 = BatchNorm2d::new(&(&fp / "norm0"), c);
        let mut blocks = Vec::new();
        let mut transitions = Vec::new();
        for (b, &depth) in depths.iter().enumerate() {
            let bp = &fp / format!("denseblock{}", b + 1);
            let layers = (0..depth)
                .map(|l| {
                    let lp = &bp / format!("denselayer{}", l + 1);
                    let c_in = c + l * k;
                    (
                        NormConv::new(&lp, ("norm1", "conv1"), c_in, BN_SIZE * k, 1),
                        NormConv::new(&lp, ("norm2", "conv2"), BN_SIZE * k, k, 3),
                    )
                })
                .collect();
            blocks.push(DenseBlock { layers });
            c += depth * k;
            if b + 1 < depths.len() {
                let tp = &fp / format!("transition{}", b + 1);
                transitions.push(NormConv::new(&tp, ("norm", "conv"), c, c / 2, 1));
                c /= 2;
            }
        }
        let norm5 = BatchNorm2d::new(&(&fp / "norm5"), c);
        let classifier = nn::linear(
            p / "classifier",
            c,
            args.num_classes_or(1000),
            nn::LinearConfig {
                ws_init: pytorch_default_init(c),
                bs_init: Some(Init::Const(0.0)),
                bias: true,
            },
        );
        Ok(DenseNet {
            conv0,
            norm0,
            blocks,
            transitions,
            norm5,
            classifier,
            num_features: c,
            drop_rate: args.drop_rate(),
        })
    }
}

impl Model for DenseNet {
    fn forward_features(&self, x: &Tensor, train: bool) -> Tensor {
        let x = self.norm0.forward_t(&x.apply(&self.conv0), train).relu();
        let mut x = x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward_t(&x, train);
            if let Some(t) = self.transitions.get(i) {
                x = t.forward_t(&x, train).avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
            }
        }
        self.norm5.forward_t(&x, train).relu()
    }

    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let x = features.mean_dim(&[2i64, 3][..], false, Kind::Float);
        let x = if train && self.drop_rate > 0.0 { x.dropout(self.drop_rate, true) } else { x };
        x.apply(&self.classifier)
    }

    fn num_features(&self) -> i64 {
        self.num_features
    }

    fn head_prefixes(&self) -> &'static [&'static str] {
        &["classifier."]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn initialisation_and_widths_follow_timm() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = DenseNet::new(&vs.root(), &DenseNetConfig::DENSENET121, &ModelArgs::default()).unwrap();
        let v = vs.variables();
        // denseblock3.denselayer5.conv2: [32, 128, 3, 3], fan_in = 128·9.
        let w = &v["features.denseblock3.denselayer5.conv2.weight"];
        assert_eq!(w.size(), [32, 128, 3, 3]);
        let std = w.std(true).double_value(&[]);
        let expected = (2.0 / (128.0 * 9.0f64)).sqrt();
        assert!((std / expected - 1.0).abs() < 0.03, "{std} vs {expected}");
        // 64 + 6·32 = 256 → 128 → +12·32 = 512 → 256 → +24·32 = 1024 → 512 → +16·32 = 1024.
        assert_eq!(v["features.transition1.conv.weight"].size(), [128, 256, 1, 1]);
        assert_eq!(m.num_features(), 1024);
        assert_eq!(v["classifier.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(v["features.norm5.weight"].mean(Kind::Float).double_value(&[]), 1.0);
        assert!(!v.contains_key("features.transition4.conv.weight"));
    }

    #[test]
    fn small_network_runs_and_bad_args_are_named() {
        let vs = nn::VarStore::new(Device::Cpu);
        let args = ModelArgs {
            depths: Some(vec![1, 2]),
            widths: Some(vec![3]),
            num_classes: Some(4),
            in_chans: Some(2),
            ..Default::default()
        };
        let m = DenseNet::new(&vs.root(), &DenseNetConfig::DENSENET121, &args).unwrap();
        // 6 + 3 = 9 → 4 → + 2·3 = 10.
        assert_eq!(m.num_features(), 10);
        let y = m.forward_t(&Tensor::ones([2, 2, 32, 32], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), [2, 4]);
        let err = |args: ModelArgs| {
            let vs = nn::VarStore::new(Device::Cpu);
            DenseNet::new(&vs.root(), &DenseNetConfig::DENSENET121, &args).unwrap_err().to_string()
        };
        assert!(err(ModelArgs { widths: Some(vec![8, 8]), ..Default::default() }).contains("widths"));
        assert!(err(ModelArgs { depths: Some(vec![]), ..Default::default() }).contains("depths"));
        assert!(err(ModelArgs { cifar_stem: Some(true), ..Default::default() }).contains("cifar_stem"));
    }
}
