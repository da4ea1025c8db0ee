//! `.npz` archives: zip files of `.npy` entries, stored or deflated, as `numpy.savez` and
//! `numpy.savez_compressed` write them, each entry read through [`decode_npy`].

use std::io::{Cursor, Read};
use std::path::Path;

use super::{NpyArray, NpyError, decode_npy};
use crate::DataError;

/// Reads the arrays of an `.npz` archive's bytes, in archive order, each named as numpy names it (the
/// entry's name without `.npy`). `max_bytes` bounds the uncompressed bytes of all entries together:
/// each entry's declared size is checked against it before the entry is read, and no entry is read
/// past its declared size, so a zip bomb is an error, not an allocation.
pub fn read_npz(bytes: &[u8], max_bytes: u64) -> Result<Vec<(String, NpyArray)>, NpyError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(zip_error)?;
    let mut total = 0u64;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zip_error)?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().map_err(zip_error)?.into_owned();
        let size = entry.size();
        total = total.saturating_add(size);
        if total > max_bytes {
            return Err(NpyError::NpzTooLarge { name, total, limit: max_bytes });
        }
        let mut npy = Vec::new();
        (&mut entry)
            .take(size.saturating_add(1))
            .read_to_end(&mut npy)
            .map_err(|e| NpyError::Zip(format!("cannot read entry '{name}': {e}")))?;
        if npy.len() as u64 != size {
            return Err(NpyError::Zip(format!(
                "entry '{name}' does not have the {size} bytes its zip header declares"
            )));
        }
        let array =
            decode_npy(&npy).map_err(|e| NpyError::NpzEntry { name: name.clone(), source: e.into() })?;
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        out.push((key, array));
    }
    Ok(out)
}

/// Reads an `.npz` file (see [`read_npz`]); errors name the file.
pub fn read_npz_file(path: &Path, max_bytes: u64) -> Result<Vec<(String, NpyArray)>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    read_npz(&bytes, max_bytes)
        .map_err(|e| DataError::Format { path: path.to_path_buf(), message: e.to_string() })
}

fn zip_error(e: zip::result::ZipError) -> NpyError {
    NpyError::Zip(e.to_string())
}
