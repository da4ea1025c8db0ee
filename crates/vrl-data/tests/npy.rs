//! The `.npy` and `.npz` readers on files numpy writes (built here byte by byte) and on broken ones:
//! each dtype round-trips, every header variant numpy has written is read, and each way a file can
//! be wrong is an error that says how.

#![allow(clippy::unwrap_used)] // tests: a failure is a test failure

use std::io::Write;

use vrl_data::npy::{
    NpyArray, NpyData, NpyError, decode_npy, encode_npy, encode_npy_f32, read_npy_file, read_npz,
    read_npz_file,
};
use zip::write::SimpleFileOptions;

/// A `.npy` file of format `version` with header text `dict` (padding and newline added) and `data`.
fn raw(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{dict}\n");
    let prefix = if version == 1 { 10 } else { 12 };
    while (prefix + header.len()) % 64 != 0 {
        header.insert(header.len() - 1, ' ');
    }
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn err(bytes: &[u8]) -> String {
    decode_npy(bytes).unwrap_err().to_string()
}

/// An `.npz` archive of `entries` (name, `.npy` bytes), deflated or stored.
fn npz(entries: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
    let options = SimpleFileOptions::default().compression_method(method);
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(*name, options).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn every_dtype_round_trips() {
    let arrays = [
        NpyData::Bool(vec![true, false, true, true, false, false]),
        NpyData::I8(vec![-128, -1, 0, 1, 2, 127]),
        NpyData::I16(vec![-32768, -1, 0, 1, 2, 32767]),
        NpyData::I32(vec![i32::MIN, -1, 0, 1, 2, i32::MAX]),
        NpyData::I64(vec![i64::MIN, -1, 0, 1, 2, i64::MAX]),
        NpyData::U8(vec![0, 1, 2, 3, 254, 255]),
        NpyData::U16(vec![0, 1, 2, 3, 4, u16::MAX]),
        NpyData::U32(vec![0, 1, 2, 3, 4, u32::MAX]),
        NpyData::U64(vec![0, 1, 2, 3, 4, u64::MAX]),
        NpyData::F32(vec![-1.5, 0.0, 1.0, f32::INFINITY, 1e-30, 3.25]),
        NpyData::F64(vec![-1.5, 0.0, 1.0, f64::NEG_INFINITY, 1e-300, 3.25]),
    ];
    for data in arrays {
        let a = NpyArray { shape: vec![3, 2], data };
        let bytes = encode_npy(&a);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0, "numpy aligns the data to 64 bytes");
        assert_eq!(bytes[10 + header_len - 1], b'\n');
        assert_eq!(decode_npy(&bytes).unwrap(), a, "{}", a.descr());
    }
    // Scalars, empty arrays and one dimension.
    for shape in [vec![], vec![0], vec![4], vec![0, 3]] {
        let n = shape.iter().product();
        let bytes = encode_npy_f32(&shape, &vec![0.5; n]);
        assert_eq!(decode_npy(&bytes).unwrap().shape, shape);
    }
}

#[test]
fn reads_every_header_numpy_writes() {
    let f4: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let expected = vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    for (version, dict) in [
        (1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
        (2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
        (3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
        // Python 2's long integers, other key orders, double quotes, no trailing comma.
        (1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }"),
        (1, "{\"shape\": (2,3), \"fortran_order\": False, \"descr\": \"<f4\"}"),
    ] {
        let a = decode_npy(&raw(version, dict, &f4)).unwrap();
        assert_eq!((a.to_f32().unwrap(), a.shape), (expected.clone(), vec![2, 3]), "{dict}");
    }
    // Fortran order: the same matrix stored column by column.
    let columns: Vec<u8> = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let a = decode_npy(&raw(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", &columns));
    assert_eq!(a.unwrap().to_f32().unwrap(), expected);
    // One-byte types with either order character; `<b1` for bool.
    let a = decode_npy(&raw(1, "{'descr': '<b1', 'fortran_order': False, 'shape': (3,), }", &[0, 1, 7]));
    assert_eq!(a.unwrap().data, NpyData::Bool(vec![false, true, true]));
    let a = decode_npy(&raw(1, "{'descr': '>u1', 'fortran_order': False, 'shape': (2,), }", &[9, 8]));
    assert_eq!(a.unwrap().data, NpyData::U8(vec![9, 8]));
}

#[test]
fn data_length_must_match_the_header() {
    // The 193-byte file of issue 19: a header for (8, 1, 28, 28) float32 and no data.
    let dict =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (8, 1, 28, 28), }}{}", " ".repeat(115));
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&183u16.to_le_bytes());
    bytes.extend_from_slice(format!("{dict}\n").as_bytes());
    assert_eq!(bytes.len(), 193);
    let e = err(&bytes);
    assert!(e.contains("truncated") && e.contains("(8, 1, 28, 28)") && e.contains("'<f4'"), "{e}");
    assert!(e.contains("needs 25088 bytes") && e.contains("193-byte header") && e.contains("has 0"), "{e}");
    // A valid file cut in half, and one with a byte too many.
    let valid = encode_npy_f32(&[4, 8], &[1.0; 32]);
    let e = err(&valid[..valid.len() / 2]);
    assert!(e.contains("truncated") && e.contains("needs 128 bytes") && e.contains("has 0"), "{e}");
    let e = err(&valid[..valid.len() - 64]);
    assert!(e.contains("truncated") && e.contains("has 64"), "{e}");
    let e = err(&[&valid[..], &[0]].concat());
    assert!(e.contains("1 bytes after the 128 bytes of data"), "{e}");
    // Shapes whose size overflows are errors, not allocations; a zero dimension makes any shape empty.
    let huge = "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }";
    assert!(err(&raw(1, huge, &[])).contains("more elements than this computer can address"));
    let huge = "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }";
    assert!(err(&raw(1, huge, &[])).contains("more elements than this computer can address"));
    let big = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }";
    assert!(err(&raw(1, big, &[])).contains("needs 8000000000000 bytes"));
    let empty = "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 1000000, 1000000000000), }";
    assert_eq!(decode_npy(&raw(1, empty, &[])).unwrap().data, NpyData::F64(vec![]));
}

#[test]
fn bad_headers_say_what_is_wrong() {
    let cases: &[(&[u8], &str)] = &[
        (b"codes,as,csv\n1,2,3\n", "not a valid .npy file: it does not start with the bytes \\x93NUMPY"),
        (b"", "ends inside its header (the header needs 10 bytes, the file has 0)"),
        (b"\x93NUMPY\x01\x00\x76", "the header needs 10 bytes, the file has 9"),
        (b"\x93NUMPY\x02\x00\x76\x00", "the header needs 12 bytes"),
        (b"\x93NUMPY\x01\x00\xff\x00{", "the header needs 265 bytes, the file has 11"),
        (b"\x93NUMPY\x02\x00\xff\xff\xff\xff{", "the header needs 4294967307 bytes"),
        (b"\x93NUMPY\x04\x00\x00\x00", "format version 4.0, and versions 1.0, 2.0 and 3.0 are read"),
    ];
    for (bytes, needle) in cases {
        let e = err(bytes);
        assert!(e.contains(needle), "{e}");
    }
    let d = |descr: &str| format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}");
    let headers = [
        (d("'>f8'"), "'>f8' is big-endian"),
        (d("'|O'"), "'|O' is not supported"),
        (d("'<f2'"), "'<f2' is not supported"),
        (d("'<U3'"), "'<U3' is not supported"),
        (d("[('a', '<f4')]"), "structured dtype"),
        (d("True"), "has a 'descr' of the wrong type"),
        ("{'descr': '<f4', 'shape': (1,), }".into(), "has no 'fortran_order' key"),
        ("{'descr': '<f4', 'fortran_order': False}".into(), "has no 'shape' key"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}".into(), "unexpected key 'x'"),
        ("{'descr': '<f4', 'descr': '<f4'}".into(), "has the key 'descr' twice"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }".into(), "unexpected '-' at byte"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } x".into(), "unexpected 'x' at byte"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}".into(), "too large"),
        (format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}) }}", "1,".repeat(65)), "64"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), ".into(), "it ends early"),
        ("{'descr': '<f4}".into(), "without its closing quote"),
    ];
    for (dict, needle) in headers {
        let e = err(&raw(1, &dict, &[0; 4]));
        assert!(e.contains(needle), "{dict}: {e}");
    }
}

#[test]
fn conversions_name_the_dtypes_they_take() {
    let a = |data| NpyArray { shape: vec![2], data };
    assert_eq!(a(NpyData::F32(vec![0.5, 2.0])).to_f64().unwrap(), vec![0.5, 2.0]);
    assert_eq!(a(NpyData::U16(vec![7, 65535])).to_i64().unwrap(), vec![7, 65535]);
    assert_eq!(a(NpyData::U64(vec![7, 1 << 62])).to_i64().unwrap(), vec![7, 1 << 62]);
    let e = a(NpyData::F64(vec![0.5, 2.0])).to_f32().unwrap_err().to_string();
    assert_eq!(e, "the array's dtype is '<f8'; expected float32 ('<f4')");
    let e = a(NpyData::I32(vec![1, 2])).to_f64().unwrap_err().to_string();
    assert_eq!(e, "the array's dtype is '<i4'; expected float32 or float64");
    let e = a(NpyData::F32(vec![1.0, 2.0])).to_i64().unwrap_err().to_string();
    assert!(e.contains("'<f4'") && e.contains("integer dtype"), "{e}");
    let e = a(NpyData::U64(vec![1, u64::MAX])).to_i64().unwrap_err();
    assert_eq!(e, NpyError::OutOfRange { index: 1, value: u64::MAX, target: "int64" });
}

#[test]
fn files_are_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    std::fs::write(&path, &encode_npy_f32(&[3], &[1.0, 2.0, 3.0])[..70]).unwrap();
    let e = read_npy_file(&path).unwrap_err().to_string();
    assert!(e.contains("x.npy") && e.contains("truncated"), "{e}");
    let e = read_npy_file(&dir.path().join("absent.npy")).unwrap_err().to_string();
    assert!(e.contains("absent.npy"), "{e}");
    let e = read_npz_file(&path, 1 << 20).unwrap_err().to_string();
    assert!(e.contains("x.npy") && e.contains("not a valid .npz file"), "{e}");
}

#[test]
fn npz_entries_are_read_through_the_npy_reader() {
    let x = encode_npy_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let y = encode_npy(&NpyArray { shape: vec![3], data: NpyData::I64(vec![5, 6, 7]) });
    for deflate in [false, true] {
        let bytes = npz(&[("x.npy", x.clone()), ("y.npy", y.clone())], deflate);
        let arrays = read_npz(&bytes, 1 << 20).unwrap();
        assert_eq!(arrays.len(), 2);
        assert_eq!(arrays[0].0, "x");
        assert_eq!(arrays[0].1.to_f32().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!((arrays[1].0.as_str(), arrays[1].1.to_i64().unwrap()), ("y", vec![5, 6, 7]));
        // The limit counts the declared uncompressed bytes of all entries.
        let limit = (x.len() + y.len() - 1) as u64;
        let e = read_npz(&bytes, limit).unwrap_err().to_string();
        assert!(e.contains("'y.npy'") && e.contains(&format!("more than the {limit} allowed")), "{e}");
    }
    // A deflated zip bomb: 64 MiB of zeros in a few kilobytes, refused before it is inflated.
    let bomb = npz(&[("bomb.npy", vec![0; 64 << 20])], true);
    assert!(bomb.len() < 1 << 20);
    let e = read_npz(&bomb, 1 << 20).unwrap_err().to_string();
    assert!(e.contains("'bomb.npy'") && e.contains("67108864 bytes"), "{e}");
    // A truncated entry is named.
    let bytes = npz(&[("x.npy", x[..x.len() - 4].to_vec())], true);
    let e = read_npz(&bytes, 1 << 20).unwrap_err().to_string();
    assert!(e.contains("entry 'x.npy'") && e.contains("truncated"), "{e}");
}
