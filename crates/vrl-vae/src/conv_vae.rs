//! The convolutional VAE for 64×64 images of disentanglement_lib (`conv_encoder` / `deconv_decoder`
//! in `methods/shared/architectures.py`, after row 3 of Table 1 of the β-VAE paper).
//!
//! Encoder, `[B, C, 64, 64] → mean, log_var: [B, latent_dim]`:
//! `conv1` 32×4×4 s2 → `conv2` 32×4×4 s2 → `conv3` 64×2×2 s2 → `conv4` 64×2×2 s2 (each with ReLU;
//! 64 → 32 → 16 → 8 → 4) → flatten (1024) → `fc` 256, ReLU → `fc_mean`, `fc_log_var`.
//! Note that disentanglement_lib's third and fourth convolutions have 2×2 kernels, not 4×4.
//! TensorFlow's `padding="same"` is PyTorch's `padding=1` for the 4×4 convolutions and `padding=0`
//! for the 2×2 ones at these sizes (the padding is symmetric), so the shapes match exactly.
//!
//! Decoder, `z: [B, latent_dim] → logits: [B, C, 64, 64]`: `fc1` 256, ReLU → `fc2` 1024, ReLU →
//! reshape `[B, 64, 4, 4]` → `deconv1` 64 → `deconv2` 32 → `deconv3` 32 (4×4 s2 transposed
//! convolutions, `padding=1`, ReLU) → `deconv4` C (no activation): Bernoulli logits.
//!
//! Keys, as a PyTorch module with these attribute names would have them: `encoder.conv{1..4}`,
//! `encoder.fc`, `encoder.fc_mean`, `encoder.fc_log_var`, `decoder.fc{1,2}`, `decoder.deconv{1..4}`,
//! each with `weight` and `bias`. Initialisation is PyTorch's default (uniform on `±1/√fan_in`, for
//! transposed convolutions `fan_in = out_channels·k·k` as PyTorch computes it); disentanglement_lib
//! uses TensorFlow's Glorot-uniform weights and zero biases instead.

use tch::{Kind, Tensor, nn};
use vrl_models::layers::pytorch_default_init;

use crate::VaeError;

/// The side of the square input images.
pub const IMAGE_SIZE: i64 = 64;

/// Sizes of a [`ConvVae`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvVaeConfig {
    /// Image channels (1 for dSprites).
    pub in_chans: i64,
    /// Number of latent dimensions (10 in disentanglement_lib's studies).
    pub latent_dim: i64,
}

impl Default for ConvVaeConfig {
    fn default() -> Self {
        ConvVaeConfig { in_chans: 1, latent_dim: 10 }
    }
}

/// What [`ConvVae::forward`] returns.
#[derive(Debug)]
pub struct VaeOutput {
    /// Posterior means, `[B, D]`.
    pub mean: Tensor,
    /// Posterior log-variances, `[B, D]`.
    pub log_var: Tensor,
    /// One reparameterised sample `mean + exp(log_var / 2) · ε`, `[B, D]`.
    pub z: Tensor,
    /// Bernoulli logits of the reconstruction, `[B, C, 64, 64]`.
    pub logits: Tensor,
}

/// The encoder (see the module documentation).
#[derive(Debug)]
pub struct ConvEncoder {
    convs: [nn::Conv2D; 4],
    fc: nn::Linear,
    fc_mean: nn::Linear,
    fc_log_var: nn::Linear,
}

/// The decoder (see the module documentation).
#[derive(Debug)]
pub struct ConvDecoder {
    fc1: nn::Linear,
    fc2: nn::Linear,
    deconvs: [nn::ConvTranspose2D; 4],
}

/// Encoder and decoder of disentanglement_lib's convolutional VAE (see the module documentation).
#[derive(Debug)]
pub struct ConvVae {
    /// The encoder.
    pub encoder: ConvEncoder,
    /// The decoder.
    pub decoder: ConvDecoder,
    config: ConvVaeConfig,
}

fn linear(p: nn::Path, i: i64, o: i64) -> nn::Linear {
    let init = pytorch_default_init(i);
    nn::linear(p, i, o, nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true })
}

fn conv(p: nn::Path, i: i64, o: i64, k: i64, padding: i64) -> nn::Conv2D {
    let init = pytorch_default_init(i * k * k);
    nn::conv2d(
        p,
        i,
        o,
        k,
        nn::ConvConfig { stride: 2, padding, ws_init: init, bs_init: init, ..Default::default() },
    )
}

fn deconv(p: nn::Path, i: i64, o: i64) -> nn::ConvTranspose2D {
    let init = pytorch_default_init(o * 16);
    let config =
        nn::ConvTransposeConfig { stride: 2, padding: 1, ws_init: init, bs_init: init, ..Default::default() };
    nn::conv_transpose2d(p, i, o, 4, config)
}

impl ConvEncoder {
    /// Builds the encoder under `p`.
    pub fn new(p: &nn::Path, config: ConvVaeConfig) -> Self {
        let c = config.in_chans;
        ConvEncoder {
            convs: [
                conv(p / "conv1", c, 32, 4, 1),
                conv(p / "conv2", 32, 32, 4, 1),
                conv(p / "conv3", 32, 64, 2, 0),
                conv(p / "conv4", 64, 64, 2, 0),
            ],
            fc: linear(p / "fc", 1024, 256),
            fc_mean: linear(p / "fc_mean", 256, config.latent_dim),
            fc_log_var: linear(p / "fc_log_var", 256, config.latent_dim),
        }
    }

    /// `x: [B, C, 64, 64]` → `(mean, log_var)`, each `[B, D]`. Shapes are checked by
    /// [`ConvVae::encode`].
    fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let h = self.convs.iter().fold(x.shallow_clone(), |h, c| h.apply(c).relu());
        let h = h.flatten(1, -1).apply(&self.fc).relu();
        (h.apply(&self.fc_mean), h.apply(&self.fc_log_var))
    }
}

impl ConvDecoder {
    /// Builds the decoder under `p`.
    pub fn new(p: &nn::Path, config: ConvVaeConfig) -> Self {
        ConvDecoder {
            fc1: linear(p / "fc1", config.latent_dim, 256),
            fc2: linear(p / "fc2", 256, 1024),
            deconvs: [
                deconv(p / "deconv1", 64, 64),
                deconv(p / "deconv2", 64, 32),
                deconv(p / "deconv3", 32, 32),
                deconv(p / "deconv4", 32, config.in_chans),
            ],
        }
    }

    fn forward(&self, z: &Tensor) -> Tensor {
        let h = z.apply(&self.fc1).relu().apply(&self.fc2).relu().view([-1, 64, 4, 4]);
        let [d1, d2, d3, d4] = &self.deconvs;
        h.apply(d1).relu().apply(d2).relu().apply(d3).relu().apply(d4)
    }
}

impl ConvVae {
    /// Builds the model under `p` (keys `encoder.*`, `decoder.*` relative to `p`).
    ///
    /// # Errors
    /// When `in_chans` or `latent_dim` is not positive.
    pub fn new(p: &nn::Path, config: ConvVaeConfig) -> Result<Self, VaeError> {
        for (name, value) in [("in_chans", config.in_chans), ("latent_dim", config.latent_dim)] {
            if value <= 0 {
                return Err(VaeError::Hyperparameter {
                    name: name.into(),
                    value: value.to_string(),
                    expected: "a positive integer".into(),
                });
            }
        }
        Ok(ConvVae {
            encoder: ConvEncoder::new(&(p / "encoder"), config),
            decoder: ConvDecoder::new(&(p / "decoder"), config),
            config,
        })
    }

    /// The sizes the model was built with.
    pub fn config(&self) -> ConvVaeConfig {
        self.config
    }

    /// Posterior parameters of `x: [B, C, 64, 64]`: `(mean, log_var)`, each `[B, D]`.
    ///
    /// # Errors
    /// When `x` is not `[B, C, 64, 64]` with `B ≥ 1`, or not floating point.
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor), VaeError> {
        let size = x.size();
        let ok = matches!(size[..], [b, c, IMAGE_SIZE, IMAGE_SIZE] if b >= 1 && c == self.config.in_chans)
            && x.is_floating_point();
        if !ok {
            return Err(VaeError::Shape {
                name: "x".into(),
                found: size,
                expected: format!(
                    "a floating-point [B, {}, {IMAGE_SIZE}, {IMAGE_SIZE}] batch (got kind {:?})",
                    self.config.in_chans,
                    x.kind()
                ),
            });
        }
        Ok(self.encoder.forward(x))
    }

    /// Bernoulli logits `[B, C, 64, 64]` of `z: [B, D]`.
    ///
    /// # Errors
    /// When `z` is not `[B, latent_dim]`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor, VaeError> {
        check_codes("z", z, self.config.latent_dim)?;
        Ok(self.decoder.forward(z))
    }

    /// Encodes `x`, draws one reparameterised sample from the posterior (with tch's global random
    /// generator) and decodes it.
    ///
    /// # Errors
    /// As [`ConvVae::encode`].
    pub fn forward(&self, x: &Tensor) -> Result<VaeOutput, VaeError> {
        let (mean, log_var) = self.encode(x)?;
        let z = reparameterize(&mean, &log_var);
        let logits = self.decoder.forward(&z);
        Ok(VaeOutput { mean, log_var, z, logits })
    }
}

/// `mean + exp(log_var / 2) · ε` with `ε ~ N(0, I)` from tch's global generator.
pub fn reparameterize(mean: &Tensor, log_var: &Tensor) -> Tensor {
    mean + (log_var * 0.5).exp() * mean.randn_like()
}

/// Checks that `t` is a floating-point `[B, d]` matrix with `B ≥ 1`.
pub(crate) fn check_codes(name: &str, t: &Tensor, d: i64) -> Result<(), VaeError> {
    let size = t.size();
    if matches!(size[..], [b, dd] if b >= 1 && dd == d) && t.is_floating_point() {
        Ok(())
    } else {
        Err(VaeError::Shape {
            name: name.into(),
            found: size,
            expected: format!("a floating-point [B, {d}] matrix (got kind {:?})", t.kind()),
        })
    }
}

/// Closed-form `KL(N(mean, exp(log_var)) ‖ N(0, I))` per sample, `[B]`.
pub fn gaussian_kl(mean: &Tensor, log_var: &Tensor) -> Tensor {
    ((mean.square() + log_var.exp() - log_var - 1.0) * 0.5)
        .sum_dim_intlist(-1, false, Kind::Double)
        .to_kind(mean.kind())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn shapes_and_keys() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = ConvVae::new(&vs.root(), ConvVaeConfig::default()).expect("model");
        let x = Tensor::rand([3, 1, 64, 64], (Kind::Float, Device::Cpu));
        let (mean, log_var) = model.encode(&x).expect("encode");
        assert_eq!(mean.size(), [3, 10]);
        assert_eq!(log_var.size(), [3, 10]);
        let out = model.forward(&x).expect("forward");
        assert_eq!(out.z.size(), [3, 10]);
        assert_eq!(out.logits.size(), [3, 1, 64, 64]);
        let vars = vs.variables();
        let mut keys: Vec<_> = vars.iter().map(|(k, v)| (k.clone(), v.size())).collect();
        keys.sort();
        let shape = |k: &str| keys.iter().find(|(n, _)| n == k).map(|(_, s)| s.clone());
        assert_eq!(shape("encoder.conv1.weight"), Some(vec![32, 1, 4, 4]));
        assert_eq!(shape("encoder.conv3.weight"), Some(vec![64, 32, 2, 2]));
        assert_eq!(shape("encoder.fc.weight"), Some(vec![256, 1024]));
        assert_eq!(shape("encoder.fc_log_var.bias"), Some(vec![10]));
        assert_eq!(shape("decoder.fc2.weight"), Some(vec![1024, 256]));
        assert_eq!(shape("decoder.deconv4.weight"), Some(vec![32, 1, 4, 4]));
        assert_eq!(keys.len(), 2 * (4 + 3 + 2 + 4));
        // Parameter count as the PyTorch twin (python/vae_reference.py) prints it.
        let n: i64 = vars.values().map(Tensor::numel).map(|n| n as i64).sum();
        assert_eq!(n, 690_517);
    }

    #[test]
    fn bad_input_is_an_error() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = ConvVae::new(&vs.root(), ConvVaeConfig::default()).expect("model");
        let err = model.encode(&Tensor::zeros([2, 1, 32, 32], (Kind::Float, Device::Cpu))).unwrap_err();
        assert!(err.to_string().contains("[2, 1, 32, 32]"), "{err}");
        assert!(model.decode(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu))).is_err());
        let bad = ConvVae::new(&vs.root(), ConvVaeConfig { in_chans: 1, latent_dim: 0 });
        assert!(bad.unwrap_err().to_string().contains("latent_dim"));
    }

    #[test]
    fn closed_form_kl() {
        let mean = Tensor::from_slice(&[0.5f64, -1.0]).view([1, 2]);
        let log_var = Tensor::from_slice(&[0.2f64, -0.3]).view([1, 2]);
        let want: f64 =
            [(0.5f64, 0.2f64), (-1.0, -0.3)].iter().map(|&(m, lv)| 0.5 * (m * m + lv.exp() - lv - 1.0)).sum();
        assert!((gaussian_kl(&mean, &log_var).double_value(&[0]) - want).abs() < 1e-14);
    }
}
