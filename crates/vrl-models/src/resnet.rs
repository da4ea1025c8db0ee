//! ResNet (He et al., 2016, "Deep Residual Learning for Image Recognition"), as timm's `ResNet` with
//! its default ("b", torchvision-equivalent) options: a 7×7 stride-2 stem convolution with 64 channels,
//! batch norm, ReLU and a 3×3 stride-2 max-pool; four stages of residual blocks, the first at stride 1
//! and the others starting with a stride-2 block (stride on the 3×3 convolution, "ResNet v1.5"); a
//! projection shortcut (1×1 convolution and batch norm) wherever the stride or width changes; global
//! average pooling, dropout and a linear classifier.
//!
//! Registered: `resnet18` (basic blocks, depths 2-2-2-2) and `resnet50` (bottleneck blocks, expansion 4,
//! depths 3-4-6-3), widths 64-128-256-512.
//!
//! [`ModelArgs`] that apply:
//! - `num_classes`, `in_chans`, `drop_rate` (dropout before `fc`), `drop_path_rate` (stochastic depth
//!   rising linearly from 0 at the first block to the rate at the last, as timm);
//! - `depths` → timm's `layers` (blocks per stage) and `widths` → timm's `channels` (the `planes` of each
//!   stage; a bottleneck stage outputs 4× that). Both must have 4 entries (timm's forward runs
//!   `layer1` … `layer4`).
//!   The stem keeps 64 channels whatever the widths, as in timm (`inplanes = 64` without a deep stem);
//! - `img_size` is accepted and only checked for being positive: the network takes any input size;
//! - `cifar_stem: true` replaces the stem convolution by a 3×3 stride-1 convolution (padding 1, still
//!   64 channels) and drops the max-pool, for 32×32 images (the usual CIFAR ResNet of the literature).
//!   timm has no such option; the key names stay those of timm (`conv1.weight` is then `[64, C, 3, 3]`),
//!   so only the stem convolution's shape differs from a timm checkpoint.
//!
//! State-dict keys (timm's): `conv1.weight`, `bn1.*`, then for block `j` of stage `i` (1-based stages,
//! 0-based blocks) `layer{i}.{j}.conv1.weight`, `.bn1.*`, `.conv2.weight`, `.bn2.*` (and `.conv3.weight`,
//! `.bn3.*` for bottlenecks), `layer{i}.{j}.downsample.0.weight` (the shortcut convolution) and
//! `layer{i}.{j}.downsample.1.*` (its batch norm), and `fc.weight`, `fc.bias`. Batch norms have
//! `weight`, `bias`, `running_mean`, `running_var`, `num_batches_tracked`.
//!
//! Initialisation as timm: convolutions Kaiming-normal with fan-out (std √(2/fan_out)), batch norms
//! weight 1 and bias 0 except the last batch norm of each residual branch, whose weight is 0
//! (`zero_init_last`), and the classifier as PyTorch's `nn.Linear` default.

use tch::nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::layers::{BatchNorm2d, drop_path, pytorch_default_init};
use crate::{Model, ModelArgs, ModelError};

/// The two residual block types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34); expansion 1.
    Basic,
    /// 1×1 reduce, 3×3, 1×1 expand (ResNet-50 and deeper); expansion 4.
    Bottleneck,
}

impl BlockKind {
    /// Output channels per `planes`.
    pub fn expansion(self) -> i64 {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// A registered configuration: block type and blocks per stage.
#[derive(Debug, Clone, Copy)]
pub struct ResNetConfig {
    /// timm's model name.
    pub name: &'static str,
    /// Block type.
    pub block: BlockKind,
    /// Default blocks per stage.
    pub depths: [i64; 4],
}

impl ResNetConfig {
    /// ResNet-18.
    pub const RESNET18: ResNetConfig =
        ResNetConfig { name: "resnet18", block: BlockKind::Basic, depths: [2, 2, 2, 2] };
    /// ResNet-50.
    pub const RESNET50: ResNetConfig =
        ResNetConfig { name: "resnet50", block: BlockKind::Bottleneck, depths: [3, 4, 6, 3] };
}

/// Default `planes` per stage.
pub const WIDTHS: [i64; 4] = [64, 128, 256, 512];
/// Channels of the stem (fixed, as timm's default stem).
const STEM_WIDTH: i64 = 64;

/// timm's ResNet convolution initialisation.
const KAIMING_FAN_OUT: Init =
    Init::Kaiming { dist: NormalOrUniform::Normal, fan: FanInOut::FanOut, non_linearity: NonLinearity::ReLU };

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> nn::Conv2D {
    let config = nn::ConvConfig {
        stride,
        padding: k / 2,
        bias: false,
        ws_init: KAIMING_FAN_OUT,
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, config)
}

/// A convolution followed by batch norm.
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: BatchNorm2d,
}

impl ConvBn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.bn.forward_t(&x.apply(&self.conv), train)
    }
}

/// One residual block; `branch` is conv-BN pairs with ReLU between them.
#[derive(Debug)]
struct Block {
    branch: Vec<ConvBn>,
    downsample: Option<ConvBn>,
    drop_path: f64,
}

impl Block {
    /// Block under `p` from `c_in` channels, with `planes`, stride on the 3×3 convolution.
    fn new(p: &nn::Path, kind: BlockKind, c_in: i64, planes: i64, stride: i64, drop_path: f64) -> Self {
        let c_out = planes * kind.expansion();
        // (input channels, output channels, kernel, stride) of each convolution in the branch.
        let shapes: Vec<(i64, i64, i64, i64)> = match kind {
            BlockKind::Basic => vec![(c_in, planes, 3, stride), (planes, c_out, 3, 1)],
            BlockKind::Bottleneck => {
                vec![(c_in, planes, 1, 1), (planes, planes, 3, stride), (planes, c_out, 1, 1)]
            }
        };
        let last = shapes.len();
        let branch = shapes
            .into_iter()
            .enumerate()
            .map(|(i, (ci, co, k, s))| {
                let bn = BatchNorm2d::new(&(p / format!("bn{}", i + 1)), co);
                if i + 1 == last {
                    // timm's zero_init_last: each block starts as the identity.
                    let _guard = tch::no_grad_guard();
                    let _ = bn.weight.shallow_clone().zero_();
                }
                ConvBn { conv: conv(p / format!("conv{}", i + 1), ci, co, k, s), bn }
            })
            .collect();
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let d = p / "downsample";
            ConvBn { conv: conv(&d / "0", c_in, c_out, 1, stride), bn: BatchNorm2d::new(&(&d / "1"), c_out) }
        });
        Block { branch, downsample, drop_path }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        for (i, cb) in self.branch.iter().enumerate() {
            if i > 0 {
                y = y.relu();
            }
            y = cb.forward_t(&y, train);
        }
        let y = drop_path(&y, self.drop_path, train);
        let shortcut = match &self.downsample {
            Some(d) => d.forward_t(x, train),
            None => x.shallow_clone(),
        };
        (y + shortcut).relu()
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: BatchNorm2d,
    cifar_stem: bool,
    blocks: Vec<Block>,
    fc: nn::Linear,
    num_features: i64,
    drop_rate: f64,
}

impl ResNet {
    /// Builds `config` with `args` under `p`.
    pub fn new(p: &nn::Path, config: &ResNetConfig, args: &ModelArgs) -> Result<Self, ModelError> {
        let name = config.name;
        args.check_supported(
            name,
            &[
                "num_classes",
                "in_chans",
                "img_size",
                "drop_rate",
                "drop_path_rate",
                "depths",
                "widths",
                "cifar_stem",
            ],
        )?;
        args.check_ranges(name)?;
        let bad = |message: String| ModelError::BadArgs { model: name.to_string(), message };
        let depths = args.depths.clone().unwrap_or_else(|| config.depths.to_vec());
        let widths = args.widths.clone().unwrap_or_else(|| WIDTHS.to_vec());
        if depths.len() != 4 || depths.iter().any(|&d| d <= 0) {
            return Err(bad(format!("`depths` must be 4 positive block counts, got {depths:?}")));
        }
        if widths.len() != 4 || widths.iter().any(|&w| w <= 0) {
            return Err(bad(format!("`widths` must be 4 positive channel counts, got {widths:?}")));
        }
        let cifar_stem = args.cifar_stem.unwrap_or(false);
        let (k, stride) = if cifar_stem { (3, 1) } else { (7, 2) };
        let conv1 = conv(p / "conv1", args.in_chans(), STEM_WIDTH, k, stride);
        let bn1 = BatchNorm2d::new(&(p / "bn1"), STEM_WIDTH);

        let total: i64 = depths.iter().sum();
        let dpr = args.drop_path_rate();
        let mut blocks = Vec::new();
        let mut c_in = STEM_WIDTH;
        let mut index = 0;
        for (stage, (&depth, &planes)) in depths.iter().zip(&widths).enumerate() {
            let sp = p / format!("layer{}", stage + 1);
            for j in 0..depth {
                let stride = if stage > 0 && j == 0 { 2 } else { 1 };
                let rate = if total > 1 { dpr * index as f64 / (total - 1) as f64 } else { 0.0 };
                blocks.push(Block::new(&(&sp / j), config.block, c_in, planes, stride, rate));
                c_in = planes * config.block.expansion();
                index += 1;
            }
        }
        let num_classes = args.num_classes_or(1000);
        let init = pytorch_default_init(c_in);
        let fc = nn::linear(
            p / "fc",
            c_in,
            num_classes,
            nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true },
        );
        Ok(ResNet { conv1, bn1, cifar_stem, blocks, fc, num_features: c_in, drop_rate: args.drop_rate() })
    }
}

impl Model for ResNet {
    fn forward_features(&self, x: &Tensor, train: bool) -> Tensor {
        let x = self.bn1.forward_t(&x.apply(&self.conv1), train).relu();
        let mut x = if self.cifar_stem { x } else { x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false) };
        for block in &self.blocks {
            x = block.forward_t(&x, train);
        }
        x
    }

    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let x = features.mean_dim(&[2i64, 3][..], false, Kind::Float);
        let x = if train && self.drop_rate > 0.0 { x.dropout(self.drop_rate, true) } else { x };
        x.apply(&self.fc)
    }

    fn num_features(&self) -> i64 {
        self.num_features
    }

    fn head_prefixes(&self) -> &'static [&'static str] {
        &["fc."]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn build(config: &ResNetConfig, args: &ModelArgs) -> (nn::VarStore, Result<ResNet, ModelError>) {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = ResNet::new(&vs.root(), config, args);
        (vs, m)
    }

    #[test]
    fn initialisation_follows_timm() {
        tch::manual_seed(0);
        let (vs, m) = build(&ResNetConfig::RESNET50, &ModelArgs::default());
        m.unwrap();
        let v = vs.variables();
        // layer3.0.conv2: [256, 256, 3, 3], fan_out = 256·9.
        let std = v["layer3.0.conv2.weight"].std(true).double_value(&[]);
        let expected = (2.0 / (256.0 * 9.0f64)).sqrt();
        assert!((std / expected - 1.0).abs() < 0.02, "{std} vs {expected}");
        assert_eq!(v["layer3.0.bn3.weight"].abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(v["layer3.0.bn2.weight"].mean(Kind::Float).double_value(&[]), 1.0);
        assert_eq!(v["layer3.0.downsample.1.weight"].mean(Kind::Float).double_value(&[]), 1.0);
        let bound = 1.0 / 2048f64.sqrt();
        let fc = v["fc.weight"].abs().max().double_value(&[]);
        assert!(fc <= bound && fc > 0.9 * bound, "{fc}");
    }

    #[test]
    fn keys_shapes_and_cifar_stem() {
        let args = ModelArgs {
            cifar_stem: Some(true),
            widths: Some(vec![8, 16, 16, 16]),
            depths: Some(vec![1, 2, 1, 1]),
            num_classes: Some(5),
            ..Default::default()
        };
        let (vs, m) = build(&ResNetConfig::RESNET18, &args);
        let m = m.unwrap();
        let v = vs.variables();
        assert_eq!(v["conv1.weight"].size(), [64, 3, 3, 3]);
        assert!(v.contains_key("layer1.0.downsample.0.weight"), "64 → 8 channels needs a projection");
        assert!(v.contains_key("layer2.0.downsample.1.num_batches_tracked"));
        assert!(!v.contains_key("layer2.1.downsample.0.weight"));
        assert!(!v.contains_key("layer4.0.conv3.weight"));
        let y = m.forward_features(&Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu)), false);
        assert_eq!(y.size(), [2, 16, 4, 4]);
        assert_eq!(m.forward_head(&y, false).size(), [2, 5]);
    }

    #[test]
    fn bad_args_name_the_argument() {
        let err = |args: ModelArgs| build(&ResNetConfig::RESNET18, &args).1.unwrap_err().to_string();
        assert!(err(ModelArgs { widths: Some(vec![8, 16]), ..Default::default() }).contains("widths"));
        assert!(err(ModelArgs { depths: Some(vec![0, 1, 1, 1]), ..Default::default() }).contains("depths"));
        assert!(err(ModelArgs { patch_size: Some(4), ..Default::default() }).contains("patch_size"));
        assert!(err(ModelArgs { drop_rate: Some(1.5), ..Default::default() }).contains("drop_rate"));
    }
}
