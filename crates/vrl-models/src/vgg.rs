//! VGG (Simonyan & Zisserman, 2015, "Very Deep Convolutional Networks for Large-Scale Image
//! Recognition") with batch norm, as timm's `VGG`: stages of 3×3 convolutions (padding 1, with bias),
//! each followed by batch norm and ReLU, every stage closed by a 2×2 stride-2 max-pool; then timm's
//! convolutional pre-logits MLP (`ConvMlp`: a 7×7 convolution to `4096 × mlp_ratio` channels, ReLU,
//! dropout, a 1×1 convolution to 4096, ReLU — torchvision's first two fully connected layers as
//! convolutions, so that inputs larger than 224 give a map of logits that is then averaged), and the
//! classifier head: global average pooling, dropout and a linear layer. A feature map smaller than 7×7
//! is first resized to 7×7 by adaptive average pooling, as timm does.
//!
//! Registered: `vgg13_bn` (configuration "B": two convolutions per stage, widths 64-128-256-512-512).
//!
//! [`ModelArgs`] that apply:
//! - `num_classes`, `in_chans`; `drop_rate` (timm's: both the dropout inside the pre-logits MLP and the
//!   one before `head.fc`);
//! - `depths` (convolutions per stage) and `widths` (channels per stage), of equal length (any number of
//!   stages): they make timm's layer `cfg` (`[w0] × d0 + ['M'] + [w1] × d1 + ['M'] + …`);
//! - `mlp_ratio`: the hidden width of the pre-logits MLP is `int(4096 × mlp_ratio)` (default 1); its
//!   output stays 4096, as in timm;
//! - `img_size` is accepted and only checked for being positive: the network takes any input size
//!   of at least 2^stages.
//!
//! State-dict keys (timm's): `features.{i}.weight` / `.bias` for a convolution at index `i` of timm's
//! `nn.Sequential` (which counts convolution, batch norm, ReLU and max-pool alike), its batch norm at
//! `features.{i+1}.*`; `pre_logits.fc1.{weight,bias}` (`[hidden, C, 7, 7]`), `pre_logits.fc2.*`
//! (`[4096, hidden, 1, 1]`) and `head.fc.{weight,bias}`.
//!
//! Initialisation as timm: convolutions (the pre-logits ones too) Kaiming-normal with fan-out and zero
//! bias, batch norms 1 and 0, the classifier normal with std 0.01 and zero bias.

use tch::nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::layers::BatchNorm2d;
use crate::{Model, ModelArgs, ModelError};

/// Width of the pre-logits features (timm's `head_hidden_size`).
const HIDDEN: i64 = 4096;
/// Kernel of the first pre-logits convolution (the 7×7 map of the original VGG at 224×224).
const PRE_LOGITS_KERNEL: i64 = 7;

/// A registered configuration.
#[derive(Debug, Clone, Copy)]
pub struct VggConfig {
    /// timm's model name.
    pub name: &'static str,
    /// Convolutions per stage.
    pub depths: [i64; 5],
}

impl VggConfig {
    /// VGG-13 with batch norm (configuration "B").
    pub const VGG13_BN: VggConfig = VggConfig { name: "vgg13_bn", depths: [2, 2, 2, 2, 2] };
}

/// Default channels per stage.
pub const WIDTHS: [i64; 5] = [64, 128, 256, 512, 512];

fn conv_config(padding: i64) -> nn::ConvConfig {
    nn::ConvConfig {
        padding,
        ws_init: Init::Kaiming {
            dist: NormalOrUniform::Normal,
            fan: FanInOut::FanOut,
            non_linearity: NonLinearity::ReLU,
        },
        bs_init: Init::Const(0.0),
        ..Default::default()
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Vgg {
    /// Per stage, its (3×3 convolution, batch norm) pairs; each pair is followed by ReLU and each stage
    /// by a max-pool.
    stages: Vec<Vec<(nn::Conv2D, BatchNorm2d)>>,
    fc1: nn::Conv2D,
    fc2: nn::Conv2D,
    fc: nn::Linear,
    drop_rate: f64,
}

impl Vgg {
    /// Builds `config` with `args` under `p`.
    pub fn new(p: &nn::Path, config: &VggConfig, args: &ModelArgs) -> Result<Self, ModelError> {
        let name = config.name;
        args.check_supported(
            name,
            &["num_classes", "in_chans", "img_size", "drop_rate", "depths", "widths", "mlp_ratio"],
        )?;
        args.check_ranges(name)?;
        let bad = |message: String| ModelError::BadArgs { model: name.to_string(), message };
        let depths = args.depths.clone().unwrap_or_else(|| config.depths.to_vec());
        let widths = args.widths.clone().unwrap_or_else(|| WIDTHS.to_vec());
        if depths.is_empty() || depths.iter().any(|&d| d <= 0) {
            return Err(bad(format!(
                "`depths` must be one or more positive convolution counts, got {depths:?}"
            )));
        }
        if widths.len() != depths.len() || widths.iter().any(|&w| w <= 0) {
            return Err(bad(format!(
                "`widths` must be {} positive channel counts (one per stage of `depths`), got {widths:?}",
                depths.len()
            )));
        }
        let mlp_ratio = args.mlp_ratio.unwrap_or(1.0);
        // timm: int(4096 * mlp_ratio).
        let hidden = (HIDDEN as f64 * mlp_ratio).trunc();
        if !(1.0..=(1u64 << 31) as f64).contains(&hidden) {
            return Err(bad(format!("`mlp_ratio` {mlp_ratio} gives a pre-logits width of {hidden}")));
        }
        let hidden = hidden as i64;

        let fp = p / "features";
        let mut stages = Vec::new();
        let mut index = 0;
        let mut c_in = args.in_chans();
        for (&depth, &width) in depths.iter().zip(&widths) {
            let mut stage = Vec::new();
            for _ in 0..depth {
                let conv = nn::conv2d(&fp / index, c_in, width, 3, conv_config(1));
                stage.push((conv, BatchNorm2d::new(&(&fp / (index + 1)), width)));
                c_in = width;
                index += 3; // convolution, batch norm, ReLU
            }
            stages.push(stage);
            index += 1; // max-pool
        }
        let pp = p / "pre_logits";
        let fc1 = nn::conv2d(&pp / "fc1", c_in, hidden, PRE_LOGITS_KERNEL, conv_config(0));
        let fc2 = nn::conv2d(&pp / "fc2", hidden, HIDDEN, 1, conv_config(0));
        let fc = nn::linear(
            p / "head" / "fc",
            HIDDEN,
            args.num_classes_or(1000),
            nn::LinearConfig {
                ws_init: Init::Randn { mean: 0.0, stdev: 0.01 },
                bs_init: Some(Init::Const(0.0)),
                bias: true,
            },
        );
        Ok(Vgg { stages, fc1, fc2, fc, drop_rate: args.drop_rate() })
    }

    fn dropout(&self, x: Tensor, train: bool) -> Tensor {
        if train && self.drop_rate > 0.0 { x.dropout(self.drop_rate, true) } else { x }
    }
}

impl Model for Vgg {
    fn forward_features(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = x.shallow_clone();
        for stage in &self.stages {
            for (conv, bn) in stage {
                x = bn.forward_t(&x.apply(conv), train).relu();
            }
            x = x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        }
        x
    }

    /// Pre-logits MLP and classifier.
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let (h, w) = (features.size()[2], features.size()[3]);
        let x = if h < PRE_LOGITS_KERNEL || w < PRE_LOGITS_KERNEL {
            features.adaptive_avg_pool2d([h.max(PRE_LOGITS_KERNEL), w.max(PRE_LOGITS_KERNEL)])
        } else {
            features.shallow_clone()
        };
        let x = self.dropout(x.apply(&self.fc1).relu(), train);
        let x = x.apply(&self.fc2).relu();
        let x = x.mean_dim(&[2i64, 3][..], false, Kind::Float);
        self.dropout(x, train).apply(&self.fc)
    }

    /// The width the classifier sees: the 4096 pre-logits features (the convolutional features have
    /// `widths.last()` channels).
    fn num_features(&self) -> i64 {
        HIDDEN
    }

    fn head_prefixes(&self) -> &'static [&'static str] {
        &["head.fc."]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn small() -> ModelArgs {
        ModelArgs {
            depths: Some(vec![1, 2]),
            widths: Some(vec![4, 8]),
            mlp_ratio: Some(1.0 / 256.0),
            num_classes: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn keys_follow_timm_sequential_indices() {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Vgg::new(&vs.root(), &VggConfig::VGG13_BN, &small()).unwrap();
        let mut keys: Vec<String> =
            vs.variables().into_keys().filter(|k| !k.contains("running") && !k.contains("batches")).collect();
        keys.sort();
        // features: 0 conv, 1 bn, 2 relu, 3 pool, 4 conv, 5 bn, 6 relu, 7 conv, 8 bn, 9 relu, 10 pool.
        let expected = [
            "features.0.bias",
            "features.0.weight",
            "features.1.bias",
            "features.1.weight",
            "features.4.bias",
            "features.4.weight",
            "features.5.bias",
            "features.5.weight",
            "features.7.bias",
            "features.7.weight",
            "features.8.bias",
            "features.8.weight",
            "head.fc.bias",
            "head.fc.weight",
            "pre_logits.fc1.bias",
            "pre_logits.fc1.weight",
            "pre_logits.fc2.bias",
            "pre_logits.fc2.weight",
        ];
        assert_eq!(keys, expected);
        assert_eq!(vs.variables()["pre_logits.fc1.weight"].size(), [16, 8, 7, 7]);
        let y = m.forward_t(&Tensor::zeros([2, 3, 16, 16], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), [2, 3]);
    }

    #[test]
    fn initialisation_follows_timm() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let args = ModelArgs { mlp_ratio: Some(0.125), ..Default::default() };
        Vgg::new(&vs.root(), &VggConfig::VGG13_BN, &args).unwrap();
        let v = vs.variables();
        // features.7: the second 128-channel convolution, fan_out = 128·9.
        let std = v["features.7.weight"].std(true).double_value(&[]);
        let expected = (2.0 / (128.0 * 9.0f64)).sqrt();
        assert!((std / expected - 1.0).abs() < 0.02, "{std} vs {expected}");
        assert_eq!(v["features.7.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
        let std = v["head.fc.weight"].std(true).double_value(&[]);
        assert!((std / 0.01 - 1.0).abs() < 0.02, "{std}");
        assert_eq!(v["features.8.weight"].mean(Kind::Float).double_value(&[]), 1.0);
    }

    #[test]
    fn bad_args_name_the_argument() {
        let err = |args: ModelArgs| {
            let vs = nn::VarStore::new(Device::Cpu);
            Vgg::new(&vs.root(), &VggConfig::VGG13_BN, &args).unwrap_err().to_string()
        };
        assert!(err(ModelArgs { widths: Some(vec![8]), ..Default::default() }).contains("widths"));
        assert!(err(ModelArgs { mlp_ratio: Some(0.0001), ..Default::default() }).contains("mlp_ratio"));
        assert!(
            err(ModelArgs { drop_path_rate: Some(0.1), ..Default::default() }).contains("drop_path_rate")
        );
    }
}
