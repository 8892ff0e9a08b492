//! NumPy `.npy` (format 1.0) reading and writing of float32 matrices, so features load in Python with `np.load`.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2};

/// Errors reading or writing a `.npy` file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("{}: cannot access file: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The bytes are not a little-endian float32 2-D C-order `.npy` array.
    #[error("{}: not a float32 2-D .npy array: {problem}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Encodes a float32 matrix as `.npy` bytes (C order, little endian, header padded to 64 bytes).
pub fn encode_f32(a: ArrayView2<'_, f32>) -> Vec<u8> {
    let (r, c) = a.dim();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({r}, {c}), }}");
    // magic(6) + version(2) + len(2) + header + '\n' must be a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + r * c * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in a.iter() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes a float32 matrix to `path` as `.npy`, atomically (no partial file on failure).
pub fn write_f32(path: &Path, a: ArrayView2<'_, f32>) -> Result<(), NpyError> {
    crate::audio::write_atomically(path, &encode_f32(a)).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a little-endian float32 2-D C-order `.npy` file.
pub fn read_f32(path: &Path) -> Result<Array2<f32>, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_f32(&bytes, path)
}

/// Decodes `.npy` bytes (named `path` in errors) holding a float32 2-D C-order array.
pub fn decode_f32(bytes: &[u8], path: &Path) -> Result<Array2<f32>, NpyError> {
    let bad = |problem: &str| NpyError::Format {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("missing the NUMPY magic"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unknown format version")),
    };
    let header = bytes
        .get(start..start + hlen)
        .ok_or_else(|| bad("header runs past the end"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    if !header.contains("'descr': '<f4'") {
        return Err(bad("dtype is not '<f4'"));
    }
    if !header.contains("'fortran_order': False") {
        return Err(bad("array is in Fortran order"));
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("shape is not integers")))
        .collect::<Result<_, _>>()?;
    let [r, c] = dims[..] else {
        return Err(bad("array is not 2-D"));
    };
    let data = &bytes[start + hlen..];
    if data.len() != r * c * 4 {
        return Err(bad("data length does not match the shape"));
    }
    let v: Vec<f32> = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Array2::from_shape_vec((r, c), v).map_err(|_| bad("shape mismatch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_matrix_decodes_to_the_same_values_and_shape() {
        let a = Array2::from_shape_fn((3, 5), |(i, j)| i as f32 * 10.0 - j as f32 / 3.0);
        let bytes = encode_f32(a.view());
        assert_eq!(
            (bytes.len() - a.len() * 4) % 64,
            0,
            "header is padded to 64 bytes"
        );
        assert_eq!(decode_f32(&bytes, Path::new("a.npy")).unwrap(), a);
    }

    #[test]
    fn a_wrong_length_or_dtype_is_rejected() {
        let a = Array2::<f32>::zeros((2, 2));
        let mut bytes = encode_f32(a.view());
        bytes.pop();
        assert!(decode_f32(&bytes, Path::new("a.npy")).is_err());
        let mut bytes = encode_f32(a.view());
        let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
        bytes[at + 2] = b'8';
        let err = decode_f32(&bytes, Path::new("a.npy")).unwrap_err();
        assert!(err.to_string().contains("dtype"), "{err}");
    }
}
