//! Reader and writer for the IDX format used by MNIST and Fashion-MNIST.
//!
//! An IDX file is a big-endian header followed by the raw array:
//! two zero bytes, a type code (`0x08` for unsigned bytes, the only type these datasets use),
//! the rank, then one `u32` per dimension, then `product(dims)` elements. Files may be gzipped;
//! [`read_maybe_gz`] decides by the gzip magic bytes, not by the file name.

use std::io::{Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::error::{DataError, Result};

/// The two bytes that start every gzip stream.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The IDX type code for unsigned bytes.
const TYPE_U8: u8 = 0x08;

/// A decoded IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first (for images: `[count, rows, cols]`).
    pub dims: Vec<usize>,
    /// The elements in row-major order; `data.len() == dims.iter().product()`.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// Fails with a message naming `name` unless the array has rank `expected`.
    pub fn check_rank(&self, expected: usize, name: &str) -> Result<()> {
        if self.rank() == expected {
            Ok(())
        } else {
            Err(DataError::format(
                name,
                format!(
                    "wrong IDX rank: expected rank {expected}, found rank {} (dims {:?})",
                    self.rank(),
                    self.dims
                ),
            ))
        }
    }
}

/// Reads a file, decompressing it when it is gzip data.
///
/// A file whose name ends in `.gz` must be gzip data; any other file is returned as is unless
/// it starts with the gzip magic bytes. Corrupt or truncated gzip data is an error naming the file.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "read", e))?;
    let named_gz = path.extension().is_some_and(|e| e == "gz");
    if bytes.starts_with(&GZIP_MAGIC) {
        gunzip(&bytes, path)
    } else if named_gz {
        Err(DataError::Gzip {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the name ends in .gz but the content does not start with the gzip magic bytes 1f 8b",
            ),
        })
    } else {
        Ok(bytes)
    }
}

/// The most bytes a gzip file is allowed to decompress to: the largest real dataset file is 47 MB,
/// and a small corrupt or hostile file (a "decompression bomb") must not fill the memory.
pub const MAX_DECOMPRESSED_BYTES: u64 = 256 << 20;

/// Decompresses a whole gzip buffer (all members), attributing errors to `path`; fails beyond
/// [`MAX_DECOMPRESSED_BYTES`].
pub(crate) fn gunzip(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    // Capacity for a typical ratio only: a bomb grows the buffer as it goes, up to the cap.
    let mut out = Vec::with_capacity((bytes.len() * 4).min(MAX_DECOMPRESSED_BYTES as usize));
    MultiGzDecoder::new(bytes)
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(DataError::format(
            path.display().to_string(),
            format!(
                "decompresses to more than {} MiB: not a dataset file",
                MAX_DECOMPRESSED_BYTES >> 20
            ),
        ));
    }
    Ok(out)
}

/// Reads an IDX file (raw or gzipped) of unsigned bytes.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let bytes = read_maybe_gz(path)?;
    parse_idx(&bytes, &path.display().to_string())
}

/// Human name of an IDX type code, for error messages.
fn type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "not a valid IDX type",
    }
}

/// Parses an in-memory IDX buffer; `name` identifies it in error messages.
///
/// Checks the magic (two zero bytes, type code `0x08`, rank 1 to 4), that the dimensions fit in
/// memory, and that exactly `product(dims)` bytes follow the header.
pub fn parse_idx(bytes: &[u8], name: &str) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(DataError::format(
            name,
            format!(
                "truncated: an IDX file needs at least a 4-byte magic number, found {} bytes",
                bytes.len()
            ),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        let hint = if bytes.starts_with(&GZIP_MAGIC) {
            " (this is gzip data that was not decompressed)"
        } else {
            ""
        };
        return Err(DataError::format(
            name,
            format!(
                "bad IDX magic number 0x{:02x}{:02x}{:02x}{:02x}: the first two bytes must be zero{hint}",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let code = bytes[2];
    if code != TYPE_U8 {
        return Err(DataError::format(
            name,
            format!(
                "unsupported IDX type code 0x{code:02x} ({}): only unsigned bytes (0x08) are supported",
                type_name(code)
            ),
        ));
    }
    let rank = usize::from(bytes[3]);
    if !(1..=4).contains(&rank) {
        return Err(DataError::format(
            name,
            format!("unsupported IDX rank {rank}: must be between 1 and 4"),
        ));
    }
    let header_len = 4 + 4 * rank;
    if bytes.len() < header_len {
        return Err(DataError::format(
            name,
            format!(
                "truncated: the IDX header of rank {rank} needs {header_len} bytes, found {}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::format(name, format!("IDX dimensions {dims:?} are too large")))?;
    let found = bytes.len() - header_len;
    if found < expected {
        return Err(DataError::format(
            name,
            format!("truncated: expected {expected} bytes of data, found {found} (dims {dims:?})"),
        ));
    }
    if found > expected {
        return Err(DataError::format(
            name,
            format!(
                "trailing garbage: expected {expected} bytes of data, found {found} ({} extra bytes after the array of dims {dims:?})",
                found - expected
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

/// Encodes an unsigned-byte IDX array (header and data) into memory.
///
/// Fails when `dims` is empty or longer than 4, a dimension exceeds `u32::MAX`, or
/// `data.len()` is not the product of `dims`.
pub fn encode_idx_u8(dims: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    if !(1..=4).contains(&dims.len()) {
        return Err(DataError::InvalidArgument(format!(
            "IDX rank must be between 1 and 4, got dims {dims:?}"
        )));
    }
    let product = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::InvalidArgument(format!("IDX dims {dims:?} overflow")))?;
    if product != data.len() {
        return Err(DataError::InvalidArgument(format!(
            "IDX dims {dims:?} hold {product} elements but {} bytes were given",
            data.len()
        )));
    }
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    // The rank fits a byte: it was checked to be at most 4 above.
    out.extend_from_slice(&[0, 0, TYPE_U8, dims.len() as u8]);
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| {
            DataError::InvalidArgument(format!("IDX dimension {d} exceeds u32::MAX"))
        })?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// Writes an unsigned-byte IDX file; gzipped when `path` ends in `.gz`.
///
/// Used to cut slices of datasets and to build test inputs.
pub fn write_idx_u8(path: &Path, dims: &[usize], data: &[u8]) -> Result<()> {
    let encoded = encode_idx_u8(dims, data)?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&encoded)
            .and_then(|()| enc.finish())
            .map_err(|e| DataError::io(path, "gzip-compress", e))?
    } else {
        encoded
    };
    std::fs::write(path, bytes).map_err(|e| DataError::io(path, "write", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_text(r: Result<IdxArray>) -> String {
        match r {
            Ok(a) => panic!("expected an error, parsed dims {:?}", a.dims),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn round_trip_rank_3() {
        let data: Vec<u8> = (0..24).collect();
        let bytes = encode_idx_u8(&[2, 3, 4], &data).unwrap();
        assert_eq!(&bytes[..4], &[0, 0, 8, 3]);
        assert_eq!(&bytes[4..8], &[0, 0, 0, 2]);
        let arr = parse_idx(&bytes, "mem").unwrap();
        assert_eq!(arr.dims, vec![2, 3, 4]);
        assert_eq!(arr.data, data);
        arr.check_rank(3, "mem").unwrap();
        let e = arr.check_rank(1, "labels.idx").unwrap_err().to_string();
        assert!(
            e.contains("labels.idx") && e.contains("expected rank 1, found rank 3"),
            "{e}"
        );
    }

    #[test]
    fn header_errors() {
        let e = err_text(parse_idx(&[0, 0], "short"));
        assert!(e.starts_with("short: truncated"), "{e}");
        let e = err_text(parse_idx(&[0, 0, 8, 5, 0, 0, 0, 1], "r5"));
        assert!(e.contains("unsupported IDX rank 5"), "{e}");
        let e = err_text(parse_idx(&[0, 0, 8, 0], "r0"));
        assert!(e.contains("unsupported IDX rank 0"), "{e}");
        let e = err_text(parse_idx(&[0, 0, 8, 2, 0, 0, 0, 1], "hdr"));
        assert!(e.contains("needs 12 bytes, found 8"), "{e}");
        let e = err_text(parse_idx(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0], "gz"));
        assert!(e.contains("bad IDX magic") && e.contains("gzip"), "{e}");
        let e = err_text(parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], "f"));
        assert!(e.contains("type code 0x0d (f32)"), "{e}");
    }

    #[test]
    fn huge_dims_do_not_overflow() {
        let mut bytes = vec![0, 0, 8, 4];
        for _ in 0..4 {
            bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        let e = err_text(parse_idx(&bytes, "huge"));
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn encode_rejects_inconsistent_input() {
        assert!(encode_idx_u8(&[2, 2], &[0; 3]).is_err());
        assert!(encode_idx_u8(&[], &[]).is_err());
        assert!(encode_idx_u8(&[1, 1, 1, 1, 1], &[0]).is_err());
    }
}
