//! NumPy's `.npy` format (versions 1.0, 2.0 and 3.0) read from untrusted bytes, and written.
//!
//! [`decode_npy`] parses the header itself, computes the element count and byte length with checked
//! arithmetic, and requires the data to be exactly as long as the header says before it allocates
//! anything, so the array it returns is never larger than the file. Little-endian bool, int8 to
//! int64, uint8 to uint64, float32 and float64 are read; Fortran-order arrays are transposed to C
//! order. Big-endian, object, structured and other dtypes are errors that say so. `.npz` archives
//! are read through the same parser ([`read_npz`]).
//!
//! ```
//! use vrl_data::npy::{decode_npy, encode_npy_f32};
//!
//! let bytes = encode_npy_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
//! let a = decode_npy(&bytes).unwrap();
//! assert_eq!(a.shape, vec![2, 3]);
//! assert_eq!(a.to_f32().unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
//! let e = decode_npy(&bytes[..bytes.len() - 1]).unwrap_err().to_string();
//! assert!(e.contains("truncated") && e.contains("needs 24 bytes") && e.contains("has 23"), "{e}");
//! ```

mod data;
mod error;
mod header;
mod npz;

use std::path::Path;

use data::Dtype;
pub use data::NpyData;
pub use error::NpyError;
pub use npz::{read_npz, read_npz_file};

use crate::DataError;

/// The bytes every `.npy` file starts with.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// A `.npy` array: its shape and its elements in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The size of each dimension (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements, as many as the product of `shape`.
    pub data: NpyData,
}

/// Reads a `.npy` file; errors name the file.
pub fn read_npy_file(path: &Path) -> Result<NpyArray, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    decode_npy(&bytes).map_err(|e| DataError::Format { path: path.to_path_buf(), message: e.to_string() })
}

/// Decodes a whole `.npy` file's bytes. The data must be exactly as long as the header declares.
pub fn decode_npy(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    let (header, offset) = split_header(bytes)?;
    let header = header::parse(header)?;
    let too_large = || NpyError::TooLarge { shape: header.shape.clone(), descr: header.dtype.descr() };
    // The product of the non-zero dimensions must be an addressable count, as numpy's own limit.
    let nonzero = header.shape.iter().filter(|&&d| d != 0).try_fold(1usize, |n, &d| n.checked_mul(d));
    let count = match nonzero {
        Some(n) if n <= isize::MAX as usize => {
            if header.shape.contains(&0) {
                0
            } else {
                n
            }
        }
        _ => return Err(too_large()),
    };
    let expected = count.checked_mul(header.dtype.size()).ok_or_else(too_large)?;
    let found = bytes.len() - offset;
    if found < expected {
        return Err(NpyError::Truncated {
            shape: header.shape,
            descr: header.dtype.descr(),
            offset,
            expected,
            found,
        });
    }
    if found > expected {
        return Err(NpyError::ExtraBytes { expected, extra: found - expected });
    }
    let data = NpyData::from_le_bytes(header.dtype, &bytes[offset..]);
    let data = if header.fortran_order { data.fortran_to_c(&header.shape) } else { data };
    Ok(NpyArray { shape: header.shape, data })
}

/// The header text and the offset where the data starts, after checking the magic string, the
/// version and that the file holds the whole header.
fn split_header(bytes: &[u8]) -> Result<(&[u8], usize), NpyError> {
    let truncated = |needed: u64| NpyError::HeaderTruncated { needed, found: bytes.len() };
    if !bytes.starts_with(&MAGIC[..bytes.len().min(6)]) {
        return Err(NpyError::NotNpy);
    }
    let [_, _, _, _, _, _, major, minor, rest @ ..] = bytes else {
        return Err(truncated(10));
    };
    let (prefix, len) = match (major, minor, rest) {
        (1, 0, [a, b, ..]) => (10, u64::from(u16::from_le_bytes([*a, *b]))),
        (2 | 3, 0, [a, b, c, d, ..]) => (12, u64::from(u32::from_le_bytes([*a, *b, *c, *d]))),
        (1, 0, _) => return Err(truncated(10)),
        (2 | 3, 0, _) => return Err(truncated(12)),
        _ => return Err(NpyError::Version(*major, *minor)),
    };
    let end = prefix + len;
    match usize::try_from(end) {
        Ok(end) if end <= bytes.len() => Ok((&bytes[prefix as usize..end], end)),
        _ => Err(truncated(end)),
    }
}

/// Encodes an array as a version 1.0 `.npy` file in C order, with its header padded as numpy pads it.
/// The inverse of [`decode_npy`].
///
/// # Panics
///
/// If `array.data` does not hold the product of `array.shape` elements.
pub fn encode_npy(array: &NpyArray) -> Vec<u8> {
    let count: usize = array.shape.iter().product();
    assert_eq!(count, array.data.len(), "shape {:?} does not match the number of elements", array.shape);
    let mut out = header::write(array.descr(), &array.shape);
    out.extend_from_slice(&array.data.to_le_bytes());
    out
}

/// Encodes float32 data of `shape` as a version 1.0 `.npy` file (`<f4`, C order).
///
/// # Panics
///
/// If `data` does not hold the product of `shape` elements.
pub fn encode_npy_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    encode_npy(&NpyArray { shape: shape.to_vec(), data: NpyData::F32(data.to_vec()) })
}
