//! The IDX format of MNIST and Fashion-MNIST: a big-endian header (`0 0 type ndim`, then `ndim`
//! 32-bit sizes) followed by the data. Only unsigned bytes (type 0x08) are used by these data sets.

use std::path::Path;

use crate::DataError;

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// The sizes of each dimension, e.g. `[60000, 28, 28]`.
    pub dims: Vec<usize>,
    /// The data, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes with `ndim` dimensions.
pub fn read_idx(path: &Path, ndim: usize) -> Result<IdxArray, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    decode_idx(&bytes, ndim).map_err(|message| DataError::Format { path: path.to_path_buf(), message })
}

/// Encodes unsigned bytes with dimensions `dims` as IDX (the inverse of [`decode_idx`]), e.g. to write
/// a small data set in MNIST's layout. `data` is expected to hold the product of `dims` bytes.
pub fn encode_idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

/// Decodes IDX bytes; the error says what was wrong and at which byte offset.
pub fn decode_idx(bytes: &[u8], ndim: usize) -> Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!("truncated IDX header: {} bytes, expected at least 4", bytes.len()));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let expected_magic = 0x0800 | ndim as u32;
    if magic != expected_magic {
        return Err(format!(
            "bad IDX magic number 0x{magic:08x} at byte offset 0, expected 0x{expected_magic:08x} \
             (unsigned bytes, {ndim} dimensions)"
        ));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(format!(
            "truncated IDX header: {} bytes, expected {header} for {ndim} dimensions",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let len = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let Some(len) = len else {
        return Err(format!("IDX dimensions {dims:?} overflow"));
    };
    let available = bytes.len() - header;
    if available < len {
        return Err(format!(
            "truncated IDX data: dimensions {dims:?} need {len} bytes after the {header}-byte header, \
             found {available} (file ends at byte offset {})",
            bytes.len()
        ));
    }
    if available > len {
        return Err(format!(
            "IDX file has {} unexpected trailing bytes after byte offset {}",
            available - len,
            header + len
        ));
    }
    Ok(IdxArray { dims, data: bytes[header..].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let bytes = encode_idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let a = decode_idx(&bytes, 2).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn errors_say_what_and_where() {
        let bytes = encode_idx(&[2, 3], &[1, 2, 3, 4, 5]);
        let e = decode_idx(&bytes, 2).unwrap_err();
        assert!(e.contains("truncated") && e.contains("need 6 bytes") && e.contains("found 5"), "{e}");
        let e = decode_idx(&encode_idx(&[2], &[1, 2]), 3).unwrap_err();
        assert!(e.contains("magic number 0x00000801") && e.contains("0x00000803"), "{e}");
        let e = decode_idx(&encode_idx(&[1], &[1, 2]), 1).unwrap_err();
        assert!(e.contains("trailing") && e.contains("offset 9"), "{e}");
        let e = decode_idx(&[0, 0], 1).unwrap_err();
        assert!(e.contains("truncated IDX header"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x-idx1-ubyte");
        std::fs::write(&p, [0u8, 0, 8, 1, 0, 0, 0, 9]).unwrap();
        let e = read_idx(&p, 1).unwrap_err().to_string();
        assert!(e.contains("x-idx1-ubyte") && e.contains("truncated"), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), ndim in 1usize..4) {
            let _ = decode_idx(&bytes, ndim);
        }

        #[test]
        fn valid_headers_with_arbitrary_tails(d0 in 0u32..5, d1 in 0u32..5, tail in proptest::collection::vec(any::<u8>(), 0..40)) {
            let bytes = encode_idx(&[d0, d1], &tail);
            match decode_idx(&bytes, 2) {
                Ok(a) => prop_assert_eq!(a.data.len(), (d0 * d1) as usize),
                Err(e) => prop_assert!(e.contains("IDX")),
            }
        }
    }
}
