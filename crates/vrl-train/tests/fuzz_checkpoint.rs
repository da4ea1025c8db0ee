//! Property tests for checkpoint files (issue 19): a checkpoint that was cut short, had bytes flipped
//! or had its JSON header rewritten is read back as an error or as a checkpoint whose tensors match
//! their declared shapes; it never panics, and `Checkpoint::latest` falls back to an older file.

#![allow(clippy::unwrap_used)] // test code: a failure is a test failure

use proptest::prelude::*;
use tch::{Device, Kind, Tensor};
use vrl_train::Checkpoint;

/// The bytes of a small valid checkpoint at step 7, with a model and an optimizer group.
fn valid_checkpoint(dir: &std::path::Path) -> Vec<u8> {
    let weight = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]);
    let groups = [
        ("model", vec![("fc.weight".to_string(), weight)]),
        ("optim", vec![("step".to_string(), Tensor::from(7i64))]),
    ];
    let path = Checkpoint::save(dir, 7, &serde_json::json!({"epoch": 1, "batch": 3}), &groups, 1).unwrap();
    std::fs::read(path).unwrap()
}

/// Loads `bytes` as a checkpoint file; on success every tensor is checked against its group.
fn load(dir: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(Checkpoint::file_name(99));
    std::fs::write(&path, bytes).unwrap();
    let c = Checkpoint::load(&path).map_err(|e| e.to_string())?;
    for (_, t) in c.group("model").into_iter().chain(c.group("optim")) {
        assert!(t.numel() < 1 << 20);
    }
    let _ = c.state::<serde_json::Value>();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn damaged_checkpoints_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = valid_checkpoint(dir.path());
        for (at, value) in &flips {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len()));
            prop_assert!(load(dir.path(), &bytes).is_err());
        } else {
            let _ = load(dir.path(), &bytes);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        prop_assert!(load(dir.path(), &bytes).is_err());
    }
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = valid_checkpoint(dir.path());
    let mut torn = bytes.clone();
    torn.truncate(bytes.len() / 2);
    std::fs::write(dir.path().join(Checkpoint::file_name(8)), torn).unwrap();
    let c = Checkpoint::latest(dir.path()).unwrap().unwrap();
    assert_eq!(c.step, 7);
    assert_eq!(c.header["batch"], 3);
}
