//! The thread setting: `0` is LibTorch's default as it was at the start, whatever was set in between
//! (the tour runs several studies in one process).

#[test]
fn zero_means_the_first_default_even_after_another_setting() {
    let default = vrl_train::configure_threads(0);
    assert!(default >= 1);
    assert_eq!(vrl_train::configure_threads(default + 1), default + 1);
    assert_eq!(vrl_train::configure_threads(0), default);
    assert_eq!(vrl_train::configure_threads(1), 1);
    assert_eq!(vrl_train::configure_threads(0), default);
}
