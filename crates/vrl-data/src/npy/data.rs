//! Element types: the dtypes read, their bytes, Fortran to C order, and conversions of arrays.

use super::{NpyArray, NpyError};

/// The elements of a `.npy` array, by dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `|b1` (any non-zero byte is `true`).
    Bool(Vec<bool>),
    /// `|i1`.
    I8(Vec<i8>),
    /// `<i2`.
    I16(Vec<i16>),
    /// `<i4`.
    I32(Vec<i32>),
    /// `<i8`.
    I64(Vec<i64>),
    /// `|u1`.
    U8(Vec<u8>),
    /// `<u2`.
    U16(Vec<u16>),
    /// `<u4`.
    U32(Vec<u32>),
    /// `<u8`.
    U64(Vec<u64>),
    /// `<f4`.
    F32(Vec<f32>),
    /// `<f8`.
    F64(Vec<f64>),
}

/// Element types, with their size and canonical `descr`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Dtype {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
}

impl Dtype {
    const ALL: [Dtype; 11] = [
        Dtype::Bool,
        Dtype::I8,
        Dtype::I16,
        Dtype::I32,
        Dtype::I64,
        Dtype::U8,
        Dtype::U16,
        Dtype::U32,
        Dtype::U64,
        Dtype::F32,
        Dtype::F64,
    ];

    /// The `descr` numpy writes for this type.
    pub(super) fn descr(self) -> &'static str {
        match self {
            Dtype::Bool => "|b1",
            Dtype::I8 => "|i1",
            Dtype::I16 => "<i2",
            Dtype::I32 => "<i4",
            Dtype::I64 => "<i8",
            Dtype::U8 => "|u1",
            Dtype::U16 => "<u2",
            Dtype::U32 => "<u4",
            Dtype::U64 => "<u8",
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
        }
    }

    pub(super) fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::I8 | Dtype::U8 => 1,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }

    /// The type of a header's `descr`: `<` (or `|` for one byte) and a type code with its size.
    pub(super) fn from_descr(descr: &str) -> Result<Dtype, NpyError> {
        let (order, code) = descr.split_at_checked(1).unwrap_or(("", descr));
        let Some(dtype) = Dtype::ALL.into_iter().find(|d| &d.descr()[1..] == code) else {
            return Err(NpyError::Dtype(descr.to_string()));
        };
        match (order, dtype.size()) {
            ("<", _) | ("|" | ">", 1) => Ok(dtype),
            (">", _) => Err(NpyError::BigEndian(descr.to_string())),
            _ => Err(NpyError::Dtype(descr.to_string())),
        }
    }
}

/// Applies `$f` to the vector inside an [`NpyData`], giving an `NpyData` of the same variant.
macro_rules! map_data {
    ($data:expr, $v:ident => $f:expr) => {
        match $data {
            NpyData::Bool($v) => NpyData::Bool($f),
            NpyData::I8($v) => NpyData::I8($f),
            NpyData::I16($v) => NpyData::I16($f),
            NpyData::I32($v) => NpyData::I32($f),
            NpyData::I64($v) => NpyData::I64($f),
            NpyData::U8($v) => NpyData::U8($f),
            NpyData::U16($v) => NpyData::U16($f),
            NpyData::U32($v) => NpyData::U32($f),
            NpyData::U64($v) => NpyData::U64($f),
            NpyData::F32($v) => NpyData::F32($f),
            NpyData::F64($v) => NpyData::F64($f),
        }
    };
}

/// Little-endian elements of type `$t` from bytes whose length is a multiple of its size.
macro_rules! le {
    ($bytes:expr, $t:ty) => {
        $bytes
            .chunks_exact(size_of::<$t>())
            .map(|c| {
                let mut a = [0u8; size_of::<$t>()];
                a.copy_from_slice(c);
                <$t>::from_le_bytes(a)
            })
            .collect()
    };
}

impl NpyData {
    fn dtype(&self) -> Dtype {
        match self {
            NpyData::Bool(_) => Dtype::Bool,
            NpyData::I8(_) => Dtype::I8,
            NpyData::I16(_) => Dtype::I16,
            NpyData::I32(_) => Dtype::I32,
            NpyData::I64(_) => Dtype::I64,
            NpyData::U8(_) => Dtype::U8,
            NpyData::U16(_) => Dtype::U16,
            NpyData::U32(_) => Dtype::U32,
            NpyData::U64(_) => Dtype::U64,
            NpyData::F32(_) => Dtype::F32,
            NpyData::F64(_) => Dtype::F64,
        }
    }

    /// The dtype as numpy's `descr`, e.g. `<f4` or `|u1`.
    pub fn descr(&self) -> &'static str {
        self.dtype().descr()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            NpyData::Bool(v) => v.len(),
            NpyData::I8(v) => v.len(),
            NpyData::U8(v) => v.len(),
            NpyData::I16(v) => v.len(),
            NpyData::U16(v) => v.len(),
            NpyData::I32(v) => v.len(),
            NpyData::U32(v) => v.len(),
            NpyData::F32(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::U64(v) => v.len(),
            NpyData::F64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements, stored in Fortran order for `shape`, put in C order.
    pub(super) fn fortran_to_c(self, shape: &[usize]) -> NpyData {
        map_data!(self, v => fortran_to_c(shape, &v))
    }

    /// Elements of `dtype` from little-endian bytes (a multiple of its size).
    pub(super) fn from_le_bytes(dtype: Dtype, bytes: &[u8]) -> NpyData {
        match dtype {
            Dtype::Bool => NpyData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            Dtype::I8 => NpyData::I8(bytes.iter().map(|&b| b as i8).collect()),
            Dtype::U8 => NpyData::U8(bytes.to_vec()),
            Dtype::I16 => NpyData::I16(le!(bytes, i16)),
            Dtype::U16 => NpyData::U16(le!(bytes, u16)),
            Dtype::I32 => NpyData::I32(le!(bytes, i32)),
            Dtype::U32 => NpyData::U32(le!(bytes, u32)),
            Dtype::F32 => NpyData::F32(le!(bytes, f32)),
            Dtype::I64 => NpyData::I64(le!(bytes, i64)),
            Dtype::U64 => NpyData::U64(le!(bytes, u64)),
            Dtype::F64 => NpyData::F64(le!(bytes, f64)),
        }
    }

    /// The elements as little-endian bytes.
    pub(super) fn to_le_bytes(&self) -> Vec<u8> {
        fn bytes<T: Copy, const N: usize>(v: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
            v.iter().flat_map(|&x| f(x)).collect()
        }
        match self {
            NpyData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
            NpyData::I8(v) => bytes(v, i8::to_le_bytes),
            NpyData::U8(v) => v.clone(),
            NpyData::I16(v) => bytes(v, i16::to_le_bytes),
            NpyData::U16(v) => bytes(v, u16::to_le_bytes),
            NpyData::I32(v) => bytes(v, i32::to_le_bytes),
            NpyData::U32(v) => bytes(v, u32::to_le_bytes),
            NpyData::F32(v) => bytes(v, f32::to_le_bytes),
            NpyData::I64(v) => bytes(v, i64::to_le_bytes),
            NpyData::U64(v) => bytes(v, u64::to_le_bytes),
            NpyData::F64(v) => bytes(v, f64::to_le_bytes),
        }
    }
}

impl NpyArray {
    /// The dtype as numpy's `descr`, e.g. `<f4` or `|u1`.
    pub fn descr(&self) -> &'static str {
        self.data.descr()
    }

    /// The elements as `f32`: only float32 arrays convert.
    pub fn to_f32(&self) -> Result<Vec<f32>, NpyError> {
        match &self.data {
            NpyData::F32(v) => Ok(v.clone()),
            d => Err(NpyError::WrongDtype { found: d.descr(), expected: "float32 ('<f4')" }),
        }
    }

    /// The elements as `f64`, exactly: float32 and float64 arrays convert.
    pub fn to_f64(&self) -> Result<Vec<f64>, NpyError> {
        match &self.data {
            NpyData::F32(v) => Ok(v.iter().map(|&x| f64::from(x)).collect()),
            NpyData::F64(v) => Ok(v.clone()),
            d => Err(NpyError::WrongDtype { found: d.descr(), expected: "float32 or float64" }),
        }
    }

    /// The elements as `i64`: every integer dtype converts (int8 to int64, uint8 to uint64); a
    /// uint64 value of 2^63 or more is an [`NpyError::OutOfRange`].
    pub fn to_i64(&self) -> Result<Vec<i64>, NpyError> {
        fn widen<T: Copy + Into<i64>>(v: &[T]) -> Vec<i64> {
            v.iter().map(|&x| x.into()).collect()
        }
        Ok(match &self.data {
            NpyData::I8(v) => widen(v),
            NpyData::I16(v) => widen(v),
            NpyData::I32(v) => widen(v),
            NpyData::I64(v) => v.clone(),
            NpyData::U8(v) => widen(v),
            NpyData::U16(v) => widen(v),
            NpyData::U32(v) => widen(v),
            NpyData::U64(v) => v
                .iter()
                .enumerate()
                .map(|(index, &value)| {
                    i64::try_from(value).map_err(|_| NpyError::OutOfRange { index, value, target: "int64" })
                })
                .collect::<Result<_, _>>()?,
            d => {
                return Err(NpyError::WrongDtype {
                    found: d.descr(),
                    expected: "an integer dtype (int8 to int64, uint8 to uint64)",
                });
            }
        })
    }
}

/// Elements stored in Fortran order (first index fastest) put in C order (last index fastest).
fn fortran_to_c<T: Copy>(shape: &[usize], data: &[T]) -> Vec<T> {
    if shape.iter().filter(|&&d| d > 1).count() <= 1 {
        return data.to_vec();
    }
    // Fortran strides: the first dimension is contiguous.
    let strides: Vec<usize> = shape
        .iter()
        .scan(1usize, |s, &d| {
            let stride = *s;
            *s *= d;
            Some(stride)
        })
        .collect();
    let mut index = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(data.len());
    for _ in 0..data.len() {
        out.push(data[index.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>()]);
        // Advance the C-order multi-index, last dimension fastest.
        for (i, &d) in index.iter_mut().zip(shape).rev() {
            *i += 1;
            if *i < d {
                break;
            }
            *i = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_is_transposed() {
        // a = [[0, 1, 2], [3, 4, 5]] stored column by column.
        let c = fortran_to_c(&[2, 3], &[0, 3, 1, 4, 2, 5]);
        assert_eq!(c, vec![0, 1, 2, 3, 4, 5]);
        // b[i, j, k] = 100 i + 10 j + k with shape (2, 3, 2), first index fastest.
        let shape = [2, 3, 2];
        let mut f = Vec::new();
        for k in 0..2 {
            for j in 0..3 {
                for i in 0..2 {
                    f.push(100 * i + 10 * j + k);
                }
            }
        }
        let expected: Vec<usize> = (0..2)
            .flat_map(|i| (0..3).flat_map(move |j| (0..2).map(move |k| 100 * i + 10 * j + k)))
            .collect();
        assert_eq!(fortran_to_c(&shape, &f), expected);
    }

    #[test]
    fn descr_parsing() {
        assert_eq!(Dtype::from_descr("<f4"), Ok(Dtype::F32));
        assert_eq!(Dtype::from_descr("|u1"), Ok(Dtype::U8));
        assert_eq!(Dtype::from_descr("<b1"), Ok(Dtype::Bool));
        assert!(matches!(Dtype::from_descr(">f8"), Err(NpyError::BigEndian(_))));
        assert!(matches!(Dtype::from_descr("|f4"), Err(NpyError::Dtype(_))));
        for bad in ["|O", "<f2", "<c8", "", "f", "<U3", "é", "<f4 "] {
            assert!(matches!(Dtype::from_descr(bad), Err(NpyError::Dtype(_))), "{bad}");
        }
    }
}
