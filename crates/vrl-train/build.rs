//! Links LibTorch with an rpath and keeps libtorch_cuda linked (see the vrl-build crate), and compiles
//! `csrc/autocast.cpp`, the autocast controls that tch's C API lacks (device type and dtype).

use std::path::PathBuf;

fn main() {
    vrl_build::link_libtorch();
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        // link_libtorch has already warned; without LibTorch's headers the shim cannot be built.
        return;
    };
    let lib = std::fs::canonicalize(&lib).unwrap_or_else(|_| PathBuf::from(&lib));
    let root = lib.parent().unwrap_or(&lib);
    let include = root.join("include");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/autocast.cpp")
        .compile("vrl_autocast");
}
