//! Gradient-norm clipping and the split of parameters into a weight-decay and a no-decay group.
//!
//! ```text
//! clip_grad_norm:  n = ‖(g₁, …, gₖ)‖₂ over all gradients;  gᵢ ← gᵢ · min(1, max_norm / (n + 1e-6))
//! no decay:        dim(θ) < 2   or   the name matches one of the patterns
//! ```
//!
//! Clipping is `torch.nn.utils.clip_grad_norm_` (L2, `error_if_nonfinite=False`); the groups are timm's
//! `param_groups_weight_decay` (1-d tensors and the model's `no_weight_decay()` names get none).

use tch::Tensor;

use crate::{NamedParam, OptimError};

/// Scales the gradients of `params` so that their total L2 norm is at most `max_norm`, exactly as
/// `torch.nn.utils.clip_grad_norm_`: the norm `n` of all gradients together is computed, and every
/// gradient is multiplied by `min(1, max_norm / (n + 1e-6))` — so when `n > max_norm` (and, as in torch,
/// also when `n` is within 1e-6 below it). Returns `n`, the norm before
/// clipping (0 when no parameter has a gradient). Parameters without a gradient are skipped.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    let _guard = tch::no_grad_guard();
    let grads: Vec<Tensor> = params.iter().map(Tensor::grad).filter(Tensor::defined).collect();
    let norm = grads
        .iter()
        .map(|g| {
            let n = g.norm().double_value(&[]);
            n * n
        })
        .sum::<f64>()
        .sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for g in &grads {
            let mut g = g.shallow_clone();
            let _ = g.g_mul_scalar_(coef);
        }
    }
    norm
}

/// Which parameters get no weight decay: every tensor with fewer than two dimensions (biases,
/// normalisation weights, 1-d tokens), and every parameter whose name matches one of `patterns`.
///
/// Patterns are matched case-insensitively against the whole name **and** against every suffix of it
/// that starts after a `.`, so `cls_token` matches `cls_token` and `encoder.cls_token` (not
/// `my_cls_token`), and `bn*.weight` matches `layer1.0.bn1.weight`. In a pattern, `*` matches any run
/// of characters (dots included); every other character matches itself.
///
/// The defaults ([`ParamGroups::DEFAULT_PATTERNS`]) cover the ViT tokens and embeddings (`cls_token`,
/// `reg_token`, `pos_embed`, `dist_token`), prompts (`*prompt*`), biases (`bias`) and normalisation
/// weights (`*norm*.weight`, `bn*.weight`, `ln*.weight`, `gn*.weight`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamGroups {
    /// The no-decay name patterns.
    pub patterns: Vec<String>,
}

impl Default for ParamGroups {
    fn default() -> Self {
        ParamGroups { patterns: Self::DEFAULT_PATTERNS.iter().map(|p| p.to_string()).collect() }
    }
}

impl ParamGroups {
    /// The default no-decay patterns.
    pub const DEFAULT_PATTERNS: &'static [&'static str] = &[
        "cls_token",
        "reg_token",
        "dist_token",
        "pos_embed",
        "*prompt*",
        "bias",
        "*norm*.weight",
        "bn*.weight",
        "ln*.weight",
        "gn*.weight",
    ];

    /// Groups with the given patterns (in place of the defaults).
    pub fn new<S: Into<String>>(patterns: impl IntoIterator<Item = S>) -> Self {
        ParamGroups { patterns: patterns.into_iter().map(Into::into).collect() }
    }

    /// Whether `name` matches one of the patterns (see the type's documentation).
    pub fn matches(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let suffixes = std::iter::once(name.as_str())
            .chain(name.match_indices('.').map(|(i, _)| &name[i + 1..]))
            .collect::<Vec<_>>();
        self.patterns.iter().any(|p| {
            let p = p.to_ascii_lowercase();
            suffixes.iter().any(|s| glob_match(p.as_bytes(), s.as_bytes()))
        })
    }

    /// Whether the parameter `name` gets no weight decay: fewer than two dimensions, or a matching name.
    pub fn no_decay(&self, name: &str, param: &Tensor) -> bool {
        param.dim() < 2 || self.matches(name)
    }

    /// One flag per parameter, `true` for no decay; the argument of [`crate::create_with_groups`].
    pub fn flags(&self, params: &[NamedParam]) -> Vec<bool> {
        params.iter().map(|(n, p)| self.no_decay(n, p)).collect()
    }

    /// Splits `params` into `(decay, no_decay)`, keeping their order within each group.
    pub fn split(&self, params: Vec<NamedParam>) -> (Vec<NamedParam>, Vec<NamedParam>) {
        params.into_iter().partition(|(n, p)| !self.no_decay(n, p))
    }
}

/// `*` matches any run of bytes; everything else matches itself.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

/// Checks that there is one no-decay flag per parameter.
pub(crate) fn check_flags(optimizer: &str, params: usize, flags: usize) -> Result<(), OptimError> {
    if params != flags {
        return Err(OptimError::HParam {
            optimizer: optimizer.to_string(),
            key: "no_decay".into(),
            message: format!("{flags} no-decay flags for {params} parameters"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    fn grad_param(values: &[f64], grad: &[f64]) -> Tensor {
        let p = Tensor::from_slice(values).set_requires_grad(true);
        (&p * Tensor::from_slice(grad)).sum(Kind::Double).backward();
        p
    }

    #[test]
    fn clip_grad_norm_matches_hand_computed_values() {
        // Gradients (3, 4) and (12,): total norm √(9 + 16 + 144) = 13.
        let a = grad_param(&[1.0, 1.0], &[3.0, 4.0]);
        let b = grad_param(&[1.0], &[12.0]);
        let c = Tensor::ones([2], (Kind::Double, Device::Cpu)).set_requires_grad(true); // no gradient
        let params = [a.shallow_clone(), b.shallow_clone(), c];
        assert!((clip_grad_norm(&params, 100.0) - 13.0).abs() < 1e-12);
        assert_eq!(Vec::<f64>::try_from(&a.grad()).unwrap(), [3.0, 4.0]); // under the limit: unchanged
        assert!((clip_grad_norm(&params, 6.5) - 13.0).abs() < 1e-12);
        let coef = 6.5 / (13.0 + 1e-6);
        for (got, want) in Vec::<f64>::try_from(&a.grad()).unwrap().iter().zip([3.0 * coef, 4.0 * coef]) {
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        }
        assert!((b.grad().double_value(&[0]) - 12.0 * coef).abs() < 1e-15);
        // Now the norm is n = 6.5 · 13 / (13 + 1e-6), just under 6.5, but n + 1e-6 > 6.5, so torch scales
        // once more, by 6.5 / (n + 1e-6) (its coefficient is clamped at 1, not skipped below the limit).
        let n = 13.0 * coef;
        assert!((clip_grad_norm(&params, 6.5) - n).abs() < 1e-12);
        assert!((b.grad().double_value(&[0]) - 12.0 * coef * 6.5 / (n + 1e-6)).abs() < 1e-14);
        // Well under the limit: coefficient clamped at 1.
        let before = b.grad().double_value(&[0]);
        clip_grad_norm(&params, 7.0);
        assert_eq!(b.grad().double_value(&[0]), before);
        assert_eq!(clip_grad_norm(&[], 1.0), 0.0);
    }

    #[test]
    fn every_parameter_lands_in_exactly_one_group() {
        let shapes: &[(&str, &[i64])] = &[
            ("cls_token", &[1, 1, 8]),
            ("reg_token", &[1, 4, 8]),
            ("pos_embed", &[1, 17, 8]),
            ("patch_embed.proj.weight", &[8, 3, 4, 4]),
            ("patch_embed.proj.bias", &[8]),
            ("prompt.embeddings", &[10, 8]),
            ("blocks.0.deep_prompt", &[1, 5, 8]),
            ("blocks.0.norm1.weight", &[8]),
            ("blocks.0.norm1.bias", &[8]),
            ("blocks.0.attn.qkv.weight", &[24, 8]),
            ("blocks.0.attn.qkv.bias", &[24]),
            ("blocks.0.attn.proj.weight", &[8, 8]),
            ("blocks.0.mlp.fc1.weight", &[32, 8]),
            ("blocks.0.ls1.gamma", &[8]),
            ("layer1.0.bn1.weight", &[8]),
            ("layer1.0.conv1.weight", &[8, 8, 3, 3]),
            ("norm.weight", &[8]),
            ("head.weight", &[10, 8]),
            ("head.bias", &[10]),
        ];
        let params: Vec<NamedParam> = shapes
            .iter()
            .map(|(n, s)| (n.to_string(), Tensor::zeros(*s, (Kind::Float, Device::Cpu))))
            .collect();
        let groups = ParamGroups::default();
        let flags = groups.flags(&params);
        let (decay, no_decay) =
            groups.split(params.iter().map(|(n, p)| (n.clone(), p.shallow_clone())).collect());
        assert_eq!(decay.len() + no_decay.len(), params.len());
        for ((name, _), flag) in params.iter().zip(&flags) {
            let in_decay = decay.iter().filter(|(n, _)| n == name).count();
            let in_no_decay = no_decay.iter().filter(|(n, _)| n == name).count();
            assert_eq!((in_decay, in_no_decay), if *flag { (0, 1) } else { (1, 0) }, "{name}");
        }
        fn names(g: &[NamedParam]) -> Vec<&str> {
            g.iter().map(|(n, _)| n.as_str()).collect()
        }
        assert_eq!(
            names(&decay),
            [
                "patch_embed.proj.weight",
                "blocks.0.attn.qkv.weight",
                "blocks.0.attn.proj.weight",
                "blocks.0.mlp.fc1.weight",
                "layer1.0.conv1.weight",
                "head.weight"
            ]
        );
        for token in ["cls_token", "reg_token", "pos_embed", "prompt.embeddings", "blocks.0.deep_prompt"] {
            assert!(names(&no_decay).contains(&token), "{token}");
        }
    }

    #[test]
    fn patterns_are_globs_on_dot_suffixes() {
        let g = ParamGroups::default();
        assert!(g.matches("encoder.cls_token") && g.matches("CLS_TOKEN"));
        assert!(!g.matches("my_cls_token"));
        assert!(g.matches("bias") && g.matches("a.b.bias") && !g.matches("a.biased"));
        assert!(g.matches("layer1.0.bn1.weight") && g.matches("enc.LayerNorm.weight"));
        assert!(!g.matches("head.weight"));
        let custom = ParamGroups::new(["head.*"]);
        assert!(custom.matches("model.head.weight") && !custom.matches("model.cls_token"));
        assert!(glob_match(b"*", b"") && glob_match(b"a*c*", b"abcd") && !glob_match(b"a*c", b"abd"));
    }
}
