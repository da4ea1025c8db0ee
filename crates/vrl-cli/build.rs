//! Links LibTorch (see the vrl-build crate) and records the git commit for `vrl doctor` and run metadata.

fn main() {
    vrl_build::link_libtorch();
    println!("cargo:rustc-env=VRL_GIT_COMMIT={}", vrl_build::git_commit());
}
