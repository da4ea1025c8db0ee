//! One training step, shared by the training loop, the criterion bench and `vrl bench mnist-step`.

use tch::{Device, Kind, Tensor, nn};
use vrl_models::{Model, ModelArgs};
use vrl_optim::{HParams, Optimizer};
use vrl_train::Precision;

/// A model, its variables and an optimizer over them.
pub struct TrainStep {
    /// The variables (weights and batch-norm statistics).
    pub vs: nn::VarStore,
    /// The network.
    pub model: Box<dyn Model>,
    /// The optimizer over the trainable variables.
    pub optimizer: Box<dyn Optimizer>,
    /// The precision of the forward pass (autocast around forward and loss); fp32 by default.
    pub precision: Precision,
}

impl std::fmt::Debug for TrainStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainStep")
            .field("model", &self.model)
            .field("optimizer", &self.optimizer.name())
            .field("precision", &self.precision)
            .finish()
    }
}

impl TrainStep {
    /// Builds the model `model` on `device` (initialised from LibTorch's generator, which the caller seeds)
    /// and the optimizer `optimizer` over its trainable variables, in name order.
    pub fn new(
        model: &str,
        args: &ModelArgs,
        optimizer: &str,
        hparams: &HParams,
        device: Device,
    ) -> anyhow::Result<Self> {
        let vs = nn::VarStore::new(device);
        let model = vrl_models::create(model, &vs.root(), args)?;
        let mut params: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let optimizer = vrl_optim::create(optimizer, hparams, params)?;
        Ok(TrainStep { vs, model, optimizer, precision: Precision::Fp32 })
    }

    /// The same with the forward pass at `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The forward pass (training mode if `train`) and the cross-entropy with `reduction`, under
    /// autocast at [`TrainStep::precision`] for the variables' device. The loss is computed on float32
    /// logits. Returns the loss and the logits (in the autocast dtype under bf16).
    pub fn forward_loss(
        &self,
        images: &Tensor,
        labels: &Tensor,
        train: bool,
        reduction: tch::Reduction,
    ) -> anyhow::Result<(Tensor, Tensor)> {
        let _amp = vrl_train::autocast(self.vs.device(), self.precision)?;
        let logits = self.model.forward_t(images, train);
        let loss = logits
            .f_to_kind(Kind::Float)?
            .f_cross_entropy_loss::<Tensor>(labels, None, reduction, -100, 0.0)?;
        Ok((loss, logits))
    }

    /// Forward in training mode and cross-entropy (under autocast at [`TrainStep::precision`]), then,
    /// outside autocast, backward and one update at rate `lr`.
    /// Returns the loss (0-d) and the logits, detached (no device sync). A step whose gradients are not
    /// finite is refused by the optimizer and returns a NaN loss, which the loop records as divergence.
    ///
    /// # Shapes
    /// `images: [B, C, H, W]` float, `labels: [B]` int64.
    pub fn step(&mut self, images: &Tensor, labels: &Tensor, lr: f64) -> anyhow::Result<(Tensor, Tensor)> {
        let (loss, logits) = self.forward_loss(images, labels, true, tch::Reduction::Mean)?;
        self.optimizer.zero_grad();
        loss.f_backward()?;
        match self.optimizer.step(lr) {
            // A non-finite gradient: no update was made; report the step as diverged (NaN loss).
            Err(vrl_optim::OptimError::NonFinite { .. }) => {
                return Ok((Tensor::from(f64::NAN), logits.detach()));
            }
            other => other?,
        }
        Ok((loss.detach(), logits.detach()))
    }
}
