//! The model zoo: networks created by name from a static registry, one file per family, with timm's
//! names, configuration keys and state-dict keys, so that timm checkpoints saved as safetensors load as
//! they are ([`weights`]).
//!
//! Models implement [`Model`]: `forward_features` → `forward_head`, and `forward_t(x, train)` on
//! `[B, C, H, W]` float images returns logits `[B, num_classes]`; `train` selects batch statistics in
//! batch norm and active dropout / drop path, as PyTorch's `train()` / `eval()`. Every argument of
//! [`ModelArgs`] is optional: unset means the family's default (timm's `default_cfg`).
//!
//! ```
//! use tch::{Device, Kind, Tensor, nn};
//! use vrl_models::{ModelArgs, create};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let args = ModelArgs { num_classes: Some(10), in_chans: Some(1), img_size: Some(28), ..Default::default() };
//! let model = create("mnist_cnn", &vs.root(), &args).unwrap();
//! let logits = model.forward_t(&Tensor::zeros([2, 1, 28, 28], (Kind::Float, Device::Cpu)), false);
//! assert_eq!(logits.size(), [2, 10]);
//! assert!(create("resnet9000", &vs.root(), &ModelArgs::default()).is_err());
//! ```

mod alexnet;
pub mod convnext;
mod densenet;
mod efficientnet;
pub mod layers;
pub mod metaformer;
pub mod mlp_mixer;
mod mnist_cnn;
mod repvgg;
mod resnet;
pub mod swin_transformer;
mod vgg;
pub mod vision_transformer;
pub mod weights;

pub use alexnet::AlexNet;
pub use convnext::ConvNext;
pub use densenet::{DenseNet, DenseNetConfig};
pub use efficientnet::{Activation, EfficientNet, EfficientNetArch, HeadWidth};
pub use metaformer::MetaFormer;
pub use mlp_mixer::MlpMixer;
pub use mnist_cnn::MnistCnn;
pub use repvgg::RepVgg;
pub use resnet::{BlockKind, ResNet, ResNetConfig};
use serde::{Deserialize, Serialize};
pub use swin_transformer::SwinTransformer;
use tch::{Tensor, nn};
pub use vgg::{Vgg, VggConfig};
pub use vision_transformer::VisionTransformer;

/// Errors of the model zoo.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// No model of that name.
    #[error("unknown model `{name}`; available: {available}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The registered names.
        available: String,
    },
    /// An argument is out of range for the model.
    #[error("model `{model}`: {message}")]
    BadArgs {
        /// The model.
        model: String,
        /// What was wrong.
        message: String,
    },
}

/// The largest size argument ([`ModelArgs::check_limits`]): 2¹⁶ classes, channels, pixels or blocks.
pub const MAX_ARG: i64 = 1 << 16;

/// The largest multiplier or ratio argument ([`ModelArgs::check_limits`]).
pub const MAX_MULTIPLIER: f64 = 64.0;

/// Model arguments with timm's names; `None` means the family's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelArgs {
    /// Number of output classes (timm default 1000).
    pub num_classes: Option<i64>,
    /// Number of input channels (default 3).
    pub in_chans: Option<i64>,
    /// Input height and width (default 224).
    pub img_size: Option<i64>,
    /// Patch size of patch-embedding families.
    pub patch_size: Option<i64>,
    /// Dropout before the classifier.
    pub drop_rate: Option<f64>,
    /// Stochastic depth rate (linearly increasing over blocks, as timm).
    pub drop_path_rate: Option<f64>,
    /// Blocks per stage (or the depth of an isotropic model), to make small versions of a family.
    pub depths: Option<Vec<i64>>,
    /// Channels per stage (or the embedding width of an isotropic model).
    pub widths: Option<Vec<i64>>,
    /// Attention heads per stage (or of an isotropic model).
    pub num_heads: Option<Vec<i64>>,
    /// Hidden width of MLP blocks as a multiple of the width.
    pub mlp_ratio: Option<f64>,
    /// Replace the stem by a CIFAR stem (3×3 stride-1 convolution, no early down-sampling) for 32×32 images.
    pub cifar_stem: Option<bool>,
    /// Channel (width) multiplier of families scaled by multipliers rather than explicit widths (timm's
    /// `channel_multiplier` of the EfficientNet builder: every channel count is multiplied and rounded
    /// to a multiple of 8). Default 1 for the registered `_100` / `b0` models.
    pub width_multiplier: Option<f64>,
    /// Depth multiplier of families scaled by multipliers (timm's `depth_multiplier`: each stage's
    /// block count is multiplied and rounded up). Default 1.
    pub depth_multiplier: Option<f64>,
    /// Side of the square attention windows of window-attention families (timm's `window_size`;
    /// Swin's default 7). Each stage clamps it to its feature map when that is smaller.
    pub window_size: Option<i64>,
}

impl ModelArgs {
    /// `num_classes` or `default`.
    pub fn num_classes_or(&self, default: i64) -> i64 {
        self.num_classes.unwrap_or(default)
    }
    /// `in_chans` or 3.
    pub fn in_chans(&self) -> i64 {
        self.in_chans.unwrap_or(3)
    }
    /// `drop_rate` or 0.
    pub fn drop_rate(&self) -> f64 {
        self.drop_rate.unwrap_or(0.0)
    }
    /// `drop_path_rate` or 0.
    pub fn drop_path_rate(&self) -> f64 {
        self.drop_path_rate.unwrap_or(0.0)
    }

    /// [`ModelError::BadArgs`] naming `num_classes`, `in_chans` or `img_size` if not positive, or
    /// `drop_rate` or `drop_path_rate` if outside `[0, 1)`.
    pub fn check_ranges(&self, model: &str) -> Result<(), ModelError> {
        let bad = |message: String| Err(ModelError::BadArgs { model: model.to_string(), message });
        for (name, value) in
            [("num_classes", self.num_classes), ("in_chans", self.in_chans), ("img_size", self.img_size)]
        {
            if let Some(v) = value.filter(|&v| v <= 0) {
                return bad(format!("`{name}` must be positive, got {v}"));
            }
        }
        for (name, value) in [("drop_rate", self.drop_rate), ("drop_path_rate", self.drop_path_rate)] {
            if let Some(v) = value.filter(|v| !(0.0..1.0).contains(v)) {
                return bad(format!("`{name}` must be in [0, 1), got {v}"));
            }
        }
        Ok(())
    }

    /// [`ModelError::BadArgs`] naming the first argument above the largest value any model here can
    /// use, so that a setting can never ask LibTorch for an absurd allocation or wrap an integer:
    /// sizes (classes, channels, image side, patch and window side, each width, depth and head count)
    /// at most [`MAX_ARG`], multipliers and ratios at most [`MAX_MULTIPLIER`]. [`create`] checks this
    /// for every model; lower bounds are the families' own.
    pub fn check_limits(&self, model: &str) -> Result<(), ModelError> {
        let bad = |message: String| Err(ModelError::BadArgs { model: model.to_string(), message });
        let lists = [("depths", &self.depths), ("widths", &self.widths), ("num_heads", &self.num_heads)];
        let mut ints: Vec<(String, i64)> = [
            ("num_classes", self.num_classes),
            ("in_chans", self.in_chans),
            ("img_size", self.img_size),
            ("patch_size", self.patch_size),
            ("window_size", self.window_size),
        ]
        .iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect();
        for (key, list) in lists {
            for (i, &v) in list.iter().flatten().enumerate() {
                ints.push((format!("{key}[{i}]"), v));
            }
            if list.as_ref().is_some_and(|l| l.len() > 64) {
                return bad(format!("`{key}` has more than 64 entries"));
            }
        }
        if let Some((key, v)) = ints.iter().find(|(_, v)| *v > MAX_ARG) {
            return bad(format!("`{key}` must be at most {MAX_ARG}, got {v}"));
        }
        let floats = [
            ("mlp_ratio", self.mlp_ratio),
            ("width_multiplier", self.width_multiplier),
            ("depth_multiplier", self.depth_multiplier),
        ];
        match floats.iter().find(|(_, v)| v.is_some_and(|v| !(v.is_finite() && v <= MAX_MULTIPLIER))) {
            Some((key, Some(v))) => {
                bad(format!("`{key}` must be a finite number at most {MAX_MULTIPLIER}, got {v}"))
            }
            _ => Ok(()),
        }
    }

    /// [`ModelError::BadArgs`] naming the first argument that is set but not among `supported`
    /// (field names), so that an argument a family has no use for is an error rather than ignored.
    pub fn check_supported(&self, model: &str, supported: &[&str]) -> Result<(), ModelError> {
        let set = [
            ("num_classes", self.num_classes.is_some()),
            ("in_chans", self.in_chans.is_some()),
            ("img_size", self.img_size.is_some()),
            ("patch_size", self.patch_size.is_some()),
            ("drop_rate", self.drop_rate.is_some()),
            ("drop_path_rate", self.drop_path_rate.is_some()),
            ("depths", self.depths.is_some()),
            ("widths", self.widths.is_some()),
            ("num_heads", self.num_heads.is_some()),
            ("mlp_ratio", self.mlp_ratio.is_some()),
            ("cifar_stem", self.cifar_stem.is_some()),
            ("width_multiplier", self.width_multiplier.is_some()),
            ("depth_multiplier", self.depth_multiplier.is_some()),
            ("window_size", self.window_size.is_some()),
        ];
        match set.iter().find(|(name, is_set)| *is_set && !supported.contains(name)) {
            Some((name, _)) => Err(ModelError::BadArgs {
                model: model.to_string(),
                message: format!("`{name}` does not apply to this model (it takes {})", supported.join(", ")),
            }),
            None => Ok(()),
        }
    }
}

/// The one entry of a per-stage list argument (`depths`, `widths`, `num_heads`) of an isotropic
/// family, e.g. `depths = [12]` for a ViT; `family` names the family in the error.
pub(crate) fn single_entry(
    model: &str,
    family: &str,
    what: &str,
    value: &Option<Vec<i64>>,
) -> Result<Option<i64>, ModelError> {
    match value.as_deref() {
        None => Ok(None),
        Some([x]) => Ok(Some(*x)),
        Some(other) => Err(ModelError::BadArgs {
            model: model.to_string(),
            message: format!("`{what}` must have one entry for {family}, got {other:?}"),
        }),
    }
}

/// [`ModelError::BadArgs`] naming the first of `values` (argument, resolved value) that is not positive.
pub(crate) fn check_positive(model: &str, values: &[(&str, i64)]) -> Result<(), ModelError> {
    match values.iter().find(|(_, v)| *v <= 0) {
        Some((what, v)) => Err(ModelError::BadArgs {
            model: model.to_string(),
            message: format!("`{what}` must be positive, got {v}"),
        }),
        None => Ok(()),
    }
}

/// A classification network.
pub trait Model: Send + std::fmt::Debug {
    /// Features before pooling and the classifier.
    fn forward_features(&self, x: &Tensor, train: bool) -> Tensor;
    /// Pooling, dropout and the classifier: logits `[B, num_classes]`.
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor;
    /// Logits `[B, num_classes]` for images `[B, C, H, W]`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_head(&self.forward_features(x, train), train)
    }
    /// Width of the pooled features that the classifier sees.
    fn num_features(&self) -> i64;
    /// State-dict prefixes of the classifier (re-initialised when a checkpoint has another `num_classes`).
    fn head_prefixes(&self) -> &'static [&'static str];
}

/// Builds a model under a path.
pub type Builder = fn(&nn::Path, &ModelArgs) -> Result<Box<dyn Model>, ModelError>;

/// A registry entry.
pub struct Entry {
    /// The model name (timm's where timm has the model).
    pub name: &'static str,
    /// The family (the file that implements it).
    pub family: &'static str,
    /// A one-line description.
    pub description: &'static str,
    /// The constructor.
    pub build: Builder,
}

/// Every model, by name.
pub const REGISTRY: &[Entry] = &[
    Entry {
        name: "mnist_cnn",
        family: "mnist_cnn",
        description: "two conv-BN-ReLU-pool stages and a linear classifier, for 28x28 digits",
        build: |p, a| Ok(Box::new(MnistCnn::new(p, a)?)),
    },
    Entry {
        name: "vit_tiny_patch16_224",
        family: "vision_transformer",
        description: "ViT-Ti/16: 12 blocks, width 192, 3 heads, 224x224",
        build: |p, a| Ok(Box::new(VisionTransformer::named(p, "vit_tiny_patch16_224", a)?)),
    },
    Entry {
        name: "vit_small_patch16_224",
        family: "vision_transformer",
        description: "ViT-S/16: 12 blocks, width 384, 6 heads, 224x224",
        build: |p, a| Ok(Box::new(VisionTransformer::named(p, "vit_small_patch16_224", a)?)),
    },
    Entry {
        name: "deit_small_patch16_224",
        family: "vision_transformer",
        description: "DeiT-S: the ViT-S/16 network (DeiT training recipe), 224x224",
        build: |p, a| Ok(Box::new(VisionTransformer::named(p, "deit_small_patch16_224", a)?)),
    },
    Entry {
        name: "mixer_s16_224",
        family: "mlp_mixer",
        description: "MLP-Mixer S/16: 8 blocks, width 512, 224x224",
        build: |p, a| Ok(Box::new(MlpMixer::named(p, "mixer_s16_224", a)?)),
    },
    Entry {
        name: "convnext_tiny",
        family: "convnext",
        description: "ConvNeXt-T: depths 3-3-9-3, widths 96-768, layer scale",
        build: |p, a| Ok(Box::new(ConvNext::named(p, "convnext_tiny", a)?)),
    },
    Entry {
        name: "convnext_atto",
        family: "convnext",
        description: "ConvNeXt-Atto: depths 2-2-6-2, widths 40-320, layer scale, 1x1-conv MLP",
        build: |p, a| Ok(Box::new(ConvNext::named(p, "convnext_atto", a)?)),
    },
    Entry {
        name: "convnextv2_tiny",
        family: "convnext",
        description: "ConvNeXt V2-T: depths 3-3-9-3, widths 96-768, GRN",
        build: |p, a| Ok(Box::new(ConvNext::named(p, "convnextv2_tiny", a)?)),
    },
    Entry {
        name: "convnextv2_atto",
        family: "convnext",
        description: "ConvNeXt V2-Atto: depths 2-2-6-2, widths 40-320, GRN, 1x1-conv MLP",
        build: |p, a| Ok(Box::new(ConvNext::named(p, "convnextv2_atto", a)?)),
    },
    Entry {
        name: "resnet18",
        family: "resnet",
        description: "ResNet-18: basic blocks, depths 2-2-2-2 (He et al., 2016)",
        build: |p, a| Ok(Box::new(ResNet::new(p, &ResNetConfig::RESNET18, a)?)),
    },
    Entry {
        name: "resnet50",
        family: "resnet",
        description: "ResNet-50: bottleneck blocks, depths 3-4-6-3 (He et al., 2016)",
        build: |p, a| Ok(Box::new(ResNet::new(p, &ResNetConfig::RESNET50, a)?)),
    },
    Entry {
        name: "vgg13_bn",
        family: "vgg",
        description: "VGG-13 with batch norm and timm's convolutional pre-logits (Simonyan & Zisserman, 2015)",
        build: |p, a| Ok(Box::new(Vgg::new(p, &VggConfig::VGG13_BN, a)?)),
    },
    Entry {
        name: "densenet121",
        family: "densenet",
        description: "DenseNet-121: growth rate 32, dense layers 6-12-24-16 (Huang et al., 2017)",
        build: |p, a| Ok(Box::new(DenseNet::new(p, &DenseNetConfig::DENSENET121, a)?)),
    },
    Entry {
        name: "alexnet",
        family: "alexnet",
        description: "AlexNet as torchvision's (Krizhevsky et al., 2012); timm has none",
        build: |p, a| Ok(Box::new(AlexNet::new(p, a)?)),
    },
    Entry {
        name: "mobilenetv2_100",
        family: "efficientnet",
        description: "MobileNetV2 (Sandler et al., 2018), width 1.0: inverted residuals, ReLU6",
        build: |p, a| Ok(Box::new(EfficientNet::new(p, &EfficientNetArch::MOBILENETV2_100, a)?)),
    },
    Entry {
        name: "efficientnet_b0",
        family: "efficientnet",
        description: "EfficientNet-B0 (Tan & Le, 2019): MBConv blocks with squeeze-excitation, SiLU",
        build: |p, a| Ok(Box::new(EfficientNet::new(p, &EfficientNetArch::EFFICIENTNET_B0, a)?)),
    },
    Entry {
        name: "repvgg_a1",
        family: "repvgg",
        description: "RepVGG-A1 (Ding et al., 2021): 3x3 blocks with 1x1 and identity branches for training",
        build: |p, a| Ok(Box::new(RepVgg::new(p, a)?)),
    },
    Entry {
        name: "swin_tiny_patch4_window7_224",
        family: "swin_transformer",
        description: "Swin-T (Liu et al., 2021): shifted 7x7 windows, depths 2-2-6-2, width 96, 224x224",
        build: |p, a| Ok(Box::new(SwinTransformer::named(p, "swin_tiny_patch4_window7_224", a)?)),
    },
    Entry {
        name: "poolformerv2_s12",
        family: "metaformer",
        description: "PoolFormerV2-S12 (Yu et al., 2022): pooling token mixer, StarReLU MLP, depths 2-2-6-2",
        build: |p, a| Ok(Box::new(MetaFormer::named(p, "poolformerv2_s12", a)?)),
    },
    Entry {
        name: "convformer_s18",
        family: "metaformer",
        description: "ConvFormer-S18 (Yu et al., 2022): separable-conv token mixer, depths 3-3-9-3, MLP head",
        build: |p, a| Ok(Box::new(MetaFormer::named(p, "convformer_s18", a)?)),
    },
    Entry {
        name: "caformer_s18",
        family: "metaformer",
        description: "CAFormer-S18 (Yu et al., 2022): separable conv in stages 0-1, attention in 2-3, MLP head",
        build: |p, a| Ok(Box::new(MetaFormer::named(p, "caformer_s18", a)?)),
    },
    Entry {
        name: "convformer_s12",
        family: "metaformer",
        description: "ConvFormer-S12 (BOCB's S12 MetaFormer family): ConvFormer at depths 2-2-6-2; not in timm",
        build: |p, a| Ok(Box::new(MetaFormer::named(p, "convformer_s12", a)?)),
    },
    Entry {
        name: "caformer_s12",
        family: "metaformer",
        description: "CAFormer-S12 (BOCB's S12 MetaFormer family): CAFormer at depths 2-2-6-2; not in timm",
        build: |p, a| Ok(Box::new(MetaFormer::named(p, "caformer_s12", a)?)),
    },
    Entry {
        name: "attentionformer_s12",
        family: "metaformer",
        description: "AttentionFormer-S12 (BOCB's S12 MetaFormer family): attention in all stages; not in timm",
        build: |p, a| Ok(Box::new(MetaFormer::named(p, "attentionformer_s12", a)?)),
    },
    Entry {
        name: "identityformer_s12",
        family: "metaformer",
        description: "IdentityFormer-S12 (Yu et al., 2022): identity token mixer; not in timm",
        build: |p, a| Ok(Box::new(MetaFormer::named(p, "identityformer_s12", a)?)),
    },
    Entry {
        name: "randformer_s12",
        family: "metaformer",
        description: "RandFormer-S12 (Yu et al., 2022): frozen random token mixing in stages 2-3; not in timm",
        build: |p, a| Ok(Box::new(MetaFormer::named(p, "randformer_s12", a)?)),
    },
];

/// Creates model `name` under `path`.
pub fn create(name: &str, path: &nn::Path, args: &ModelArgs) -> Result<Box<dyn Model>, ModelError> {
    let entry = REGISTRY.iter().find(|e| e.name == name).ok_or_else(|| ModelError::Unknown {
        name: name.to_string(),
        available: REGISTRY.iter().map(|e| e.name).collect::<Vec<_>>().join(", "),
    })?;
    args.check_limits(name)?;
    (entry.build)(path, args)
}

/// Number of trainable parameters of model `name` with `args` (built on the CPU).
pub fn num_params(name: &str, args: &ModelArgs) -> Result<i64, ModelError> {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    create(name, &vs.root(), args)?;
    Ok(vs.trainable_variables().iter().map(|t| t.numel() as i64).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_above_the_limits_are_refused_before_building() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        for (args, key) in [
            (ModelArgs { widths: Some(vec![4, 1 << 40]), ..Default::default() }, "`widths[1]`"),
            (ModelArgs { img_size: Some(i64::MAX), ..Default::default() }, "`img_size`"),
            (ModelArgs { mlp_ratio: Some(f64::INFINITY), ..Default::default() }, "`mlp_ratio`"),
            (ModelArgs { depths: Some(vec![1; 65]), ..Default::default() }, "`depths`"),
        ] {
            let Err(e) = create("resnet18", &vs.root(), &args) else { panic!("{key} is refused") };
            let e = e.to_string();
            assert!(e.contains(key), "{e}");
        }
        assert!(vs.variables().is_empty());
    }
}
