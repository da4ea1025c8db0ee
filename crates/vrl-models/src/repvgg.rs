//! RepVGG (Ding et al., 2021, "RepVGG: Making VGG-style ConvNets Great Again"), as timm's
//! `byobnet.py` builds it: a plain stack of 3×3 blocks that are multi-branched while training —
//! `relu(bn(conv3x3(x)) + bn(conv1x1(x)) [+ bn(x)])` — and fold into one 3×3 convolution with bias for
//! inference ([`RepVgg::reparameterize`], timm's `reparameterize()`).
//!
//! Registered: `repvgg_a1` (stem 64 channels with stride 2, stages of 2, 4, 14 and 1 blocks with 64,
//! 128, 256 and 1280 channels, each stage starting with stride 2; 1000 classes).
//!
//! # Arguments
//!
//! - `num_classes` (1000), `in_chans` (3), `drop_rate` (dropout before `head.fc`, 0),
//!   `drop_path_rate` (0; timm's linear schedule over all stage blocks, `rate · i / (n − 1)`, applied to
//!   the branch sum of blocks that have an identity branch).
//! - `depths`: blocks per stage (4 entries; timm's `ByoBlockCfg.d`).
//! - `widths`: channels per stage (4 entries; timm's `ByoBlockCfg.c`, rounded as timm to a multiple
//!   of 8). The stem then has `min(64, widths[0])` channels, RepVGG's rule.
//! - `cifar_stem`: the stem block gets stride 1 instead of 2 (keys unchanged), for 32×32 images.
//! - `img_size` is accepted and unused (any input size works); the others are rejected.
//!
//! Grouped convolutions (timm's `repvgg_b*g*`) are not supported.
//!
//! # Keys
//!
//! Training form (what `create` builds; timm's default): for the block `P` = `stem` and
//! `stages.S.B`: `P.conv_kxk.conv.weight`, `P.conv_kxk.bn.*`, `P.conv_1x1.conv.weight`,
//! `P.conv_1x1.bn.*` and, where input and output shapes agree, `P.identity.*` (a batch norm); batch
//! norms hold `weight`, `bias`, `running_mean`, `running_var`, `num_batches_tracked`. Then
//! `head.fc.{weight,bias}`.
//!
//! Inference (fused) form, from [`RepVgg::reparameterize`]: `P.reparam_conv.{weight,bias}` per block
//! (a 3×3 convolution with bias, timm's `reparam_conv`) and `head.fc.{weight,bias}`, as timm's state
//! dict after `reparameterize()` on every block.
//!
//! Initialisation as timm's: convolutions normal with std `sqrt(2 / fan_out)`; every batch norm of a
//! block (all of them) weight ~ N(0.1, 0.1²) and bias ~ N(0, 0.1²) (`RepVggBlock.init_weights`);
//! `head.fc` weight ~ N(0, 0.01²), bias 0.

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::layers::{BatchNorm2d, drop_path};
use crate::{Model, ModelArgs, ModelError};

/// A convolution without bias followed by batch norm (timm's `ConvNormAct` without activation).
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: BatchNorm2d,
}

impl ConvBn {
    fn new(p: &nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> Self {
        let config = nn::ConvConfig {
            stride,
            padding: k / 2,
            bias: false,
            ws_init: Init::Randn { mean: 0.0, stdev: (2.0 / (k * k * cout) as f64).sqrt() },
            ..Default::default()
        };
        ConvBn { conv: nn::conv2d(p / "conv", cin, cout, k, config), bn: rep_batch_norm(&(p / "bn"), cout) }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.bn.forward_t(&x.apply(&self.conv), train)
    }

    /// The kernel and bias of `bn(conv(x))` with running statistics, as one convolution.
    fn fused(&self) -> (Tensor, Tensor) {
        fuse_bn(&self.conv.ws, &self.bn)
    }
}

/// Batch norm of a RepVGG block, initialised as timm's `RepVggBlock.init_weights`.
fn rep_batch_norm(p: &nn::Path, channels: i64) -> BatchNorm2d {
    let bn = BatchNorm2d::new(p, channels);
    let _guard = tch::no_grad_guard();
    let (mut w, mut b) = (bn.weight.shallow_clone(), bn.bias.shallow_clone());
    let _ = w.normal_(0.1, 0.1);
    let _ = b.normal_(0.0, 0.1);
    bn
}

/// Folds eval-mode batch norm into the preceding kernel: `w · γ/σ`, `β − μ · γ/σ`, `σ = sqrt(var + eps)`.
fn fuse_bn(kernel: &Tensor, bn: &BatchNorm2d) -> (Tensor, Tensor) {
    let t = &bn.weight / (&bn.running_var + bn.eps).sqrt();
    let kernel = kernel * t.view([-1, 1, 1, 1]);
    let bias = &bn.bias - &bn.running_mean * &t;
    (kernel, bias)
}

/// The training-time branches of a block.
#[derive(Debug)]
struct Branches {
    conv_kxk: ConvBn,
    conv_1x1: ConvBn,
    identity: Option<BatchNorm2d>,
    drop_path: f64,
}

/// A RepVGG block in training (branched) or inference (fused) form.
#[derive(Debug)]
enum RepBlock {
    Branched(Box<Branches>),
    Fused(nn::Conv2D),
}

impl RepBlock {
    fn new(p: &nn::Path, cin: i64, cout: i64, stride: i64, drop_path: f64) -> Self {
        let identity = (cin == cout && stride == 1).then(|| rep_batch_norm(&(p / "identity"), cout));
        RepBlock::Branched(Box::new(Branches {
            conv_kxk: ConvBn::new(&(p / "conv_kxk"), cin, cout, 3, stride),
            conv_1x1: ConvBn::new(&(p / "conv_1x1"), cin, cout, 1, stride),
            identity,
            drop_path,
        }))
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            RepBlock::Fused(reparam_conv) => x.apply(reparam_conv).relu(),
            RepBlock::Branched(b) => {
                let y = b.conv_1x1.forward(x, train) + b.conv_kxk.forward(x, train);
                match &b.identity {
                    Some(id) => (drop_path(&y, b.drop_path, train) + id.forward_t(x, train)).relu(),
                    None => y.relu(),
                }
            }
        }
    }

    /// The single 3×3 convolution (stride `stride`) equal to this block's eval-mode branches (timm's
    /// `_get_kernel_bias`), under `p / "reparam_conv"`.
    fn fuse(&self, p: &nn::Path, stride: i64) -> RepBlock {
        let _guard = tch::no_grad_guard();
        let (kernel, bias) = match self {
            RepBlock::Fused(reparam_conv) => {
                let w = &reparam_conv.ws;
                let b = reparam_conv
                    .bs
                    .as_ref()
                    .map_or_else(|| Tensor::zeros([w.size()[0]], (w.kind(), w.device())), Tensor::copy);
                (w.copy(), b)
            }
            RepBlock::Branched(b) => {
                let (mut kernel, mut bias) = b.conv_kxk.fused();
                let (k1, b1) = b.conv_1x1.fused();
                kernel += k1.constant_pad_nd([1, 1, 1, 1]);
                bias += b1;
                if let Some(id) = &b.identity {
                    let c = kernel.size()[0];
                    let eye = Tensor::eye(c, (kernel.kind(), kernel.device())).view([c, c, 1, 1]);
                    let (ki, bi) = fuse_bn(&eye.constant_pad_nd([1, 1, 1, 1]), id);
                    kernel += ki;
                    bias += bi;
                }
                (kernel, bias)
            }
        };
        let (cout, cin) = (kernel.size()[0], kernel.size()[1]);
        let config = nn::ConvConfig { stride, padding: 1, bias: true, ..Default::default() };
        let mut reparam_conv = nn::conv2d(p / "reparam_conv", cin, cout, 3, config);
        reparam_conv.ws.copy_(&kernel);
        if let Some(b) = reparam_conv.bs.as_mut() {
            b.copy_(&bias);
        }
        RepBlock::Fused(reparam_conv)
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct RepVgg {
    stem: RepBlock,
    /// 2, or 1 with `cifar_stem`.
    stem_stride: i64,
    stages: Vec<Vec<RepBlock>>,
    fc: nn::Linear,
    drop_rate: f64,
}

impl RepVgg {
    /// RepVGG-A1's blocks per stage.
    pub const A1_DEPTHS: [i64; 4] = [2, 4, 14, 1];
    /// RepVGG-A1's channels per stage.
    pub const A1_WIDTHS: [i64; 4] = [64, 128, 256, 1280];

    /// Builds `repvgg_a1` (or the variant `args` describe) in training form under `p`.
    pub fn new(p: &nn::Path, args: &ModelArgs) -> Result<Self, ModelError> {
        let bad = |message: String| ModelError::BadArgs { model: "repvgg_a1".into(), message };
        for (set, name) in [
            (args.num_heads.is_some(), "num_heads"),
            (args.mlp_ratio.is_some(), "mlp_ratio"),
            (args.patch_size.is_some(), "patch_size"),
            (args.width_multiplier.is_some(), "width_multiplier"),
            (args.depth_multiplier.is_some(), "depth_multiplier"),
            (args.window_size.is_some(), "window_size"),
        ] {
            if set {
                return Err(bad(format!("`{name}` does not apply; use `depths` and `widths`")));
            }
        }
        let depths = args.depths.clone().unwrap_or_else(|| Self::A1_DEPTHS.to_vec());
        let widths = args.widths.clone().unwrap_or_else(|| Self::A1_WIDTHS.to_vec());
        if depths.len() != 4 || depths.iter().any(|&d| d < 1) {
            return Err(bad(format!("`depths` must be 4 positive block counts, got {depths:?}")));
        }
        if widths.len() != 4 || widths.iter().any(|&w| w < 1) {
            return Err(bad(format!("`widths` must be 4 positive channel counts, got {widths:?}")));
        }
        let (num_classes, in_chans) = (args.num_classes_or(1000), args.in_chans());
        if num_classes < 1 || in_chans < 1 {
            return Err(bad("`num_classes` and `in_chans` must be positive".into()));
        }
        if !(0.0..1.0).contains(&args.drop_rate()) || !(0.0..1.0).contains(&args.drop_path_rate()) {
            return Err(bad("`drop_rate` and `drop_path_rate` must be in [0, 1)".into()));
        }
        if args.img_size.is_some_and(|s| s < 1) {
            return Err(bad("`img_size` must be positive".into()));
        }
        // timm's make_divisible(c, 8) of the stage widths.
        let widths: Vec<i64> = widths
            .iter()
            .map(|&w| {
                let r = ((w + 4) / 8 * 8).max(8);
                if (r as f64) < 0.9 * w as f64 { r + 8 } else { r }
            })
            .collect();
        let stem_chs = widths[0].min(64);
        let stem_stride = if args.cifar_stem.unwrap_or(false) { 1 } else { 2 };
        let stem = RepBlock::new(&(p / "stem"), in_chans, stem_chs, stem_stride, 0.0);
        let total: i64 = depths.iter().sum();
        let mut cin = stem_chs;
        let mut index = 0;
        let mut stages = Vec::new();
        for (s, (&d, &w)) in depths.iter().zip(&widths).enumerate() {
            let mut blocks = Vec::new();
            for b in 0..d {
                // torch.linspace(0, rate, total)[index]
                let dp =
                    if total > 1 { args.drop_path_rate() * index as f64 / (total - 1) as f64 } else { 0.0 };
                let stride = if b == 0 { 2 } else { 1 };
                blocks.push(RepBlock::new(&(p / "stages" / s / b), cin, w, stride, dp));
                cin = w;
                index += 1;
            }
            stages.push(blocks);
        }
        let fc = nn::linear(
            p / "head" / "fc",
            cin,
            num_classes,
            nn::LinearConfig {
                ws_init: Init::Randn { mean: 0.0, stdev: 0.01 },
                bs_init: Some(Init::Const(0.0)),
                bias: true,
            },
        );
        Ok(RepVgg { stem, stem_stride, stages, fc, drop_rate: args.drop_rate() })
    }

    /// The inference form under `p` (give it a fresh `VarStore`'s root): every block folded into one
    /// 3×3 convolution with bias (`…reparam_conv.{weight,bias}`) from its eval-mode batch norm
    /// statistics; the classifier is copied to `head.fc`. Its eval-mode logits equal this model's; it
    /// is meant for inference (there is no batch norm left to train).
    pub fn reparameterize(&self, p: &nn::Path) -> RepVgg {
        let stem = self.stem.fuse(&(p / "stem"), self.stem_stride);
        let stages = self
            .stages
            .iter()
            .enumerate()
            .map(|(s, blocks)| {
                blocks
                    .iter()
                    .enumerate()
                    .map(|(b, block)| block.fuse(&(p / "stages" / s / b), if b == 0 { 2 } else { 1 }))
                    .collect()
            })
            .collect();
        let (cout, cin) = (self.fc.ws.size()[0], self.fc.ws.size()[1]);
        let mut fc = nn::linear(p / "head" / "fc", cin, cout, Default::default());
        {
            let _guard = tch::no_grad_guard();
            fc.ws.copy_(&self.fc.ws);
            if let (Some(dst), Some(src)) = (fc.bs.as_mut(), self.fc.bs.as_ref()) {
                dst.copy_(src);
            }
        }
        RepVgg { stem, stem_stride: self.stem_stride, stages, fc, drop_rate: self.drop_rate }
    }
}

impl Model for RepVgg {
    fn forward_features(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = self.stem.forward(x, train);
        for block in self.stages.iter().flatten() {
            x = block.forward(&x, train);
        }
        x
    }

    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let x = features.mean_dim(&[2i64, 3][..], false, Kind::Float);
        let x = if train && self.drop_rate > 0.0 { x.dropout(self.drop_rate, true) } else { x };
        x.apply(&self.fc)
    }

    fn num_features(&self) -> i64 {
        self.fc.ws.size()[1]
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
            depths: Some(vec![1, 2, 2, 1]),
            widths: Some(vec![8, 16, 24, 32]),
            num_classes: Some(5),
            ..Default::default()
        }
    }

    #[test]
    fn reparameterized_model_gives_the_same_eval_logits() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = RepVgg::new(&vs.root(), &small()).unwrap();
        let cifar =
            RepVgg::new(&(vs.root() / "cifar"), &ModelArgs { cifar_stem: Some(true), ..small() }).unwrap();
        let x = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let _ = tch::no_grad(|| cifar.forward_t(&x, true));
        let fused_cifar = cifar.reparameterize(&nn::VarStore::new(Device::Cpu).root());
        let (a, b) = tch::no_grad(|| (cifar.forward_t(&x, false), fused_cifar.forward_t(&x, false)));
        assert!((a - b).abs().max().double_value(&[]) < 1e-4);
        // Give the batch norms non-trivial running statistics (a few training-mode passes).
        for _ in 0..3 {
            let x = Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 + 0.5;
            let _ = tch::no_grad(|| model.forward_t(&x, true));
        }
        let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
        let branched = tch::no_grad(|| model.forward_t(&x, false));
        let fused_vs = nn::VarStore::new(Device::Cpu);
        let fused = model.reparameterize(&fused_vs.root());
        let out = tch::no_grad(|| fused.forward_t(&x, false));
        let scale = branched.abs().max().double_value(&[]).max(1.0);
        let d = (&out - &branched).abs().max().double_value(&[]) / scale;
        assert!(d < 1e-5, "fused logits differ by {d:e}");
        let mut keys: Vec<String> = fused_vs.variables().into_keys().collect();
        keys.sort();
        assert_eq!(keys.len(), 2 * (1 + 6) + 2);
        assert!(keys.contains(&"stem.reparam_conv.bias".to_string()));
        assert!(keys.contains(&"stages.1.1.reparam_conv.weight".to_string()));
        assert!(keys.contains(&"head.fc.weight".to_string()));
        assert_eq!(fused_vs.variables()["stages.0.0.reparam_conv.weight"].size(), [8, 8, 3, 3]);
        // Fusing the fused form is the identity.
        let again_vs = nn::VarStore::new(Device::Cpu);
        let again = fused.reparameterize(&again_vs.root());
        assert!(tch::no_grad(|| again.forward_t(&x, false)).allclose(&out, 1e-6, 1e-6, false));
    }

    #[test]
    fn init_follows_timm() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = RepVgg::new(&vs.root(), &ModelArgs::default()).unwrap();
        let vars = vs.variables();
        // 3×3 conv with 256 outputs: std sqrt(2 / (9 · 256)).
        let std = vars["stages.2.3.conv_kxk.conv.weight"].std(true).double_value(&[]);
        assert!((std - (2.0f64 / 2304.0).sqrt()).abs() < 0.001, "{std}");
        let w = &vars["stages.2.3.identity.weight"];
        let mean = vars["stages.2.0.conv_1x1.bn.weight"].mean(Kind::Float).double_value(&[]);
        assert!((mean - 0.1).abs() < 0.03, "{mean}");
        assert!((w.std(true).double_value(&[]) - 0.1).abs() < 0.03);
        let fc = vars["head.fc.weight"].std(true).double_value(&[]);
        assert!((fc - 0.01).abs() < 0.001, "{fc}");
        assert_eq!(vars["head.fc.weight"].size(), [1000, 1280]);
    }

    #[test]
    fn bad_args_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        let args = ModelArgs { depths: Some(vec![1, 1]), ..Default::default() };
        assert!(RepVgg::new(&vs.root(), &args).unwrap_err().to_string().contains("depths"));
        let args = ModelArgs { width_multiplier: Some(0.5), ..Default::default() };
        assert!(RepVgg::new(&vs.root(), &args).unwrap_err().to_string().contains("width_multiplier"));
        let args = ModelArgs { cifar_stem: Some(true), ..small() };
        let m = RepVgg::new(&(vs.root() / "c"), &args).unwrap();
        let f = m.forward_features(&Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu)), false);
        assert_eq!(f.size(), [2, 32, 2, 2]);
    }
}
