//! Instruction-set levels, run-time detection and kernel dispatch.
//!
//! Wheels are built for baseline x86-64, so every SIMD kernel is a `#[target_feature]` function
//! that may only run after detection has proved the CPU has its features. Detection happens once
//! per process; `FASTQUANT_SIMD` caps the level (asking for more than the CPU has is an error, never
//! an illegal instruction) and [`set_level`] changes it at run time so tests can compare levels.
//!
//! [`codec_for`] hands out a kernel pair for any (type, level) the CPU supports, falling back level
//! by level to the scalar reference where a type has no faster kernel; [`codec`] does the same for
//! the process-wide level. The ISA modules take a zero-sized proof token that only detection can
//! produce, so holding their function pointers implies the features are present.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::formats::{
    scalar_codec, scalar_dequantizer, scalar_imatrix_quantizer, DequantizeFn, QuantizeFn, QuantizeImatrixFn,
};
use crate::types::QuantType;

#[cfg(target_arch = "x86_64")]
pub mod x86_64;

/// An instruction-set level, ordered from least to most capable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Level {
    /// Portable Rust, the reference.
    Scalar = 0,
    /// AVX2 + FMA + F16C (Haswell and later, Zen).
    Avx2 = 1,
    /// AVX-512 F, BW, VL, DQ (Skylake-X, Zen 4).
    Avx512 = 2,
    /// AVX-512 with VNNI (`vpdpbusd`) for integer dot products.
    Avx512Vnni = 3,
}

impl Level {
    /// Every level, lowest first (the order of the `u8` values).
    pub const ALL: [Level; 4] = [Level::Scalar, Level::Avx2, Level::Avx512, Level::Avx512Vnni];

    /// The level's name as `FASTQUANT_SIMD` and the Python API spell it (`"scalar"`, `"avx2"`, `"avx512"`,
    /// `"avx512vnni"`).
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
            Level::Avx512Vnni => "avx512vnni",
        }
    }

    /// Parses a [`Level::name`] (case-insensitive, surrounding spaces ignored); [`Error::UnknownSimdLevel`] otherwise.
    /// This only names a level: whether the CPU has it is checked where it is used.
    pub fn from_name(name: &str) -> Result<Self> {
        Level::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| Error::UnknownSimdLevel(name.to_owned()))
    }

    fn from_u8(v: u8) -> Level {
        Level::ALL[v as usize]
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The best level this CPU supports, detected once.
pub fn detected_level() -> Level {
    static DETECTED: OnceLock<Level> = OnceLock::new();
    *DETECTED.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    if x86_64::Avx512::try_new().is_some() {
        if std::arch::is_x86_feature_detected!("avx512vnni") {
            Level::Avx512Vnni
        } else {
            Level::Avx512
        }
    } else if x86_64::Avx2::try_new().is_some() {
        Level::Avx2
    } else {
        Level::Scalar
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Scalar
}

/// Every level this CPU can run, lowest first.
pub fn available_levels() -> Vec<Level> {
    Level::ALL.into_iter().filter(|l| *l <= detected_level()).collect()
}

fn check_available(level: Level) -> Result<Level> {
    if level <= detected_level() {
        Ok(level)
    } else {
        Err(Error::SimdUnavailable { requested: level.name(), best: detected_level().name() })
    }
}

/// The level chosen by the environment: `FASTQUANT_SIMD` if set, else the best detected.
fn env_level() -> Result<Level> {
    static ENV_LEVEL: OnceLock<Result<Level>> = OnceLock::new();
    ENV_LEVEL
        .get_or_init(|| match std::env::var("FASTQUANT_SIMD") {
            Ok(v) if !v.trim().is_empty() => Level::from_name(&v)
                .and_then(check_available)
                .map_err(|e| Error::SimdEnv { value: v.clone(), reason: e.to_string() }),
            _ => Ok(detected_level()),
        })
        .clone()
}

const NO_OVERRIDE: u8 = u8::MAX;
static OVERRIDE: AtomicU8 = AtomicU8::new(NO_OVERRIDE);

/// The level kernels run at now: the one set by [`set_level`], else the environment's.
pub fn active_level() -> Result<Level> {
    match OVERRIDE.load(Ordering::Relaxed) {
        NO_OVERRIDE => env_level(),
        v => Ok(Level::from_u8(v)),
    }
}

/// Forces a level for the whole process (`None` returns to `FASTQUANT_SIMD` / detection).
/// Errors if the CPU lacks the level.
pub fn set_level(level: Option<Level>) -> Result<()> {
    match level {
        Some(l) => OVERRIDE.store(check_available(l)? as u8, Ordering::Relaxed),
        None => OVERRIDE.store(NO_OVERRIDE, Ordering::Relaxed),
    }
    Ok(())
}

/// A quantize/dequantize kernel pair for one type at one level.
#[derive(Clone, Copy)]
pub struct Codec {
    /// `None` for a type fastquant can only read (the I-quants with lattice grids).
    pub quantize: Option<QuantizeFn>,
    /// The dequantizer (every type has one).
    pub dequantize: DequantizeFn,
    /// The level whose code these kernels are (lower than asked when a type has no faster kernel).
    pub quantize_level: Level,
    /// The level whose code `dequantize` is.
    pub dequantize_level: Level,
    /// The importance-weighted quantizer; `None` when ggml ignores importance weights for the type.
    pub quantize_imatrix: Option<QuantizeImatrixFn>,
    /// The level whose code `quantize_imatrix` is.
    pub quantize_imatrix_level: Level,
}

/// The kernels for `qtype` at `level`; `None` when the CPU lacks `level`. Errors for a type with no
/// codec in fastquant.
pub fn codec_for(qtype: QuantType, level: Level) -> Result<Option<Codec>> {
    let (q_ref, dq_ref) = match scalar_codec(qtype) {
        Some((q, dq)) => (Some(q), dq),
        None => (
            None,
            scalar_dequantizer(qtype).ok_or(Error::Unsupported { qtype: qtype.name(), what: "quantize/dequantize" })?,
        ),
    };
    if level > detected_level() {
        return Ok(None);
    }
    let imatrix_ref = scalar_imatrix_quantizer(qtype);
    let mut codec = Codec {
        quantize: q_ref,
        dequantize: dq_ref,
        quantize_level: Level::Scalar,
        dequantize_level: Level::Scalar,
        quantize_imatrix: imatrix_ref,
        quantize_imatrix_level: Level::Scalar,
    };
    #[cfg(target_arch = "x86_64")]
    {
        // Lowest level first, so a higher level's kernel, where there is one, wins.
        if level >= Level::Avx2 {
            if let Some(token) = x86_64::Avx2::try_new() {
                let k = x86_64::avx2::kernels(token, qtype);
                if let (Some(q), Some(_)) = (k.quantize, codec.quantize) {
                    codec.quantize = Some(q);
                    codec.quantize_level = Level::Avx2;
                }
                if let Some(dq) = k.dequantize {
                    codec.dequantize = dq;
                    codec.dequantize_level = Level::Avx2;
                }
                if let (Some(q), Some(_)) = (k.quantize_imatrix, codec.quantize_imatrix) {
                    codec.quantize_imatrix = Some(q);
                    codec.quantize_imatrix_level = Level::Avx2;
                }
            }
        }
        if level >= Level::Avx512 {
            if let Some(token) = x86_64::Avx512::try_new() {
                let k = x86_64::avx512::kernels(token, qtype);
                if let (Some(q), Some(_)) = (k.quantize, codec.quantize) {
                    codec.quantize = Some(q);
                    codec.quantize_level = Level::Avx512;
                }
                if let Some(dq) = k.dequantize {
                    codec.dequantize = dq;
                    codec.dequantize_level = Level::Avx512;
                }
                if let (Some(q), Some(_)) = (k.quantize_imatrix, codec.quantize_imatrix) {
                    codec.quantize_imatrix = Some(q);
                    codec.quantize_imatrix_level = Level::Avx512;
                }
            }
        }
    }
    Ok(Some(codec))
}

/// The kernels for `qtype` at the active level.
pub fn codec(qtype: QuantType) -> Result<Codec> {
    let level = active_level()?;
    Ok(codec_for(qtype, level)?.expect("the active level is always available"))
}

/// Whether a float slice holds NaN or ±Inf, as fast as `level` allows.
pub fn has_non_finite(level: Level, x: &[f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if level >= Level::Avx512 {
            if let Some(t) = x86_64::Avx512::try_new() {
                return x86_64::has_non_finite_avx512(t, x);
            }
        }
        if level >= Level::Avx2 {
            if let Some(t) = x86_64::Avx2::try_new() {
                return x86_64::has_non_finite_avx2(t, x);
            }
        }
    }
    let _ = level;
    x.iter().any(|v| !v.is_finite())
}

/// What an ISA module offers for one type; `None` means "use the next lower level".
#[derive(Default, Clone, Copy)]
pub struct IsaKernels {
    /// The plain quantizer at this level, if written.
    pub quantize: Option<QuantizeFn>,
    /// The dequantizer at this level, if written.
    pub dequantize: Option<DequantizeFn>,
    /// The importance-weighted quantizer (whole rows plus the imatrix), for types that use one.
    pub quantize_imatrix: Option<QuantizeImatrixFn>,
}
