//! Variational autoencoders for disentanglement studies: disentanglement_lib's convolutional
//! encoder/decoder for 64×64 images with a Bernoulli likelihood and a reparameterised Gaussian
//! posterior ([`ConvVae`]), and the VAE, β-VAE, β-TCVAE and β-STCVAE objectives ([`Objective`]),
//! each reporting every ELBO term — reconstruction, index-code mutual information, between- and
//! within-group total correlation, dimension-wise KL — estimated on the minibatch with
//! minibatch-weighted or minibatch-stratified sampling ([`Estimator`]). See `docs/vae.md`.
//!
//! ```
//! use tch::{Device, Kind, Tensor, nn};
//! use vrl_vae::{ConvVae, ConvVaeConfig, Estimator, Objective, VaeLoss};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let model = ConvVae::new(&vs.root(), ConvVaeConfig::default()).unwrap(); // 1 channel, 10 latents
//! let x = Tensor::rand([8, 1, 64, 64], (Kind::Float, Device::Cpu)).round(); // binary images
//! let out = model.forward(&x).unwrap();
//! let criterion = VaeLoss {
//!     objective: Objective::beta_stcvae(2, 6.0, 1.0), // groups of 2, β_between = 6, β_within = 1
//!     estimator: Estimator::MinibatchWeighted,
//!     dataset_size: 737_280,
//! };
//! let loss = criterion.compute(&x, &out).unwrap();
//! loss.loss.backward();
//! let t = loss.terms;
//! let sum = t.index_code_mi + t.tc_between + t.tc_within + t.dimwise_kl;
//! assert!((sum - t.kl).abs() < 1e-3 * t.kl.abs().max(1.0));
//! ```

pub mod conv_vae;
mod error;
pub mod estimator;
pub mod objective;

pub use conv_vae::{ConvVae, ConvVaeConfig, VaeOutput, gaussian_kl, reparameterize};
pub use error::VaeError;
pub use estimator::{Estimator, KlTerms, LogDensities, log_densities, log_importance_weights};
pub use objective::{ElboTerms, Loss, Objective, VaeLoss, bernoulli_nll};
