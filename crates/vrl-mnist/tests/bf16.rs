//! A few training steps of the MNIST network under bf16 autocast on the CPU: the forward pass runs in
//! bfloat16, the weights stay float32, and the loss is finite and falls on a learnable toy batch.

#![allow(clippy::unwrap_used)] // a failure is a test failure

use tch::{Device, Kind, Tensor};
use vrl_mnist::TrainStep;
use vrl_models::ModelArgs;
use vrl_optim::HParams;
use vrl_train::Precision;

/// 64 images of 28x28: class c (0..4) lights up a 7x7 block at a class-dependent place, plus noise.
fn toy_batch() -> (Tensor, Tensor) {
    let labels = Tensor::arange(64, (Kind::Int64, Device::Cpu)).remainder(4);
    let images = Tensor::randn([64, 1, 28, 28], (Kind::Float, Device::Cpu)) * 0.3;
    for c in 0..4i64 {
        let mask = labels.eq(c).to_kind(Kind::Float).view([64, 1, 1, 1]);
        let mut block = images.narrow(2, c * 7, 7).narrow(3, c * 7, 7);
        let _ = block.g_add_(&(mask * 2.0));
    }
    (images, labels)
}

fn tiny(precision: Precision) -> TrainStep {
    tch::manual_seed(0);
    let args = ModelArgs {
        num_classes: Some(4),
        in_chans: Some(1),
        img_size: Some(28),
        widths: Some(vec![4, 8]),
        ..ModelArgs::default()
    };
    let hp = HParams::parse(&["lr=0.01", "weight_decay=0"]).unwrap();
    TrainStep::new("mnist_cnn", &args, "adamw", &hp, Device::Cpu).unwrap().with_precision(precision)
}

#[test]
fn bf16_steps_train_with_finite_falling_loss_and_float32_weights() {
    tch::manual_seed(1);
    let (x, y) = toy_batch();
    let mut ts = tiny(Precision::Bf16);
    let mut losses = Vec::new();
    for _ in 0..25 {
        let (loss, logits) = ts.step(&x, &y, 0.01).unwrap();
        assert_eq!(logits.kind(), Kind::BFloat16, "the forward pass ran under bf16 autocast");
        assert_eq!(loss.kind(), Kind::Float, "the loss is computed in float32");
        losses.push(loss.double_value(&[]));
    }
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[20..].iter().sum::<f64>() / 5.0;
    assert!(last < 0.5 * first, "the loss should fall: {losses:?}");
    for (name, t) in ts.vs.variables() {
        if t.is_floating_point() {
            assert_eq!(t.kind(), Kind::Float, "{name} stays float32");
        }
    }
    // The guard is gone after the step: a plain forward is float32 again.
    assert_eq!(ts.model.forward_t(&x, false).kind(), Kind::Float);
    assert!(!vrl_train::autocast_state(Device::Cpu).unwrap().enabled);
}

#[test]
fn fp32_steps_stay_float32() {
    let (x, y) = toy_batch();
    let mut ts = tiny(Precision::Fp32);
    let (loss, logits) = ts.step(&x, &y, 0.01).unwrap();
    assert_eq!((loss.kind(), logits.kind()), (Kind::Float, Kind::Float));
}
