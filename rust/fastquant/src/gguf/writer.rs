//! Streaming, atomic GGUF writer.
//!
//! The header (metadata and every tensor's info, with offsets computed up front) is written
//! first, then the tensors one at a time in the declared order, so peak memory is one tensor, not
//! the model. Everything goes to a temporary file beside the target, renamed over it only by
//! [`GgufWriter::finish`]; an error, or dropping the writer unfinished, removes the temporary and
//! leaves the target untouched.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::reader::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS, MAX_TENSOR_NAME};
use super::value::Value;
use crate::error::{Error, Result};
use crate::types::QuantType;

/// A tensor to be written: name, ggml-order dimensions (`ne[0]` = row length) and type.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// The tensor's name (at most 64 bytes, unique in the file).
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the row length (fastest-varying), at most 4.
    pub dims: Vec<u64>,
    /// The type of the data.
    pub qtype: QuantType,
}

impl TensorSpec {
    /// Bytes of this tensor's data; errors like the reader's checks.
    pub fn nbytes(&self) -> Result<u64> {
        if self.dims.len() > MAX_DIMS {
            return Err(Error::Invalid(format!("tensor '{}': {} dimensions (at most 4)", self.name, self.dims.len())));
        }
        let row = self.dims.first().copied().unwrap_or(1);
        let row_bytes =
            self.qtype.row_bytes(row as usize).map_err(|e| Error::Invalid(format!("tensor '{}': {e}", self.name)))?;
        self.dims
            .iter()
            .skip(1)
            .try_fold(row_bytes as u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::Invalid(format!("tensor '{}': size of {:?} overflows", self.name, self.dims)))
    }
}

/// Writes a GGUF v3 file; see the module docs.
pub struct GgufWriter {
    out: Option<BufWriter<File>>,
    tmp_path: PathBuf,
    path: PathBuf,
    alignment: u64,
    tensors: Vec<(TensorSpec, u64)>,
    next: usize,
    /// Bytes written so far (the position in the file).
    pos: u64,
    data_offset: u64,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io(e.kind(), format!("{}: {e}", path.display()))
}

impl GgufWriter {
    /// Creates the temporary file and writes the header. `general.alignment`, if present in
    /// `metadata`, must be a power-of-two UINT32 and sets the data alignment.
    pub fn create(path: impl AsRef<Path>, metadata: &[(String, Value)], tensors: &[TensorSpec]) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if *a != 0 && a.is_power_of_two() => *a as u64,
            Some((_, v)) => {
                return Err(Error::Invalid(format!("general.alignment must be a power-of-two UINT32, got {v:?}")))
            }
        };
        let mut seen = std::collections::HashSet::new();
        for (k, _) in metadata {
            if k.is_empty() || !seen.insert(k.as_str()) {
                return Err(Error::Invalid(format!("metadata key '{k}' is empty or repeated")));
            }
        }
        let mut names = std::collections::HashSet::new();
        let mut placed = Vec::with_capacity(tensors.len());
        let mut offset = 0u64;
        for t in tensors {
            if t.name.len() > MAX_TENSOR_NAME || !names.insert(t.name.as_str()) {
                return Err(Error::Invalid(format!("tensor name '{}' is longer than 64 bytes or repeated", t.name)));
            }
            let size = t.nbytes()?;
            placed.push((t.clone(), offset));
            offset = (offset + size).div_ceil(alignment) * alignment;
        }

        let file_name =
            path.file_name().ok_or_else(|| Error::Invalid(format!("{} is not a file path", path.display())))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp_path = path.with_file_name(tmp_name);
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp_path).map_err(|e| io_err(&tmp_path, e))?;
        let mut w = GgufWriter {
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            tmp_path,
            path,
            alignment,
            tensors: placed,
            next: 0,
            pos: 0,
            data_offset: 0,
        };
        w.write_header(metadata)?;
        Ok(w)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().expect("writer is open until finish");
        out.write_all(bytes).map_err(|e| io_err(&self.tmp_path, e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn write_string(&mut self, s: &str) -> Result<()> {
        self.write_all(&(s.len() as u64).to_le_bytes())?;
        self.write_all(s.as_bytes())
    }

    fn write_value(&mut self, v: &Value) -> Result<()> {
        match v {
            Value::U8(x) => self.write_all(&[*x]),
            Value::I8(x) => self.write_all(&x.to_le_bytes()),
            Value::U16(x) => self.write_all(&x.to_le_bytes()),
            Value::I16(x) => self.write_all(&x.to_le_bytes()),
            Value::U32(x) => self.write_all(&x.to_le_bytes()),
            Value::I32(x) => self.write_all(&x.to_le_bytes()),
            Value::F32(x) => self.write_all(&x.to_le_bytes()),
            Value::Bool(x) => self.write_all(&[*x as u8]),
            Value::String(s) => self.write_string(s),
            Value::U64(x) => self.write_all(&x.to_le_bytes()),
            Value::I64(x) => self.write_all(&x.to_le_bytes()),
            Value::F64(x) => self.write_all(&x.to_le_bytes()),
            Value::Array(elem, items) => {
                if let Some(bad) = items.iter().find(|i| i.value_type() != *elem) {
                    return Err(Error::Invalid(format!(
                        "array declared as {} holds a {}",
                        elem.name(),
                        bad.value_type().name()
                    )));
                }
                self.write_all(&(*elem as u32).to_le_bytes())?;
                self.write_all(&(items.len() as u64).to_le_bytes())?;
                for item in items {
                    self.write_value(item)?;
                }
                Ok(())
            }
        }
    }

    fn pad_to_alignment(&mut self) -> Result<()> {
        let pad = (self.pos.div_ceil(self.alignment) * self.alignment - self.pos) as usize;
        self.write_all(&vec![0u8; pad])
    }

    fn write_header(&mut self, metadata: &[(String, Value)]) -> Result<()> {
        self.write_all(&GGUF_MAGIC.to_le_bytes())?;
        self.write_all(&3u32.to_le_bytes())?;
        self.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        self.write_all(&(metadata.len() as u64).to_le_bytes())?;
        for (k, v) in metadata {
            self.write_string(k)?;
            self.write_all(&(v.value_type() as u32).to_le_bytes())?;
            self.write_value(v)?;
        }
        let infos: Vec<(TensorSpec, u64)> = self.tensors.clone();
        for (t, offset) in &infos {
            self.write_string(&t.name)?;
            self.write_all(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                self.write_all(&d.to_le_bytes())?;
            }
            self.write_all(&t.qtype.id().to_le_bytes())?;
            self.write_all(&offset.to_le_bytes())?;
        }
        self.pad_to_alignment()?;
        self.data_offset = self.pos;
        Ok(())
    }

    /// Name of the next tensor [`write_tensor`](Self::write_tensor) expects, if any.
    pub fn next_tensor(&self) -> Option<&TensorSpec> {
        self.tensors.get(self.next).map(|(t, _)| t)
    }

    /// Writes the next tensor's data (tensors go in the order given to `create`).
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let (spec, offset) = self
            .tensors
            .get(self.next)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("tensor '{name}': all declared tensors are already written")))?;
        if spec.name != name {
            return Err(Error::Invalid(format!("tensor '{name}' written out of order: '{}' comes next", spec.name)));
        }
        let size = spec.nbytes()?;
        if data.len() as u64 != size {
            return Err(Error::Size { what: "tensor data bytes", expected: size as usize, got: data.len() });
        }
        debug_assert_eq!(self.pos, self.data_offset + offset, "running position must equal the declared offset");
        self.write_all(data)?;
        self.pad_to_alignment()?;
        self.next += 1;
        Ok(())
    }

    /// Checks that every tensor was written, flushes, syncs and renames the temporary file over
    /// the target.
    pub fn finish(mut self) -> Result<()> {
        if self.next != self.tensors.len() {
            return Err(Error::Invalid(format!("only {} of {} tensors were written", self.next, self.tensors.len())));
        }
        let out = self.out.take().expect("writer is open until finish");
        let file = out.into_inner().map_err(|e| io_err(&self.tmp_path, e.into_error()))?;
        file.sync_all().map_err(|e| io_err(&self.tmp_path, e))?;
        drop(file);
        std::fs::rename(&self.tmp_path, &self.path).map_err(|e| io_err(&self.path, e))?;
        Ok(())
    }
}

impl Drop for GgufWriter {
    fn drop(&mut self) {
        // Not finished (an error, or abandoned): leave no half-written file behind.
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::reader::GgufFile;
    use crate::gguf::value::ValueType;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "fastquant-writer-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trips_through_the_reader() {
        let path = dir().join("rt.gguf");
        let metadata = vec![
            ("general.architecture".to_string(), Value::String("llama".into())),
            ("general.alignment".to_string(), Value::U32(64)),
            ("a".to_string(), Value::Array(ValueType::Array, vec![Value::Array(ValueType::U8, vec![Value::U8(1)])])),
            ("e".to_string(), Value::Array(ValueType::String, vec![])),
        ];
        let tensors = vec![
            TensorSpec { name: "w".into(), dims: vec![32, 3], qtype: QuantType::Q8_0 },
            TensorSpec { name: "b".into(), dims: vec![5], qtype: QuantType::F32 },
        ];
        let mut w = GgufWriter::create(&path, &metadata, &tensors).unwrap();
        w.write_tensor("w", &[7u8; 3 * 34]).unwrap();
        w.write_tensor("b", &[1u8; 20]).unwrap();
        w.finish().unwrap();
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.header.metadata, metadata);
        assert_eq!(f.header.alignment, 64);
        assert_eq!(f.tensor_data(0), &[7u8; 102][..]);
        assert_eq!(f.tensor_data(1), &[1u8; 20][..]);
        assert_eq!(f.header.tensors[1].offset % 64, 0);
    }

    #[test]
    fn errors_leave_no_file() {
        let d = dir();
        let path = d.join("err.gguf");
        let tensors = vec![TensorSpec { name: "w".into(), dims: vec![32], qtype: QuantType::Q8_0 }];
        let mut w = GgufWriter::create(&path, &[], &tensors).unwrap();
        assert!(w.write_tensor("w", &[0u8; 3]).is_err());
        assert!(w.write_tensor("x", &[0u8; 34]).is_err());
        drop(w);
        let w = GgufWriter::create(&path, &[], &tensors).unwrap();
        assert!(w.finish().is_err());
        assert!(!path.exists());
        let leftovers: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("err.gguf"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
