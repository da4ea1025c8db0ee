//! Property tests of the `.npy` and `.npz` readers on untrusted bytes, with a fixed budget of cases
//! so that they run in CI in about a second on two cores: nothing panics, a valid header with any tail gives the
//! exact array or an error, and a huge declared shape is an error without an allocation of its size.

#![allow(clippy::unwrap_used)] // tests: a failure is a test failure

use std::io::Write;

use proptest::prelude::*;
use vrl_data::npy::{NpyArray, NpyData, NpyError, decode_npy, encode_npy, read_npz};
use zip::write::SimpleFileOptions;

const DTYPES: [(&str, usize); 11] = [
    ("|b1", 1),
    ("|i1", 1),
    ("<i2", 2),
    ("<i4", 4),
    ("<i8", 8),
    ("|u1", 1),
    ("<u2", 2),
    ("<u4", 4),
    ("<u8", 8),
    ("<f4", 4),
    ("<f8", 8),
];

/// A version 1.0 header for `descr` and `shape`, as numpy pads it.
fn header(descr: &str, fortran: bool, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let order = if fortran { "True" } else { "False" };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {tuple}, }}");
    while (11 + dict.len()) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

fn npz(entries: &[(String, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
    let options = SimpleFileOptions::default().compression_method(method);
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(name.as_str(), options).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A small valid array of any supported dtype.
fn array() -> impl Strategy<Value = NpyArray> {
    (proptest::collection::vec(0usize..4, 0..4), 0usize..DTYPES.len(), any::<u64>()).prop_map(
        |(shape, d, seed)| {
            let n: usize = shape.iter().product();
            let bytes: Vec<u8> = (0..n * DTYPES[d].1)
                .map(|i| (seed.wrapping_mul(i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
                .collect();
            let mut file = header(DTYPES[d].0, false, &shape);
            file.extend_from_slice(&bytes);
            decode_npy(&file).unwrap()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_npy(&bytes);
        let mut prefixed = b"\x93NUMPY\x01\x00".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = decode_npy(&prefixed);
    }

    #[test]
    fn valid_headers_with_arbitrary_tails(
        shape in proptest::collection::vec(0usize..6, 0..4),
        d in 0usize..DTYPES.len(),
        fortran in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let (descr, size) = DTYPES[d];
        let mut bytes = header(descr, fortran, &shape);
        bytes.extend_from_slice(&tail);
        let expected = shape.iter().product::<usize>() * size;
        match decode_npy(&bytes) {
            Ok(a) => {
                prop_assert_eq!(tail.len(), expected);
                prop_assert_eq!(&a.shape, &shape);
                prop_assert_eq!(a.data.len() * size, expected);
                prop_assert_eq!(a.descr(), descr);
                // Bool is written back as 0 and 1 whatever non-zero byte was read.
                if !fortran && descr != "|b1" {
                    prop_assert_eq!(&encode_npy(&a)[..], &bytes[..], "C-order arrays re-encode byte for byte");
                }
            }
            Err(NpyError::Truncated { expected: e, found, .. }) => {
                prop_assert!(tail.len() < expected && e == expected && found == tail.len());
            }
            Err(NpyError::ExtraBytes { expected: e, extra }) => {
                prop_assert!(e == expected && extra == tail.len() - expected);
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    #[test]
    fn huge_shapes_without_data_are_errors(
        shape in proptest::collection::vec(1usize..=usize::MAX, 1..6),
        d in 0usize..DTYPES.len(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        // Declared sizes up to 2^64 elements and beyond: if any were allocated, the test would abort.
        let big: Vec<usize> = shape.iter().map(|&s| s | (1 << 40)).collect();
        let mut bytes = header(DTYPES[d].0, false, &big);
        bytes.extend_from_slice(&tail);
        let e = decode_npy(&bytes).unwrap_err();
        prop_assert!(
            matches!(e, NpyError::Truncated { .. } | NpyError::TooLarge { .. }),
            "{e}"
        );
    }

    #[test]
    fn mutated_files_never_panic(
        a in array(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode_npy(&a);
        for (i, b) in &edits {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        if let Ok(b) = decode_npy(&bytes) {
            prop_assert_eq!(b.data.len(), b.shape.iter().product::<usize>());
        }
        let cut = cut.index(bytes.len());
        let _ = decode_npy(&bytes[..cut]);
    }

    #[test]
    fn npz_round_trips_and_mutations_never_panic(
        arrays in proptest::collection::vec(array(), 1..4),
        deflate in any::<bool>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let entries: Vec<(String, Vec<u8>)> =
            arrays.iter().enumerate().map(|(i, a)| (format!("a{i}.npy"), encode_npy(a))).collect();
        let mut bytes = npz(&entries, deflate);
        let read = read_npz(&bytes, 1 << 20).unwrap();
        prop_assert_eq!(read.len(), arrays.len());
        for (i, ((name, got), want)) in read.iter().zip(&arrays).enumerate() {
            prop_assert_eq!(name, &format!("a{i}"));
            // Bytes, not values: NaN != NaN.
            prop_assert_eq!(encode_npy(got), encode_npy(want));
        }
        for (i, b) in &edits {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        let _ = read_npz(&bytes, 1 << 20);
        let cut = cut.index(bytes.len());
        let _ = read_npz(&bytes[..cut], 1 << 20);
    }

    #[test]
    fn npz_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = read_npz(&bytes, 1 << 20);
        // With a zip end-of-central-directory record, so that the reader gets past the first check.
        let mut eocd = bytes.clone();
        eocd.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0\x2e\0\0\0\0\0\0\0\0\0");
        let _ = read_npz(&eocd, 1 << 20);
    }
}

#[test]
fn bool_data_reads_any_nonzero_byte_as_true() {
    let mut bytes = header("|b1", false, &[3]);
    bytes.extend_from_slice(&[0, 2, 255]);
    assert_eq!(decode_npy(&bytes).unwrap().data, NpyData::Bool(vec![false, true, true]));
}
