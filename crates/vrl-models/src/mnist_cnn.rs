//! A small CNN for 28×28 digits: `[conv3x3 → BN → ReLU → maxpool2] × 2 → flatten → dropout → linear`.
//!
//! Keys: `conv{1,2}.weight`, `bn{1,2}.{weight,bias,running_mean,running_var,num_batches_tracked}`,
//! `fc.{weight,bias}`. Weight initialisation as PyTorch's defaults (Kaiming-uniform, a = √5).

use tch::Tensor;
use tch::nn;

use crate::layers::BatchNorm2d;

use crate::{Model, ModelArgs, ModelError};

/// See the module documentation.
#[derive(Debug)]
pub struct MnistCnn {
    conv1: nn::Conv2D,
    bn1: BatchNorm2d,
    conv2: nn::Conv2D,
    bn2: BatchNorm2d,
    fc: nn::Linear,
    drop_rate: f64,
}

impl MnistCnn {
    /// Default widths of the two stages.
    pub const WIDTHS: [i64; 2] = [32, 64];

    /// Builds the network under `p`.
    pub fn new(p: &nn::Path, args: &ModelArgs) -> Result<Self, ModelError> {
        let widths = args.widths.clone().unwrap_or_else(|| Self::WIDTHS.to_vec());
        let (num_classes, in_chans, img_size) =
            (args.num_classes_or(10), args.in_chans.unwrap_or(1), args.img_size.unwrap_or(28));
        let bad = |message: String| ModelError::BadArgs { model: "mnist_cnn".into(), message };
        args.check_supported("mnist_cnn", &["num_classes", "in_chans", "img_size", "drop_rate", "widths"])?;
        let [w1, w2] = widths[..] else {
            return Err(bad(format!("`widths` must have 2 entries, got {widths:?}")));
        };
        if w1 <= 0 || w2 <= 0 || num_classes <= 0 || in_chans <= 0 {
            return Err(bad("widths, num_classes and in_chans must be positive".into()));
        }
        if img_size % 4 != 0 || img_size <= 0 {
            return Err(bad(format!("`img_size` must be a positive multiple of 4, got {img_size}")));
        }
        let conv = nn::ConvConfig { padding: 1, bias: false, ..Default::default() };
        let side = img_size / 4;
        Ok(MnistCnn {
            conv1: nn::conv2d(p / "conv1", in_chans, w1, 3, conv),
            bn1: BatchNorm2d::new(&(p / "bn1"), w1),
            conv2: nn::conv2d(p / "conv2", w1, w2, 3, conv),
            bn2: BatchNorm2d::new(&(p / "bn2"), w2),
            fc: nn::linear(p / "fc", w2 * side * side, num_classes, Default::default()),
            drop_rate: args.drop_rate(),
        })
    }
}

impl Model for MnistCnn {
    fn forward_features(&self, x: &Tensor, train: bool) -> Tensor {
        let x = x.apply(&self.conv1);
        let x = self.bn1.forward_t(&x, train).relu().max_pool2d_default(2);
        let x = x.apply(&self.conv2);
        self.bn2.forward_t(&x, train).relu().max_pool2d_default(2)
    }

    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let x = features.flatten(1, -1);
        let x = if train && self.drop_rate > 0.0 { x.dropout(self.drop_rate, true) } else { x };
        x.apply(&self.fc)
    }

    fn num_features(&self) -> i64 {
        self.fc.ws.size()[1]
    }

    fn head_prefixes(&self) -> &'static [&'static str] {
        &["fc."]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn keys_and_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        MnistCnn::new(&vs.root(), &ModelArgs::default()).unwrap();
        assert!(vs.variables().contains_key("bn1.num_batches_tracked"));
        let mut keys: Vec<String> = vs.variables().into_keys().collect();
        keys.sort();
        assert!(keys.contains(&"conv1.weight".to_string()));
        assert!(keys.contains(&"bn2.running_var".to_string()));
        assert!(keys.contains(&"fc.bias".to_string()));
        let trainable: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        // conv1 9·32, bn1 2·32, conv2 9·32·64, bn2 2·64, fc 64·7·7·10 + 10
        assert_eq!(trainable, 9 * 32 + 64 + 9 * 32 * 64 + 128 + 3136 * 10 + 10);
    }

    #[test]
    fn bad_args_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        let args = ModelArgs { widths: Some(vec![8]), ..Default::default() };
        assert!(MnistCnn::new(&vs.root(), &args).unwrap_err().to_string().contains("widths"));
        let args = ModelArgs { img_size: Some(30), ..Default::default() };
        assert!(MnistCnn::new(&vs.root(), &args).is_err());
        let m =
            MnistCnn::new(&(vs.root() / "ok"), &ModelArgs { widths: Some(vec![4, 8]), ..Default::default() })
                .unwrap();
        let y = Model::forward_t(&m, &Tensor::ones([3, 1, 28, 28], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), [3, 10]);
    }
}
