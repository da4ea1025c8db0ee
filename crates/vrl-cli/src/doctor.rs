//! `vrl doctor`: what this installation has.

use std::process::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    let cuda_build = env!("VRL_CUDA_VERSION");
    println!("vrl        {} (commit {})", env!("CARGO_PKG_VERSION"), crate::GIT_COMMIT);
    println!("tch        {}", env!("VRL_TCH_VERSION"));
    println!(
        "LibTorch   {}{}",
        env!("VRL_LIBTORCH_VERSION"),
        if cuda_build.is_empty() {
            " (CPU build)".to_string()
        } else {
            format!(" (built with CUDA {cuda_build})")
        }
    );
    println!("threads    {} intra-op, {} inter-op", tch::get_num_threads(), tch::get_num_interop_threads());
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let linked = |lib: &str| {
        maps.lines().find(|l| l.contains(lib)).and_then(|l| l.split_whitespace().last()).map(str::to_string)
    };
    if let Some(path) = linked("libtorch_cpu.so") {
        println!("libtorch   {path}");
    }
    let cuda_linked = linked("libtorch_cuda.so");
    println!(
        "CUDA       {} (libtorch_cuda {}); cuDNN {}",
        if tch::Cuda::is_available() {
            format!("available, {} device(s)", tch::Cuda::device_count())
        } else {
            "not available".into()
        },
        if cuda_linked.is_some() { "linked" } else { "not linked" },
        if tch::Cuda::cudnn_is_available() { "available" } else { "not available" },
    );
    let device = tch::Device::cuda_if_available();
    println!("device     {} ({})", vrl_train::device_label(device), vrl_train::device_name(device));
    let cache = vrl_cache::datasets_dir();
    println!("datasets   {}", cache.display());
    for m in vrl_cache::builtin_manifests() {
        let dir = vrl_cache::dataset_dir(&m.name);
        let status = vrl_cache::status_quick(&m, &dir);
        let size: u64 = m.files.iter().map(|f| f.size).sum();
        println!(
            "  {:<10} {} ({} files, {:.1} MB; source: {} {} {})",
            m.name,
            status,
            m.files.len(),
            size as f64 / 1e6,
            m.source.kind(),
            m.source.package(),
            m.source.version()
        );
    }
    Ok(ExitCode::SUCCESS)
}
