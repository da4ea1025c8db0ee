//! bf16 autocast through the C++ shim, on the CPU (the same calls serve CUDA), and the pinned-memory
//! batch helper.

use tch::{Device, Kind, Tensor};
use vrl_train::{AutocastState, Precision, autocast, autocast_state, parse_precision, to_device_pinned};

fn linear_kind() -> Kind {
    let x = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
    let w = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
    x.linear::<Tensor>(&w, None).kind()
}

fn matmul_kind() -> Kind {
    let a = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
    let b = Tensor::ones([3, 5], (Kind::Float, Device::Cpu));
    a.matmul(&b).kind()
}

#[test]
fn bf16_guard_runs_linear_and_matmul_in_bfloat16_on_the_cpu() {
    assert_eq!((linear_kind(), matmul_kind()), (Kind::Float, Kind::Float));
    {
        let _amp = autocast(Device::Cpu, Precision::Bf16).unwrap();
        assert_eq!((linear_kind(), matmul_kind()), (Kind::BFloat16, Kind::BFloat16));
        // A convolution too; a reduction stays float32 (autocast's fp32 list).
        let x = Tensor::ones([1, 2, 5, 5], (Kind::Float, Device::Cpu));
        let w = Tensor::ones([3, 2, 3, 3], (Kind::Float, Device::Cpu));
        assert_eq!(x.conv2d::<Tensor>(&w, None, [1, 1], [0, 0], [1, 1], 1).kind(), Kind::BFloat16);
        let logits = Tensor::ones([2, 4], (Kind::BFloat16, Device::Cpu));
        let labels = Tensor::from_slice(&[0i64, 1]);
        assert_eq!(logits.cross_entropy_for_logits(&labels).kind(), Kind::Float);
    }
    assert_eq!((linear_kind(), matmul_kind()), (Kind::Float, Kind::Float));
    assert!(!autocast_state(Device::Cpu).unwrap().enabled);
}

#[test]
fn guards_nest_and_restore_the_previous_state() {
    let start = autocast_state(Device::Cpu).unwrap();
    assert!(!start.enabled);
    {
        let _outer = autocast(Device::Cpu, Precision::Bf16).unwrap();
        {
            let _inner = autocast(Device::Cpu, Precision::Bf16).unwrap();
            assert_eq!(linear_kind(), Kind::BFloat16);
        }
        // The inner bf16 guard left the outer region on.
        assert_eq!(linear_kind(), Kind::BFloat16);
        {
            // fp32 inside a bf16 region turns autocast off until dropped.
            let _fp32 = autocast(Device::Cpu, Precision::Fp32).unwrap();
            assert_eq!(linear_kind(), Kind::Float);
            assert!(!autocast_state(Device::Cpu).unwrap().enabled);
        }
        assert_eq!(linear_kind(), Kind::BFloat16);
        assert_eq!(
            autocast_state(Device::Cpu).unwrap(),
            AutocastState { enabled: true, kind: Some(Kind::BFloat16) }
        );
    }
    assert_eq!(autocast_state(Device::Cpu).unwrap(), start);
    // fp32 outside any region changes nothing.
    {
        let _fp32 = autocast(Device::Cpu, Precision::Fp32).unwrap();
        assert_eq!(autocast_state(Device::Cpu).unwrap(), start);
        assert_eq!(linear_kind(), Kind::Float);
    }
    assert_eq!(autocast_state(Device::Cpu).unwrap(), start);
}

#[test]
fn a_cuda_guard_sets_and_restores_the_cuda_dtype_and_leaves_the_cpu_alone() {
    // Autocast flags are thread-local state, settable without a GPU; CUDA's default dtype is fp16.
    let cuda = Device::Cuda(0);
    let start = autocast_state(cuda).unwrap();
    assert_eq!(start, AutocastState { enabled: false, kind: Some(Kind::Half) });
    {
        let _amp = autocast(cuda, Precision::Bf16).unwrap();
        assert_eq!(
            autocast_state(cuda).unwrap(),
            AutocastState { enabled: true, kind: Some(Kind::BFloat16) }
        );
        assert!(!autocast_state(Device::Cpu).unwrap().enabled);
        assert_eq!(linear_kind(), Kind::Float);
    }
    assert_eq!(autocast_state(cuda).unwrap(), start);
}

#[test]
fn precision_names() {
    assert_eq!(parse_precision("fp32").unwrap(), Precision::Fp32);
    assert_eq!(parse_precision("BF16").unwrap(), Precision::Bf16);
    assert_eq!(Precision::default(), Precision::Fp32);
    assert_eq!(Precision::Bf16.to_string(), "bf16");
    let e = parse_precision("fp64").unwrap_err().to_string();
    assert!(e.contains("`fp64`") && e.contains("expected `fp32` or `bf16`"), "{e}");
    let e = parse_precision("fp16").unwrap_err().to_string();
    assert!(e.contains("`fp16`") && e.contains("gradient scaler") && e.contains("bf16"), "{e}");
    let e = autocast(Device::Mps, Precision::Bf16).unwrap_err().to_string();
    assert!(e.contains("Mps") && e.contains("CPU or a CUDA device"), "{e}");
}

#[test]
fn pinned_helper_on_the_cpu_keeps_values_and_dtype() {
    let x = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 4]) * 0.5;
    let y = to_device_pinned(&x, Device::Cpu).unwrap();
    assert_eq!(y.device(), Device::Cpu);
    assert_eq!(y.kind(), Kind::Float);
    assert_eq!(y.size(), vec![3, 4]);
    assert!(y.equal(&x));
    let labels = Tensor::from_slice(&[3i64, 1, 4]);
    let l = to_device_pinned(&labels, Device::Cpu).unwrap();
    assert_eq!(Vec::<i64>::try_from(&l).unwrap(), vec![3, 1, 4]);
}
