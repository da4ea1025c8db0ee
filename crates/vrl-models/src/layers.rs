//! Building blocks shared by the families, with PyTorch's parameter names and semantics.

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// `torch.nn.BatchNorm2d` (also for 1-d features `[B, C]`): `weight`, `bias`, `running_mean`,
/// `running_var` and `num_batches_tracked` (int64), momentum 0.1 and eps 1e-5 by default. In training
/// mode it normalises with batch statistics and updates the running ones.
#[derive(Debug)]
pub struct BatchNorm2d {
    /// Scale, initialised to 1.
    pub weight: Tensor,
    /// Shift, initialised to 0.
    pub bias: Tensor,
    /// Running mean.
    pub running_mean: Tensor,
    /// Running (unbiased) variance.
    pub running_var: Tensor,
    /// Number of training batches seen.
    pub num_batches_tracked: Tensor,
    /// Running statistics momentum.
    pub momentum: f64,
    /// Added to the variance.
    pub eps: f64,
}

impl BatchNorm2d {
    /// A batch norm over `channels` under `p`.
    pub fn new(p: &nn::Path, channels: i64) -> Self {
        Self::with_eps(p, channels, 1e-5)
    }

    /// With a given eps (timm's EfficientNet uses 1e-3).
    pub fn with_eps(p: &nn::Path, channels: i64, eps: f64) -> Self {
        BatchNorm2d {
            weight: p.var("weight", &[channels], Init::Const(1.0)),
            bias: p.var("bias", &[channels], Init::Const(0.0)),
            running_mean: p.zeros_no_train("running_mean", &[channels]),
            running_var: p.ones_no_train("running_var", &[channels]),
            num_batches_tracked: p.add(
                "num_batches_tracked",
                Tensor::zeros([], (Kind::Int64, p.device())),
                false,
            ),
            momentum: 0.1,
            eps,
        }
    }

    /// Normalises `x` (`[B, C, ...]`).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if train {
            let _guard = tch::no_grad_guard();
            let mut n = self.num_batches_tracked.shallow_clone();
            let _ = n.f_add_scalar_(1);
        }
        Tensor::batch_norm(
            x,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            self.momentum,
            self.eps,
            false,
        )
    }
}

/// PyTorch's default initialisation of `nn.Linear` and `nn.Conv2d` weights and biases (Kaiming-uniform
/// with a = √5, which comes to uniform on `±1/√fan_in`), for families that keep it (timm's ResNet
/// classifier, torchvision's AlexNet). `fan_in` is `in_features` or `in_channels / groups × k × k`.
pub fn pytorch_default_init(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// Stochastic depth (Huang et al., 2016) per sample, as timm's `drop_path`: in training, each sample's
/// residual branch is zeroed with probability `p` and the survivors are scaled by `1 / (1 − p)`.
pub fn drop_path(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    let keep = 1.0 - p;
    let mut shape = vec![x.size()[0]];
    shape.extend(std::iter::repeat_n(1, x.dim() - 1));
    // As timm: one draw per sample from LibTorch's generator, the mask scaled before the product.
    let mut mask = Tensor::empty(shape.as_slice(), (x.kind(), x.device())).bernoulli_float_(keep);
    let _ = mask.f_div_scalar_(keep);
    x * mask
}

/// The three `[B, heads, N, d]` slices of a `[3, B, heads, N, d]` query/key/value tensor, by
/// `unbind(0)` as timm does: its backward is one `stack` of the three gradients, where three
/// `select`s would each scatter into a zero-filled tensor of the full size and add them up (about
/// 10% more time in a ViT-Ti attention's backward).
pub fn unbind_qkv(qkv: &Tensor) -> (Tensor, Tensor, Tensor) {
    match <[Tensor; 3]>::try_from(qkv.unbind(0)) {
        Ok([q, k, v]) => (q, k, v),
        Err(_) => (qkv.get(0), qkv.get(1), qkv.get(2)), // not 3 along dim 0: let the shapes fail later
    }
}

/// Fills `t` in place from a normal distribution with standard deviation `std` truncated to
/// `[a, b]` (absolute bounds, like timm's `trunc_normal_(std=.02)` with a = −2, b = 2), by the
/// inverse-CDF method PyTorch uses.
///
/// One difference from timm: the uniform draw is kept strictly inside (−1, 1). `uniform_` may return
/// its lower bound, and where the bounds are many standard deviations out (±2 with std 0.02: 2l − 1
/// is −1 in float32) `erfinv(−1) = −∞` would be clamped to `a`, a weight of −2 (100σ) about once in
/// 17 million draws. Here that draw becomes the largest finite value `erfinv` gives in the tensor's
/// precision (5.4σ in float32); every other draw is unchanged.
pub fn trunc_normal_(t: &mut Tensor, std: f64, a: f64, b: f64) {
    let _guard = tch::no_grad_guard();
    let cdf = |x: f64| 0.5 * (1.0 + erf(x / std / std::f64::consts::SQRT_2));
    let (l, u) = (cdf(a), cdf(b));
    let _ = t.uniform_(2.0 * l - 1.0, 2.0 * u - 1.0);
    uniform_to_trunc_normal_(t, std, a, b);
}

/// The second half of [`trunc_normal_`]: maps uniform draws in [−1, 1] to the truncated normal.
fn uniform_to_trunc_normal_(t: &mut Tensor, std: f64, a: f64, b: f64) {
    // Half the spacing of the tensor's floats just below 1: −1 + half_ulp and 1 − half_ulp are the
    // representable values next to ±1.
    let half_ulp = match t.kind() {
        Kind::Double => f64::EPSILON / 2.0,
        Kind::Half => 2f64.powi(-11),
        Kind::BFloat16 => 2f64.powi(-8),
        _ => f64::from(f32::EPSILON) / 2.0,
    };
    let _ = t.clamp_(-1.0 + half_ulp, 1.0 - half_ulp);
    let _ = t.erfinv_();
    let _ = t.f_mul_scalar_(std * std::f64::consts::SQRT_2);
    let _ = t.clamp_(a, b);
}

/// timm's `Mlp` with linear layers (ViT, MLP-Mixer, ConvNeXt): `fc1 → GELU (exact, erf) → fc2` over the
/// last dimension, keys `fc1.{weight,bias}`, `fc2.{weight,bias}`. timm's dropout inside the MLP
/// (`proj_drop_rate`) is 0 in every family that uses this and is not modelled. Built with PyTorch's
/// default initialisation; the families re-initialise as timm does ([`init_linear_trunc_normal`]).
#[derive(Debug)]
pub struct Mlp {
    /// `[hidden, in]` expansion.
    pub fc1: nn::Linear,
    /// `[out, hidden]` projection.
    pub fc2: nn::Linear,
}

impl Mlp {
    /// An MLP `in_features → hidden → out_features` under `p`.
    pub fn new(p: &nn::Path, in_features: i64, hidden: i64, out_features: i64) -> Self {
        Mlp {
            fc1: nn::linear(p / "fc1", in_features, hidden, Default::default()),
            fc2: nn::linear(p / "fc2", hidden, out_features, Default::default()),
        }
    }

    /// `fc2(gelu(fc1(x)))` for `x: [..., in]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.fc1).gelu("none").apply(&self.fc2)
    }

    /// Both linear layers mutably, for re-initialisation.
    pub fn linears_mut(&mut self) -> [&mut nn::Linear; 2] {
        [&mut self.fc1, &mut self.fc2]
    }
}

/// timm's usual linear initialisation: weight truncated normal (std `std`, cut at ±2 absolute),
/// bias zero.
pub fn init_linear_trunc_normal(linear: &mut nn::Linear, std: f64) {
    trunc_normal_(&mut linear.ws, std, -2.0, 2.0);
    if let Some(b) = &mut linear.bs {
        let _guard = tch::no_grad_guard();
        let _ = b.zero_();
    }
}

/// timm's `PatchEmbed` (ViT, MLP-Mixer): a convolution with kernel and stride `patch_size` (key
/// `proj.{weight,bias}`), its output flattened to tokens. Built with PyTorch's default initialisation.
#[derive(Debug)]
pub struct PatchEmbed {
    /// `[D, C, patch, patch]` projection.
    pub proj: nn::Conv2D,
}

impl PatchEmbed {
    /// Patches of side `patch_size` from `in_chans` channels to `embed_dim`, under `p` (keys `p.proj.*`).
    pub fn new(p: &nn::Path, in_chans: i64, embed_dim: i64, patch_size: i64) -> Self {
        let cfg = nn::ConvConfig { stride: patch_size, ..Default::default() };
        PatchEmbed { proj: nn::conv2d(p / "proj", in_chans, embed_dim, patch_size, cfg) }
    }

    /// Tokens in row-major patch order.
    ///
    /// # Shapes
    /// `x: [B, C, H, W]` → `[B, (H / patch) · (W / patch), D]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.proj).flatten(2, -1).transpose(1, 2)
    }
}

/// LayerNorm over the last dimension with eps 1e-6 (timm's ViT, MLP-Mixer and ConvNeXt default),
/// weight 1 and bias 0; keys `weight`, `bias`.
pub fn layer_norm(p: &nn::Path, dim: i64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig { eps: 1e-6, ..Default::default() })
}

/// The error function, from Numerical Recipes' Chebyshev approximation of erfc (|error| < 1.2e-7).
fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { 1.0 - r } else { r - 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn batch_norm_keys_and_counter() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNorm2d::new(&(vs.root() / "bn"), 3);
        let mut keys: Vec<String> = vs.variables().into_keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["bn.bias", "bn.num_batches_tracked", "bn.running_mean", "bn.running_var", "bn.weight"]
        );
        let x = Tensor::randn([4, 3, 2, 2], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
        let y = bn.forward_t(&x, true);
        assert_eq!(bn.num_batches_tracked.int64_value(&[]), 1);
        // Batch statistics: zero mean, unit variance per channel.
        let m = y.mean_dim(&[0i64, 2, 3][..], false, Kind::Float);
        assert!(m.abs().max().double_value(&[]) < 1e-5);
        // running_mean moved 10% of the way to the batch mean.
        let bm = x.mean_dim(&[0i64, 2, 3][..], false, Kind::Float);
        assert!((&bn.running_mean - bm * 0.1).abs().max().double_value(&[]) < 1e-6);
        let _ = bn.forward_t(&x, false);
        assert_eq!(bn.num_batches_tracked.int64_value(&[]), 1);
    }

    #[test]
    fn truncated_normal_stays_in_bounds_with_the_right_spread() {
        tch::manual_seed(0);
        let mut t = Tensor::zeros([100_000], (Kind::Float, Device::Cpu));
        trunc_normal_(&mut t, 0.02, -2.0, 2.0);
        let std = t.std(true).double_value(&[]);
        assert!((std - 0.02).abs() < 0.0005, "{std}");
        let mut t = Tensor::zeros([100_000], (Kind::Float, Device::Cpu));
        trunc_normal_(&mut t, 1.0, -1.0, 1.0);
        assert!(t.abs().max().double_value(&[]) <= 1.0);
        // Variance of a standard normal truncated to [-1, 1] is 0.2911.
        let var = t.var(true).double_value(&[]);
        assert!((var - 0.2911).abs() < 0.005, "{var}");
    }

    #[test]
    fn an_endpoint_uniform_draw_does_not_become_the_bound() {
        // uniform_(2l − 1, 2u − 1) may return exactly −1 when the bounds are far out (2l − 1 == −1).
        for kind in [Kind::Float, Kind::Double] {
            let mut t = Tensor::from_slice(&[-1.0f64, 0.0, 1.0]).to_kind(kind);
            uniform_to_trunc_normal_(&mut t, 0.02, -2.0, 2.0);
            let v: Vec<f64> = Vec::try_from(t.to_kind(Kind::Double)).unwrap();
            assert!(v[0] < -0.02 * 5.0 && v[0] > -0.02 * 9.0, "{kind:?}: {v:?}");
            assert_eq!(v[1], 0.0);
            assert!(v[2] > 0.02 * 5.0 && v[2] < 0.02 * 9.0, "{kind:?}: {v:?}");
        }
    }

    #[test]
    fn drop_path_scales_survivors() {
        tch::manual_seed(0);
        let x = Tensor::ones([1000, 4], (Kind::Float, Device::Cpu));
        let y = drop_path(&x, 0.25, true);
        let kept =
            y.sum_dim_intlist(&[1i64][..], false, Kind::Float).gt(0.0).sum(Kind::Float).double_value(&[]);
        assert!((kept - 750.0).abs() < 60.0, "{kept}");
        assert!((y.max().double_value(&[]) - 1.0 / 0.75).abs() < 1e-6);
        assert!(drop_path(&x, 0.25, false).equal(&x));
    }
}
