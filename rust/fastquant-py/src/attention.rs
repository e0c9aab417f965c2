//! Flash attention over numpy buffers (`fastquant.attention` does the argument handling).

use fastquant::attention::{AttentionOptions, AttentionShape, KvData, MaskView, QueryData};
use fastquant::{Level, QuantType};
use numpy::{PyReadonlyArray1, PyReadwriteArray1, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::to_py;

/// A flat input buffer: f32, f16 bits, or ggml blocks, as its ggml type id says.
enum Input<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    F16(PyReadonlyArray1<'py, u16>),
    Blocks(QuantType, PyReadonlyArray1<'py, u8>),
}

impl<'py> Input<'py> {
    fn extract(x: &Bound<'py, PyAny>, type_id: u32, what: &str) -> PyResult<Self> {
        let qtype = QuantType::from_id(type_id).map_err(to_py)?;
        let input = match qtype {
            QuantType::F32 => Input::F32(x.extract()?),
            // f16 comes as numpy float16 bits, or as the raw bytes of an F16 QuantizedTensor.
            QuantType::F16 => match x.extract() {
                Ok(bits) => Input::F16(bits),
                Err(_) => Input::Blocks(qtype, x.extract()?),
            },
            _ => Input::Blocks(qtype, x.extract()?),
        };
        let contiguous = match &input {
            Input::F32(a) => a.is_c_contiguous(),
            Input::F16(a) => a.is_c_contiguous(),
            Input::Blocks(_, a) => a.is_c_contiguous(),
        };
        if !contiguous {
            return Err(PyValueError::new_err(format!("{what} must be C-contiguous")));
        }
        Ok(input)
    }

    fn kv(&self) -> PyResult<KvData<'_>> {
        Ok(match self {
            Input::F32(a) => KvData::F32(a.as_slice()?),
            Input::F16(a) => KvData::F16(a.as_slice()?),
            Input::Blocks(qtype, a) => KvData::Blocks { qtype: *qtype, data: a.as_slice()? },
        })
    }
}

/// Computes attention into `out`. `shape` is (B, Hq, Hkv, Nq, Nk, D); q is f32 or f16 bits (type
/// id 0 or 1), k and v f32, f16 bits or ggml blocks by their type ids; the mask is a flat f32
/// array of `mask_dims` (each 1 or the full size of its axis of [B, Hq, Nq, Nk]).
#[pyfunction]
#[pyo3(signature = (
    q, q_type, k, k_type, v, v_type, shape, out, lse=None, *, causal=false, scale=None, mask=None,
    mask_dims=None, window=None, softcap=None, kv_head_stride=None, query_offset=None, simd=None
))]
#[allow(clippy::too_many_arguments)]
fn attention<'py>(
    py: Python<'py>,
    q: &Bound<'py, PyAny>,
    q_type: u32,
    k: &Bound<'py, PyAny>,
    k_type: u32,
    v: &Bound<'py, PyAny>,
    v_type: u32,
    shape: (usize, usize, usize, usize, usize, usize),
    mut out: PyReadwriteArray1<'py, f32>,
    mut lse: Option<PyReadwriteArray1<'py, f32>>,
    causal: bool,
    scale: Option<f32>,
    mask: Option<PyReadonlyArray1<'py, f32>>,
    mask_dims: Option<[usize; 4]>,
    window: Option<usize>,
    softcap: Option<f32>,
    kv_head_stride: Option<usize>,
    query_offset: Option<i64>,
    simd: Option<&str>,
) -> PyResult<()> {
    let (batch, q_heads, kv_heads, n_queries, n_keys, head_dim) = shape;
    let shape = AttentionShape { batch, q_heads, kv_heads, n_queries, n_keys, head_dim };
    let level = simd.map(Level::from_name).transpose().map_err(to_py)?;
    let q = Input::extract(q, q_type, "q")?;
    let q = match &q {
        Input::F32(a) => QueryData::F32(a.as_slice()?),
        Input::F16(a) => QueryData::F16(a.as_slice()?),
        Input::Blocks(..) => return Err(PyValueError::new_err("q must be float32 or float16")),
    };
    let (k, v) = (Input::extract(k, k_type, "k")?, Input::extract(v, v_type, "v")?);
    let (k, v) = (k.kv()?, v.kv()?);
    let mask_data = mask.as_ref().map(|m| m.as_slice()).transpose()?;
    let mask = match (mask_data, mask_dims) {
        (Some(data), Some(dims)) => Some(MaskView { data, dims }),
        (None, None) => None,
        _ => return Err(PyValueError::new_err("mask and mask_dims go together")),
    };
    let options = AttentionOptions { causal, scale, mask, window, softcap, level, kv_head_stride, query_offset };
    let out = out.as_slice_mut().map_err(|_| PyValueError::new_err("out must be contiguous"))?;
    let lse = lse
        .as_mut()
        .map(|l| l.as_slice_mut())
        .transpose()
        .map_err(|_| PyValueError::new_err("lse must be contiguous"))?;
    py.detach(|| fastquant::attention(&shape, q, k, v, &options, out, lse)).map_err(to_py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(attention, m)?)?;
    Ok(())
}
