//! The errors of the `.npy` and `.npz` readers, each message one sentence.

use super::header;

/// Why bytes are not a `.npy` array (or `.npz` archive) this reader accepts, or why an array does
/// not convert. Each message is one sentence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NpyError {
    /// The magic string is missing.
    #[error("not a valid .npy file: it does not start with the bytes \\x93NUMPY")]
    NotNpy,
    /// A format version other than 1.0, 2.0 and 3.0.
    #[error(
        "not a supported .npy file: it has format version {0}.{1}, and versions 1.0, 2.0 and 3.0 are read"
    )]
    Version(u8, u8),
    /// The file ends before the header does.
    #[error(
        "truncated .npy file: it ends inside its header (the header needs {needed} bytes, the file has {found})"
    )]
    HeaderTruncated {
        /// Bytes up to the end of the header.
        needed: u64,
        /// Bytes in the file.
        found: usize,
    },
    /// The header is not the dict numpy writes.
    #[error("not a valid .npy file: its header {0}")]
    Header(String),
    /// A big-endian dtype.
    #[error(
        "the .npy dtype '{0}' is big-endian, and only little-endian data is read \
         (convert it with a.astype(a.dtype.newbyteorder('<')))"
    )]
    BigEndian(String),
    /// A dtype this reader does not support.
    #[error(
        "the .npy dtype '{0}' is not supported; expected bool, int8 to int64, uint8 to uint64, float32 or \
         float64, little-endian"
    )]
    Dtype(String),
    /// The shape's element count or byte length does not fit in memory's address range.
    #[error("the .npy header declares shape {} of '{descr}', more elements than this computer can address", header::tuple(.shape))]
    TooLarge {
        /// The declared shape.
        shape: Vec<usize>,
        /// The declared dtype.
        descr: &'static str,
    },
    /// Less data than the header declares.
    #[error(
        "truncated .npy file: its header says shape {} of '{descr}', which needs {expected} bytes of data \
         after the {offset}-byte header, but the file has {found}",
        header::tuple(.shape)
    )]
    Truncated {
        /// The declared shape.
        shape: Vec<usize>,
        /// The declared dtype.
        descr: &'static str,
        /// Where the data starts.
        offset: usize,
        /// Bytes of data the header declares.
        expected: usize,
        /// Bytes of data present.
        found: usize,
    },
    /// More data than the header declares.
    #[error("the .npy file has {extra} bytes after the {expected} bytes of data its header describes")]
    ExtraBytes {
        /// Bytes of data the header declares.
        expected: usize,
        /// Bytes after them.
        extra: usize,
    },
    /// A conversion that this dtype does not allow.
    #[error("the array's dtype is '{found}'; expected {expected}")]
    WrongDtype {
        /// The array's dtype.
        found: &'static str,
        /// What the conversion takes.
        expected: &'static str,
    },
    /// A value that the conversion's type cannot hold.
    #[error("element {index} of the array is {value}, which does not fit in {target}")]
    OutOfRange {
        /// Index of the element in C order.
        index: usize,
        /// The value.
        value: u64,
        /// The conversion's type.
        target: &'static str,
    },
    /// The `.npz` archive is not a zip file this reader accepts.
    #[error("not a valid .npz file: {0}")]
    Zip(String),
    /// The `.npz` archive's entries declare more bytes than allowed.
    #[error(
        "the .npz entry '{name}' would bring its arrays to {total} bytes uncompressed, more than the {limit} \
         allowed"
    )]
    NpzTooLarge {
        /// The entry.
        name: String,
        /// Uncompressed bytes up to and including this entry, as declared.
        total: u64,
        /// The limit.
        limit: u64,
    },
    /// An `.npz` entry that is not a valid `.npy` array.
    #[error("the .npz entry '{name}': {source}")]
    NpzEntry {
        /// The entry.
        name: String,
        /// What is wrong with it.
        source: Box<NpyError>,
    },
}
