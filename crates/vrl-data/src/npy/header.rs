//! The `.npy` header: a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`, parsed without recursion (only
//! strings, booleans and tuples of integers are accepted), and written as numpy writes it.

use super::{Dtype, NpyError};

/// Most dimensions a header may declare (numpy's `NPY_MAXDIMS`).
pub(super) const MAX_DIMS: usize = 64;

/// What a header declares.
#[derive(Debug)]
pub(super) struct Header {
    /// The element type.
    pub dtype: Dtype,
    /// The data is in Fortran (column-major) order.
    pub fortran_order: bool,
    /// The array's shape.
    pub shape: Vec<usize>,
}

/// A value in the header dict.
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Parses the header text (after the length field, padding included).
pub(super) fn parse(text: &[u8]) -> Result<Header, NpyError> {
    let mut p = Parser { text, pos: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    while p.peek() != Some(b'}') {
        let key = p.string()?;
        if !["descr", "fortran_order", "shape"].contains(&key.as_str()) {
            return Err(bad(format!("has an unexpected key '{key}'")));
        }
        p.expect(b':')?;
        let slot = match (key.as_str(), p.value()?) {
            ("descr", Value::Str(s)) => descr.replace(s).is_some(),
            ("fortran_order", Value::Bool(b)) => fortran.replace(b).is_some(),
            ("shape", Value::Tuple(t)) => shape.replace(t).is_some(),
            _ => return Err(bad(format!("has a '{key}' of the wrong type"))),
        };
        if slot {
            return Err(bad(format!("has the key '{key}' twice")));
        }
        if p.peek() == Some(b',') {
            p.pos += 1;
        } else if p.peek() != Some(b'}') {
            return Err(p.unexpected());
        }
    }
    p.pos += 1;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.unexpected());
    }
    let missing = |k: &str| bad(format!("has no '{k}' key"));
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let shape = shape.ok_or_else(|| missing("shape"))?;
    if shape.len() > MAX_DIMS {
        return Err(bad(format!("declares {} dimensions; at most {MAX_DIMS} are supported", shape.len())));
    }
    Ok(Header {
        dtype: Dtype::from_descr(&descr)?,
        fortran_order: fortran.ok_or_else(|| missing("fortran_order"))?,
        shape,
    })
}

/// Writes a version 1.0 `.npy` prefix and header (magic string to the final newline) for a C-order
/// array, padded with spaces so that the data starts at a multiple of 64 bytes, as numpy does.
pub(super) fn write(descr: &str, shape: &[usize]) -> Vec<u8> {
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}", tuple(shape));
    // 10 bytes of magic string, version and length, then the dict, padding and a newline.
    let padding = (64 - (10 + dict.len() + 1) % 64) % 64;
    dict.extend(std::iter::repeat_n(' ', padding));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    // The header of at most 64 dimensions is far below 65535 bytes, version 1.0's limit.
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// A shape as Python writes a tuple: `()`, `(3,)`, `(2, 3)`.
pub(super) fn tuple(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

fn bad(why: String) -> NpyError {
    NpyError::Header(why)
}

/// A cursor over the header text.
struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    /// The next byte that is not white space, without consuming it.
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.text.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.text.get(self.pos).is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn unexpected(&mut self) -> NpyError {
        match self.peek() {
            Some(b) => bad(format!(
                "is not a Python dict literal: unexpected {:?} at byte {} of the header",
                char::from(b),
                self.pos
            )),
            None => bad("is not a Python dict literal: it ends early".to_string()),
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), NpyError> {
        if self.peek() != Some(byte) {
            return Err(self.unexpected());
        }
        self.pos += 1;
        Ok(())
    }

    fn value(&mut self) -> Result<Value, NpyError> {
        match self.peek() {
            Some(b'\'' | b'"') => self.string().map(Value::Str),
            Some(b'(') => self.tuple().map(Value::Tuple),
            Some(b'[') => Err(NpyError::Dtype("a structured dtype (a list of fields)".to_string())),
            _ if self.keyword(b"True") => Ok(Value::Bool(true)),
            _ if self.keyword(b"False") => Ok(Value::Bool(false)),
            _ => Err(self.unexpected()),
        }
    }

    fn keyword(&mut self, word: &[u8]) -> bool {
        let found = self.text[self.pos..].starts_with(word);
        if found {
            self.pos += word.len();
        }
        found
    }

    /// A quoted string without escapes.
    fn string(&mut self) -> Result<String, NpyError> {
        let Some(quote @ (b'\'' | b'"')) = self.peek() else {
            return Err(self.unexpected());
        };
        let start = self.pos + 1;
        let Some(len) = self.text[start..].iter().position(|&b| b == quote) else {
            return Err(bad("has a string without its closing quote".to_string()));
        };
        self.pos = start + len + 1;
        Ok(String::from_utf8_lossy(&self.text[start..start + len]).into_owned())
    }

    /// `(d0, d1, …)` of non-negative integers, a trailing comma allowed.
    fn tuple(&mut self) -> Result<Vec<usize>, NpyError> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        while self.peek() != Some(b')') {
            if dims.len() > MAX_DIMS {
                return Err(bad(format!("declares more than {MAX_DIMS} dimensions")));
            }
            dims.push(self.integer()?);
            if self.peek() == Some(b',') {
                self.pos += 1;
            } else if self.peek() != Some(b')') {
                return Err(self.unexpected());
            }
        }
        self.pos += 1;
        Ok(dims)
    }

    /// A decimal integer that fits in `usize` (Python 2's `L` suffix allowed).
    fn integer(&mut self) -> Result<usize, NpyError> {
        let start = self.pos;
        let mut n = 0usize;
        while let Some(d) = self.text.get(self.pos).filter(|b| b.is_ascii_digit()) {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(usize::from(d - b'0')))
                .ok_or_else(|| bad("has a dimension too large for this computer".to_string()))?;
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.unexpected());
        }
        if matches!(self.text.get(self.pos), Some(b'L' | b'l')) {
            self.pos += 1;
        }
        Ok(n)
    }
}
