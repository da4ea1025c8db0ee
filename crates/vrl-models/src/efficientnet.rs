//! timm's EfficientNet builder family: networks of depthwise-separable and inverted-residual
//! ("MBConv") blocks described by block strings, as in timm's `efficientnet.py`,
//! `_efficientnet_builder.py` and `_efficientnet_blocks.py`.
//!
//! Registered configurations (timm's names; each is an [`EfficientNetArch`] holding timm's arch
//! strings verbatim, decoded at build time by the same rules as timm's `decode_arch_def`):
//!
//! - `mobilenetv2_100`: MobileNetV2 (Sandler et al., 2018, "MobileNetV2: Inverted Residuals and
//!   Linear Bottlenecks"), ReLU6, no squeeze-excitation, head width `max(1280, round(1280·w))`.
//! - `efficientnet_b0`: EfficientNet-B0 (Tan & Le, 2019, "EfficientNet: Rethinking Model Scaling for
//!   Convolutional Neural Networks"), SiLU, squeeze-excitation 0.25 in every block, head width
//!   `round(1280·w)`.
//!
//! These are timm's PyTorch-native variants: symmetric padding `((s − 1) + (k − 1)) / 2` (not TF
//! "same"), batch norm eps 1e-5 and momentum 0.1 (timm's `BatchNormAct2d` defaults; the `tf_` variants
//! with eps 1e-3 are not registered).
//!
//! # Arguments
//!
//! - `num_classes` (1000), `in_chans` (3), `drop_rate` (dropout before the classifier, 0),
//!   `drop_path_rate` (stochastic depth, `rate · i / n` for the i-th of n blocks, 0).
//! - `width_multiplier` (timm's `channel_multiplier`, 1): every channel count `c` of the arch strings,
//!   the stem and the head becomes `make_divisible(c · w, 8)` (nearest multiple of 8, at least 8, and
//!   never below 90% of `c · w`).
//! - `depth_multiplier` (timm's `depth_multiplier`, 1): each stage's repeat count `r` becomes
//!   `ceil(r · d)`.
//! - `cifar_stem`: the stem convolution gets stride 1 instead of 2 (keys unchanged), for 32×32
//!   images.
//! - `img_size` is accepted and unused (the network takes any input size); `depths`, `widths`,
//!   `num_heads`, `mlp_ratio` and `patch_size` do not apply and are rejected.
//!
//! # Keys
//!
//! `conv_stem.weight`, `bn1.*` (batch norm: `weight`, `bias`, `running_mean`, `running_var`,
//! `num_batches_tracked`), then for stage `S`, block `B`:
//!
//! - depthwise-separable (`ds`): `blocks.S.B.conv_dw.weight`, `…bn1.*`, [`…se.conv_reduce.{weight,bias}`,
//!   `…se.conv_expand.{weight,bias}`], `…conv_pw.weight`, `…bn2.*`;
//! - inverted residual (`ir`): `blocks.S.B.conv_pw.weight`, `…bn1.*`, `…conv_dw.weight`, `…bn2.*`,
//!   [`…se.*`], `…conv_pwl.weight`, `…bn3.*`;
//!
//! then `conv_head.weight`, `bn2.*`, `classifier.{weight,bias}`. Convolutions have no bias except the
//! squeeze-excitation ones.
//!
//! Initialisation as timm's `_init_weight_goog`: convolutions normal with std `sqrt(2 / fan_out)`,
//! `fan_out = k·k·out / groups`, biases 0; batch norm weight 1, bias 0; the classifier uniform in
//! `±1 / sqrt(num_classes)`, bias 0.

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::layers::{BatchNorm2d, drop_path};
use crate::{Model, ModelArgs, ModelError};

/// Activation of a whole network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `min(max(x, 0), 6)` (MobileNetV2).
    Relu6,
    /// `x · sigmoid(x)` (EfficientNet's "swish").
    Silu,
}

impl Activation {
    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::Silu => x.silu(),
        }
    }
}

/// How the width of the final 1×1 convolution follows the width multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadWidth {
    /// `round_channels(base · w)` (EfficientNet).
    Scaled(i64),
    /// `max(base, round_channels(base · w))` (MobileNetV2 never narrows its head).
    AtLeast(i64),
}

/// A network of the family: timm's arch strings and the few settings around them.
#[derive(Debug, Clone, Copy)]
pub struct EfficientNetArch {
    /// Registry name (for error messages).
    pub name: &'static str,
    /// One list of block strings per stage, in timm's notation: block type `ds` or `ir`, then `rN`
    /// repeats, `kN` depthwise kernel, `sN` stride of the first block, `eX` expansion ratio, `cN`
    /// output channels, `seX` squeeze-excitation ratio (of the block input), `noskip`.
    pub stages: &'static [&'static [&'static str]],
    /// Stem channels before width scaling.
    pub stem: i64,
    /// Head (final 1×1 convolution) width.
    pub head: HeadWidth,
    /// Activation everywhere (blocks, stem, head, squeeze-excitation).
    pub act: Activation,
}

impl EfficientNetArch {
    /// timm's `_gen_mobilenet_v2` arch definition.
    pub const MOBILENETV2_100: EfficientNetArch = EfficientNetArch {
        name: "mobilenetv2_100",
        stages: &[
            &["ds_r1_k3_s1_c16"],
            &["ir_r2_k3_s2_e6_c24"],
            &["ir_r3_k3_s2_e6_c32"],
            &["ir_r4_k3_s2_e6_c64"],
            &["ir_r3_k3_s1_e6_c96"],
            &["ir_r3_k3_s2_e6_c160"],
            &["ir_r1_k3_s1_e6_c320"],
        ],
        stem: 32,
        head: HeadWidth::AtLeast(1280),
        act: Activation::Relu6,
    };

    /// timm's `_gen_efficientnet` arch definition (B0 is multipliers 1, 1).
    pub const EFFICIENTNET_B0: EfficientNetArch = EfficientNetArch {
        name: "efficientnet_b0",
        stages: &[
            &["ds_r1_k3_s1_e1_c16_se0.25"],
            &["ir_r2_k3_s2_e6_c24_se0.25"],
            &["ir_r2_k5_s2_e6_c40_se0.25"],
            &["ir_r3_k3_s2_e6_c80_se0.25"],
            &["ir_r3_k5_s1_e6_c112_se0.25"],
            &["ir_r4_k5_s2_e6_c192_se0.25"],
            &["ir_r1_k3_s1_e6_c320_se0.25"],
        ],
        stem: 32,
        head: HeadWidth::Scaled(1280),
        act: Activation::Silu,
    };
}

/// A decoded block string.
#[derive(Debug, Clone, PartialEq)]
struct BlockSpec {
    inverted: bool,
    repeats: i64,
    kernel: i64,
    stride: i64,
    exp_ratio: f64,
    out_chs: i64,
    se_ratio: f64,
    noskip: bool,
}

/// Decodes one of timm's block strings (the subset of options this family uses).
fn decode_block(s: &str) -> Result<BlockSpec, String> {
    let mut ops = s.split('_');
    let inverted = match ops.next() {
        Some("ir") => true,
        Some("ds") => false,
        other => return Err(format!("block string `{s}`: unsupported block type {other:?}")),
    };
    let mut spec = BlockSpec {
        inverted,
        repeats: 0,
        kernel: 0,
        stride: 0,
        exp_ratio: 1.0,
        out_chs: 0,
        se_ratio: 0.0,
        noskip: false,
    };
    for op in ops {
        if op == "noskip" {
            spec.noskip = true;
            continue;
        }
        let split =
            op.find(|c: char| c.is_ascii_digit()).ok_or_else(|| format!("block string `{s}`: `{op}`"))?;
        let (key, value) = op.split_at(split);
        let bad = || format!("block string `{s}`: bad value in `{op}`");
        let int = || value.parse::<i64>().map_err(|_| bad());
        let float = || value.parse::<f64>().map_err(|_| bad());
        match key {
            "r" => spec.repeats = int()?,
            "k" => spec.kernel = int()?,
            "s" => spec.stride = int()?,
            "c" => spec.out_chs = int()?,
            "e" => spec.exp_ratio = float()?,
            "se" => spec.se_ratio = float()?,
            _ => return Err(format!("block string `{s}`: unsupported option `{op}`")),
        }
    }
    if spec.repeats < 1 || spec.kernel < 1 || !(1..=2).contains(&spec.stride) || spec.out_chs < 1 {
        return Err(format!("block string `{s}`: needs r, k, s (1 or 2) and c"));
    }
    Ok(spec)
}

/// timm's `make_divisible(v, 8)`: nearest multiple of 8, at least 8, and not below 90% of `v`.
fn make_divisible(v: f64) -> i64 {
    const DIVISOR: i64 = 8;
    let rounded = ((v + DIVISOR as f64 / 2.0).trunc() as i64 / DIVISOR * DIVISOR).max(DIVISOR);
    if (rounded as f64) < 0.9 * v { rounded + DIVISOR } else { rounded }
}

/// timm's `round_channels(c, multiplier)`.
fn round_channels(c: i64, multiplier: f64) -> i64 {
    make_divisible(c as f64 * multiplier)
}

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, groups: i64, bias: bool) -> nn::Conv2D {
    let fan_out = k * k * cout / groups;
    let config = nn::ConvConfig {
        stride,
        padding: ((stride - 1) + (k - 1)) / 2,
        groups,
        bias,
        ws_init: Init::Randn { mean: 0.0, stdev: (2.0 / fan_out as f64).sqrt() },
        bs_init: Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, config)
}

/// timm's `SqueezeExcite`: global mean → 1×1 conv → act → 1×1 conv → sigmoid gate.
#[derive(Debug)]
struct SqueezeExcite {
    conv_reduce: nn::Conv2D,
    conv_expand: nn::Conv2D,
}

impl SqueezeExcite {
    fn new(p: &nn::Path, chs: i64, rd_ratio: f64) -> Self {
        // Python's round(): halves to even.
        let rd = (chs as f64 * rd_ratio).round_ties_even() as i64;
        SqueezeExcite {
            conv_reduce: conv(p / "conv_reduce", chs, rd, 1, 1, 1, true),
            conv_expand: conv(p / "conv_expand", rd, chs, 1, 1, 1, true),
        }
    }

    fn forward(&self, x: &Tensor, act: Activation) -> Tensor {
        let s = x.mean_dim(&[2i64, 3][..], true, Kind::Float);
        let s = act.apply(&s.apply(&self.conv_reduce)).apply(&self.conv_expand);
        x * s.sigmoid()
    }
}

/// A depthwise-separable or inverted-residual block.
#[derive(Debug)]
struct Block {
    /// Inverted residual: point-wise expansion and its norm (`conv_pw`, `bn1`).
    expand: Option<(nn::Conv2D, BatchNorm2d)>,
    conv_dw: nn::Conv2D,
    bn_dw: BatchNorm2d,
    se: Option<SqueezeExcite>,
    /// Point-wise projection (`conv_pw`/`bn2` in `ds`, `conv_pwl`/`bn3` in `ir`), no activation.
    project: nn::Conv2D,
    bn_project: BatchNorm2d,
    has_skip: bool,
    drop_path: f64,
}

impl Block {
    fn new(p: &nn::Path, spec: &BlockSpec, cin: i64, cout: i64, stride: i64, drop_path: f64) -> Self {
        let k = spec.kernel;
        let has_skip = stride == 1 && cin == cout && !spec.noskip;
        if spec.inverted {
            let mid = make_divisible(cin as f64 * spec.exp_ratio);
            // timm's builder gives SE the ratio of the block input: se_ratio / exp_ratio of `mid`.
            let se = (spec.se_ratio > 0.0)
                .then(|| SqueezeExcite::new(&(p / "se"), mid, spec.se_ratio / spec.exp_ratio));
            Block {
                expand: Some((
                    conv(p / "conv_pw", cin, mid, 1, 1, 1, false),
                    BatchNorm2d::new(&(p / "bn1"), mid),
                )),
                conv_dw: conv(p / "conv_dw", mid, mid, k, stride, mid, false),
                bn_dw: BatchNorm2d::new(&(p / "bn2"), mid),
                se,
                project: conv(p / "conv_pwl", mid, cout, 1, 1, 1, false),
                bn_project: BatchNorm2d::new(&(p / "bn3"), cout),
                has_skip,
                drop_path,
            }
        } else {
            // `ds` blocks carry no expansion ratio in timm's decoded args: the SE ratio is used as is.
            let se = (spec.se_ratio > 0.0).then(|| SqueezeExcite::new(&(p / "se"), cin, spec.se_ratio));
            Block {
                expand: None,
                conv_dw: conv(p / "conv_dw", cin, cin, k, stride, cin, false),
                bn_dw: BatchNorm2d::new(&(p / "bn1"), cin),
                se,
                project: conv(p / "conv_pw", cin, cout, 1, 1, 1, false),
                bn_project: BatchNorm2d::new(&(p / "bn2"), cout),
                has_skip,
                drop_path,
            }
        }
    }

    fn forward(&self, x: &Tensor, act: Activation, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        if let Some((conv_pw, bn1)) = &self.expand {
            y = act.apply(&bn1.forward_t(&y.apply(conv_pw), train));
        }
        y = act.apply(&self.bn_dw.forward_t(&y.apply(&self.conv_dw), train));
        if let Some(se) = &self.se {
            y = se.forward(&y, act);
        }
        y = self.bn_project.forward_t(&y.apply(&self.project), train);
        if self.has_skip { drop_path(&y, self.drop_path, train) + x } else { y }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct EfficientNet {
    conv_stem: nn::Conv2D,
    bn1: BatchNorm2d,
    blocks: Vec<Block>,
    conv_head: nn::Conv2D,
    bn2: BatchNorm2d,
    classifier: nn::Linear,
    act: Activation,
    num_features: i64,
    drop_rate: f64,
}

impl EfficientNet {
    /// Builds `arch` under `p` with `args` (see the module documentation).
    pub fn new(p: &nn::Path, arch: &EfficientNetArch, args: &ModelArgs) -> Result<Self, ModelError> {
        let bad = |message: String| ModelError::BadArgs { model: arch.name.into(), message };
        for (set, name) in [
            (args.depths.is_some(), "depths"),
            (args.widths.is_some(), "widths"),
            (args.num_heads.is_some(), "num_heads"),
            (args.mlp_ratio.is_some(), "mlp_ratio"),
            (args.patch_size.is_some(), "patch_size"),
            (args.window_size.is_some(), "window_size"),
        ] {
            if set {
                return Err(bad(format!(
                    "`{name}` does not apply; scale with `width_multiplier` / `depth_multiplier`"
                )));
            }
        }
        let (num_classes, in_chans) = (args.num_classes_or(1000), args.in_chans());
        let (w, d) = (args.width_multiplier.unwrap_or(1.0), args.depth_multiplier.unwrap_or(1.0));
        if num_classes < 1 || in_chans < 1 {
            return Err(bad("`num_classes` and `in_chans` must be positive".into()));
        }
        if !(w.is_finite() && w > 0.0 && w <= 16.0) {
            return Err(bad(format!("`width_multiplier` must be in (0, 16], got {w}")));
        }
        if !(d.is_finite() && d > 0.0 && d <= 16.0) {
            return Err(bad(format!("`depth_multiplier` must be in (0, 16], got {d}")));
        }
        if !(0.0..1.0).contains(&args.drop_rate()) || !(0.0..1.0).contains(&args.drop_path_rate()) {
            return Err(bad("`drop_rate` and `drop_path_rate` must be in [0, 1)".into()));
        }
        if args.img_size.is_some_and(|s| s < 1) {
            return Err(bad("`img_size` must be positive".into()));
        }

        // Decode and scale depths as timm's `decode_arch_def` (`_scale_stage_depth`, 'ceil').
        let mut stages: Vec<Vec<BlockSpec>> = Vec::new();
        for strings in arch.stages {
            let specs =
                strings.iter().map(|s| decode_block(s)).collect::<Result<Vec<_>, _>>().map_err(bad)?;
            let total: i64 = specs.iter().map(|s| s.repeats).sum();
            let mut left_scaled = (total as f64 * d).ceil() as i64;
            let mut left = total;
            // Repeats are shared out from the last block string backwards, as timm.
            let mut scaled = vec![0; specs.len()];
            for (i, spec) in specs.iter().enumerate().rev() {
                let r = ((spec.repeats as f64 / left as f64 * left_scaled as f64).round_ties_even() as i64)
                    .max(1);
                scaled[i] = r;
                left -= spec.repeats;
                left_scaled -= r;
            }
            stages.push(
                specs
                    .iter()
                    .zip(scaled)
                    .flat_map(|(s, r)| std::iter::repeat_n(s.clone(), r as usize))
                    .collect(),
            );
        }
        let block_count = stages.iter().map(Vec::len).sum::<usize>() as f64;

        let stem = round_channels(arch.stem, w);
        let stem_stride = if args.cifar_stem.unwrap_or(false) { 1 } else { 2 };
        let conv_stem = conv(p / "conv_stem", in_chans, stem, 3, stem_stride, 1, false);
        let bn1 = BatchNorm2d::new(&(p / "bn1"), stem);
        let mut blocks = Vec::new();
        let mut cin = stem;
        let mut index = 0.0;
        for (s, specs) in stages.iter().enumerate() {
            for (b, spec) in specs.iter().enumerate() {
                let cout = round_channels(spec.out_chs, w);
                let stride = if b == 0 { spec.stride } else { 1 };
                let dp = args.drop_path_rate() * index / block_count;
                blocks.push(Block::new(&(p / "blocks" / s / b), spec, cin, cout, stride, dp));
                cin = cout;
                index += 1.0;
            }
        }
        let num_features = match arch.head {
            HeadWidth::Scaled(c) => round_channels(c, w),
            HeadWidth::AtLeast(c) => round_channels(c, w).max(c),
        };
        let conv_head = conv(p / "conv_head", cin, num_features, 1, 1, 1, false);
        let bn2 = BatchNorm2d::new(&(p / "bn2"), num_features);
        let range = 1.0 / (num_classes as f64).sqrt();
        let classifier = nn::linear(
            p / "classifier",
            num_features,
            num_classes,
            nn::LinearConfig {
                ws_init: Init::Uniform { lo: -range, up: range },
                bs_init: Some(Init::Const(0.0)),
                bias: true,
            },
        );
        Ok(EfficientNet {
            conv_stem,
            bn1,
            blocks,
            conv_head,
            bn2,
            classifier,
            act: arch.act,
            num_features,
            drop_rate: args.drop_rate(),
        })
    }
}

impl Model for EfficientNet {
    fn forward_features(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = self.act.apply(&self.bn1.forward_t(&x.apply(&self.conv_stem), train));
        for block in &self.blocks {
            x = block.forward(&x, self.act, train);
        }
        self.act.apply(&self.bn2.forward_t(&x.apply(&self.conv_head), train))
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
    fn channel_rounding_is_timms() {
        // Values from timm.layers.make_divisible.
        assert_eq!(make_divisible(4.0), 8);
        assert_eq!(make_divisible(10.0), 16);
        assert_eq!(make_divisible(28.0), 32);
        assert_eq!(make_divisible(20.0), 24);
        assert_eq!(round_channels(1280, 0.25), 320);
        assert_eq!(round_channels(32, 1.0), 32);
        assert_eq!(
            decode_block("ir_r3_k5_s2_e6_c40_se0.25").unwrap(),
            BlockSpec {
                inverted: true,
                repeats: 3,
                kernel: 5,
                stride: 2,
                exp_ratio: 6.0,
                out_chs: 40,
                se_ratio: 0.25,
                noskip: false
            }
        );
        assert!(decode_block("er_r1_k3_s1_c8").is_err());
    }

    #[test]
    fn init_follows_timm_goog() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let _ =
            EfficientNet::new(&vs.root(), &EfficientNetArch::EFFICIENTNET_B0, &ModelArgs::default()).unwrap();
        let vars = vs.variables();
        // conv_head: 1×1, 1280 outputs → std sqrt(2/1280).
        let std = vars["conv_head.weight"].std(true).double_value(&[]);
        assert!((std - (2.0f64 / 1280.0).sqrt()).abs() < 0.002, "{std}");
        // Depthwise 5×5 of 672 channels: fan_out = 25 → std sqrt(2/25).
        let std = vars["blocks.5.0.conv_dw.weight"].std(true).double_value(&[]);
        assert!((std - (2.0f64 / 25.0).sqrt()).abs() < 0.01, "{std}");
        let fc = &vars["classifier.weight"];
        assert!(fc.abs().max().double_value(&[]) <= 1.0 / 1000f64.sqrt());
        assert_eq!(vars["classifier.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(vars["blocks.1.0.se.conv_reduce.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(vars["bn2.weight"].mean(Kind::Float).double_value(&[]), 1.0);
        // B0 keys and SE widths: block 1.0 has 16 → 96 channels and SE 96·0.25/6 = 4.
        assert_eq!(vars["blocks.1.0.se.conv_reduce.weight"].size(), [4, 96, 1, 1]);
        assert_eq!(vars["blocks.0.0.se.conv_reduce.weight"].size(), [8, 32, 1, 1]);
    }

    #[test]
    fn args_are_checked_and_small_models_run() {
        let vs = nn::VarStore::new(Device::Cpu);
        let arch = &EfficientNetArch::MOBILENETV2_100;
        let bad = ModelArgs { widths: Some(vec![8]), ..Default::default() };
        assert!(EfficientNet::new(&vs.root(), arch, &bad).unwrap_err().to_string().contains("widths"));
        let bad = ModelArgs { width_multiplier: Some(0.0), ..Default::default() };
        assert!(
            EfficientNet::new(&vs.root(), arch, &bad).unwrap_err().to_string().contains("width_multiplier")
        );
        let args = ModelArgs {
            width_multiplier: Some(0.25),
            depth_multiplier: Some(0.3),
            num_classes: Some(10),
            cifar_stem: Some(true),
            drop_path_rate: Some(0.2),
            drop_rate: Some(0.2),
            ..Default::default()
        };
        let m = EfficientNet::new(&(vs.root() / "small"), arch, &args).unwrap();
        let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let f = m.forward_features(&x, true);
        assert_eq!(f.size(), [2, 1280, 2, 2]);
        assert_eq!(m.forward_t(&x, false).size(), [2, 10]);
    }
}
