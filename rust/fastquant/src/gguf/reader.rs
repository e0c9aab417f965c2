//! GGUF reader: a strict parser of the header, metadata and tensor infos, and a memory map for the
//! data.
//!
//! Files are untrusted input. Every count and length is checked against the bytes that remain
//! before anything is allocated for it, every tensor must lie inside the data section, aligned and
//! without overlapping another, and every violation is an [`Error::Gguf`] naming the field and the
//! byte offset where it was found. Opening a file reads only its header pages: tensor data stays
//! in the page cache until someone reads it.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use super::value::{Value, ValueType};
use crate::error::{Error, Result};
use crate::types::QuantType;

/// `GGUF` read as a little-endian u32.
pub const GGUF_MAGIC: u32 = 0x4655_4747;
/// The alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// The spec caps tensor names at 64 bytes.
pub const MAX_TENSOR_NAME: usize = 64;
/// Arrays of arrays are allowed by the spec; this bounds the recursion on hostile input.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// Dimensions in ggml order (`ne[0]` is the row length, the fastest-varying axis).
    pub dims: Vec<u64>,
    /// The type of the data.
    pub qtype: QuantType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// The shape in numpy order (reversed `ne`): the one place that converts.
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }

    /// Number of elements (the product of the dimensions).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Everything before the tensor data.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    /// The GGUF format version (2 or 3).
    pub version: u32,
    /// Key/value pairs in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// Alignment of tensor data (`general.alignment`, default [`DEFAULT_ALIGNMENT`]).
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
}

impl GgufHeader {
    /// The metadata value with key `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Parses and validates the header of a complete GGUF file held in `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic = c.u32("magic")?;
        if magic != GGUF_MAGIC {
            return Err(gguf_err(0, format!("not a GGUF file (magic {magic:#010x}, expected 'GGUF')")));
        }
        let version = c.u32("version")?;
        if version != 0 && version & 0xffff == 0 {
            return Err(gguf_err(4, "big-endian GGUF files are not supported".into()));
        }
        match version {
            2 | 3 => {}
            1 => return Err(gguf_err(4, "GGUF version 1 is not supported (use version 2 or 3)".into())),
            v => return Err(gguf_err(4, format!("unsupported GGUF version {v}"))),
        }
        let tensor_count = c.u64("tensor count")?;
        let kv_count = c.u64("metadata count")?;
        // Each key/value needs at least a key length, a type and an 1-byte value; each tensor info
        // at least a name length, n_dims, a type and an offset.
        c.check_count(kv_count, 8 + 4 + 1, "metadata count")?;
        c.check_count(tensor_count, 8 + 4 + 4 + 8, "tensor count")?;

        let mut metadata = Vec::with_capacity(kv_count as usize);
        let mut keys = HashSet::with_capacity(kv_count as usize);
        for _ in 0..kv_count {
            let at = c.pos;
            let key = c.string("metadata key")?;
            if key.is_empty() {
                return Err(gguf_err(at as u64, "empty metadata key".into()));
            }
            if !keys.insert(key.clone()) {
                return Err(gguf_err(at as u64, format!("duplicate metadata key '{key}'")));
            }
            let ty_at = c.pos;
            let ty = c.value_type(&key)?;
            let value = c.value(ty, 0, &key).map_err(|e| with_context(e, ty_at, &key))?;
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if *a != 0 && a.is_power_of_two() => *a as u64,
            Some((_, v)) => {
                return Err(gguf_err(
                    0,
                    format!("general.alignment must be a non-zero power of two of type UINT32, got {v:?}"),
                ))
            }
        };

        let mut tensors = Vec::with_capacity(tensor_count as usize);
        let mut names = HashSet::with_capacity(tensor_count as usize);
        for i in 0..tensor_count {
            let at = c.pos as u64;
            let name = c.string("tensor name")?;
            if name.len() > MAX_TENSOR_NAME {
                return Err(gguf_err(at, format!("tensor {i}: name of {} bytes exceeds 64", name.len())));
            }
            if !names.insert(name.clone()) {
                return Err(gguf_err(at, format!("duplicate tensor name '{name}'")));
            }
            let n_dims = c.u32("tensor n_dims")? as usize;
            if n_dims > MAX_DIMS {
                return Err(gguf_err(at, format!("tensor '{name}': {n_dims} dimensions (at most {MAX_DIMS})")));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                let d = c.u64("tensor dimension")?;
                if d > i64::MAX as u64 {
                    return Err(gguf_err(c.pos as u64 - 8, format!("tensor '{name}': dimension {d} too large")));
                }
                dims.push(d);
            }
            let ty_at = c.pos as u64;
            let type_id = c.u32("tensor type")?;
            let qtype = QuantType::from_id(type_id)
                .map_err(|_| gguf_err(ty_at, format!("tensor '{name}': unknown ggml type id {type_id}")))?;
            let offset = c.u64("tensor offset")?;
            let size = tensor_size(&name, qtype, &dims).map_err(|e| with_context(e, at as usize, &name))?;
            if offset % alignment != 0 {
                return Err(gguf_err(
                    c.pos as u64 - 8,
                    format!("tensor '{name}': offset {offset} is not a multiple of the alignment {alignment}"),
                ));
            }
            tensors.push(TensorInfo { name, dims, qtype, offset, size });
        }

        let data_offset = align_up(c.pos as u64, alignment);
        let data_len = (bytes.len() as u64).saturating_sub(data_offset);
        let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
        by_offset.sort_by_key(|t| t.offset);
        let mut end_of_previous: Option<(&str, u64)> = None;
        for t in by_offset {
            let end = t.offset.checked_add(t.size).filter(|&e| e <= data_len).ok_or_else(|| {
                gguf_err(
                    data_offset + t.offset,
                    format!(
                        "tensor '{}': {} bytes at data offset {} run past the end of the file (data section is {} bytes)",
                        t.name, t.size, t.offset, data_len
                    ),
                )
            })?;
            if let Some((prev, prev_end)) = end_of_previous {
                if t.offset < prev_end {
                    return Err(gguf_err(
                        data_offset + t.offset,
                        format!("tensor '{}' overlaps tensor '{prev}'", t.name),
                    ));
                }
            }
            end_of_previous = Some((&t.name, end));
        }
        Ok(GgufHeader { version, metadata, tensors, alignment, data_offset })
    }
}

/// A memory-mapped GGUF file: the parsed header plus zero-copy access to tensor data.
pub struct GgufFile {
    /// The parsed, validated header.
    pub header: GgufHeader,
    map: Mmap,
}

impl GgufFile {
    /// Maps `path` and parses its header. Only the pages holding the header are read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::Io(e.kind(), format!("{}: {e}", path.display())))?;
        // SAFETY: the map is read-only and private to this object. A concurrent writer truncating
        // the file could fault a read; that is the documented contract of memory-mapped readers
        // (llama.cpp, gguf-py's np.memmap) and the price of zero-copy access.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::Io(e.kind(), format!("{}: {e}", path.display())))?;
        let header = GgufHeader::parse(&map).map_err(|e| match e {
            Error::Gguf { offset, what } => Error::Gguf { offset, what: format!("{}: {what}", path.display()) },
            other => other,
        })?;
        Ok(GgufFile { header, map })
    }

    /// The raw bytes of tensor `index` (validated to lie inside the file when opened).
    pub fn tensor_data(&self, index: usize) -> &[u8] {
        let t = &self.header.tensors[index];
        let start = (self.header.data_offset + t.offset) as usize;
        &self.map[start..start + t.size as usize]
    }

    /// The file's size in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }
}

fn gguf_err(offset: u64, what: String) -> Error {
    Error::Gguf { offset, what }
}

fn with_context(e: Error, offset: usize, key: &str) -> Error {
    match e {
        Error::Gguf { offset: o, what } => Error::Gguf { offset: o, what: format!("'{key}': {what}") },
        other => gguf_err(offset as u64, format!("'{key}': {other}")),
    }
}

fn align_up(x: u64, alignment: u64) -> u64 {
    x.div_ceil(alignment) * alignment
}

/// Bytes of a tensor of `qtype` with ggml dimensions `dims`, with every check ggml makes.
fn tensor_size(name: &str, qtype: QuantType, dims: &[u64]) -> Result<u64> {
    let row = dims.first().copied().unwrap_or(1);
    let block = qtype.block_elems() as u64;
    if row % block != 0 {
        return Err(Error::Invalid(format!(
            "tensor '{name}': row length {row} is not a multiple of the {qtype} block size {block}"
        )));
    }
    let overflow = || Error::Invalid(format!("tensor '{name}': size of shape {dims:?} overflows"));
    let rows = dims.iter().skip(1).try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or_else(overflow)?;
    (row / block).checked_mul(qtype.block_bytes() as u64).and_then(|r| r.checked_mul(rows)).ok_or_else(overflow)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(gguf_err(
                self.pos as u64,
                format!("truncated file: {what} needs {n} bytes, {} left", self.remaining()),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.take(N, what)?.try_into().expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Refuses a count whose smallest encoding could not fit in the bytes left: no allocation is
    /// ever sized by an unchecked count.
    fn check_count(&self, count: u64, min_size: usize, what: &str) -> Result<()> {
        let need = count.checked_mul(min_size as u64);
        if need.is_none_or(|n| n > self.remaining() as u64) {
            return Err(gguf_err(
                self.pos as u64,
                format!("{what} {count} cannot fit in the {} bytes left", self.remaining()),
            ));
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(gguf_err(
                at as u64,
                format!("{what}: length {len} exceeds the {} bytes left", self.remaining()),
            ));
        }
        let raw = self.take(len as usize, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| gguf_err(at as u64 + 8, format!("{what} is not valid UTF-8")))
    }

    fn value_type(&mut self, key: &str) -> Result<ValueType> {
        let at = self.pos;
        let t = self.u32("value type")?;
        ValueType::from_u32(t).ok_or_else(|| gguf_err(at as u64, format!("'{key}': unknown value type {t}")))
    }

    fn value(&mut self, ty: ValueType, depth: usize, key: &str) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(key)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(key)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            ValueType::U32 => Value::U32(self.u32(key)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            ValueType::U64 => Value::U64(self.u64(key)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            ValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(key)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => return Err(gguf_err(at as u64, format!("'{key}': bool byte {b} is neither 0 nor 1"))),
                }
            }
            ValueType::String => Value::String(self.string(key)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(gguf_err(
                        self.pos as u64,
                        format!("'{key}': arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                    ));
                }
                let elem = self.value_type(key)?;
                let count = self.u64(key)?;
                self.check_count(count, elem.min_encoded_size(), "array length")?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem, depth + 1, key)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// A small valid file: one string KV, one u32 array KV, one F32 tensor of 2x32.
    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        string(&mut b, "general.architecture");
        b.extend_from_slice(&8u32.to_le_bytes());
        string(&mut b, "llama");
        string(&mut b, "a.list");
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&3u64.to_le_bytes());
        for v in [1u32, 2, 3] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        string(&mut b, "w");
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&32u64.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        while b.len() % 32 != 0 {
            b.push(0);
        }
        b.extend(std::iter::repeat_n(0u8, 2 * 32 * 4));
        b
    }

    #[test]
    fn parses_a_valid_file() {
        let h = GgufHeader::parse(&sample()).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.get("general.architecture").unwrap().as_str(), Some("llama"));
        assert_eq!(h.tensors[0].shape(), vec![2, 32]);
        assert_eq!(h.tensors[0].size, 256);
        assert_eq!(h.data_offset % 32, 0);
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let b = sample();
        for n in 0..b.len() {
            assert!(GgufHeader::parse(&b[..n]).is_err(), "truncated at {n}");
        }
    }

    #[test]
    fn every_single_byte_corruption_is_handled() {
        let b = sample();
        for i in 0..b.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut c = b.clone();
                c[i] = v;
                let _ = GgufHeader::parse(&c);
            }
        }
    }

    #[test]
    fn huge_counts_are_refused_before_allocating() {
        let mut b = sample();
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = GgufHeader::parse(&b).unwrap_err();
        assert!(e.to_string().contains("metadata count"), "{e}");
    }
}
