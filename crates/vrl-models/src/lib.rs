//! The model zoo: networks created by name from a static registry, one file per family.
//!
//! Models implement [`Model`]: `forward_t(x, train)` on `[B, C, H, W]` float images returns logits
//! `[B, num_classes]`. Parameters live in the `nn::Path` they are built under, with PyTorch-style
//! names (`conv1.weight`, `bn1.running_mean`, `fc.bias`) so that state dicts carry over.
//!
//! ```
//! use tch::{Device, Kind, Tensor, nn};
//! use vrl_models::{ModelArgs, create};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let model = create("mnist_cnn", &vs.root(), &ModelArgs::default()).unwrap();
//! let logits = model.forward_t(&Tensor::zeros([2, 1, 28, 28], (Kind::Float, Device::Cpu)), false);
//! assert_eq!(logits.size(), [2, 10]);
//! assert!(create("resnet9000", &vs.root(), &ModelArgs::default()).is_err());
//! ```

mod mnist_cnn;

pub use mnist_cnn::MnistCnn;
use serde::{Deserialize, Serialize};
use tch::{Tensor, nn};

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

/// Arguments common to every model (timm's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelArgs {
    /// Number of output classes.
    pub num_classes: i64,
    /// Number of input channels.
    pub in_chans: i64,
    /// Input height and width.
    pub img_size: i64,
    /// Dropout before the classifier.
    pub drop_rate: f64,
    /// Channel widths of the stages, where the family has them (empty: the family's default).
    pub widths: Vec<i64>,
}

impl Default for ModelArgs {
    fn default() -> Self {
        ModelArgs { num_classes: 10, in_chans: 1, img_size: 28, drop_rate: 0.0, widths: Vec::new() }
    }
}

/// A classification network.
pub trait Model: Send + std::fmt::Debug {
    /// Logits `[B, num_classes]` for images `[B, C, H, W]`; `train` selects batch-norm batch statistics
    /// and active dropout.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor;
}

/// Builds a model under a path.
pub type Builder = fn(&nn::Path, &ModelArgs) -> Result<Box<dyn Model>, ModelError>;

/// A registry entry.
pub struct Entry {
    /// The model name.
    pub name: &'static str,
    /// A one-line description.
    pub description: &'static str,
    /// The constructor.
    pub build: Builder,
}

/// Every model, by name.
pub const REGISTRY: &[Entry] = &[Entry {
    name: "mnist_cnn",
    description: "two conv-BN-ReLU-pool stages and a linear classifier, for 28x28 digits",
    build: |p, a| Ok(Box::new(MnistCnn::new(p, a)?)),
}];

/// Creates model `name` under `path`.
pub fn create(name: &str, path: &nn::Path, args: &ModelArgs) -> Result<Box<dyn Model>, ModelError> {
    let entry = REGISTRY.iter().find(|e| e.name == name).ok_or_else(|| ModelError::Unknown {
        name: name.to_string(),
        available: REGISTRY.iter().map(|e| e.name).collect::<Vec<_>>().join(", "),
    })?;
    (entry.build)(path, args)
}
