//! One mapping from core errors to the Python exception hierarchy of `fastquant/errors.py`.

use fastquant::Error;
use pyo3::PyErr;

pyo3::import_exception!(fastquant.errors, ShapeError);
pyo3::import_exception!(fastquant.errors, QuantTypeError);
pyo3::import_exception!(fastquant.errors, NonFiniteError);
pyo3::import_exception!(fastquant.errors, UnsupportedError);
pyo3::import_exception!(fastquant.errors, SimdError);
pyo3::import_exception!(fastquant.errors, GGUFError);
pyo3::import_exception!(fastquant.errors, InvalidArgumentError);

/// Converts a core error into the matching Python exception, keeping the core's message.
pub fn to_py(err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::UnknownTypeId(_) | Error::UnknownTypeName(_) => QuantTypeError::new_err(msg),
        Error::Unsupported { .. } => UnsupportedError::new_err(msg),
        Error::BlockMultiple { .. } | Error::Size { .. } | Error::TooLarge(_) => ShapeError::new_err(msg),
        Error::NonFinite { index, value } => NonFiniteError::new_err((msg, index, value)),
        Error::UnknownSimdLevel(_) | Error::SimdUnavailable { .. } | Error::SimdEnv { .. } => SimdError::new_err(msg),
        Error::Gguf { .. } => GGUFError::new_err(msg),
        Error::Io(kind, _) => match kind {
            std::io::ErrorKind::NotFound => pyo3::exceptions::PyFileNotFoundError::new_err(msg),
            std::io::ErrorKind::PermissionDenied => pyo3::exceptions::PyPermissionError::new_err(msg),
            std::io::ErrorKind::IsADirectory => pyo3::exceptions::PyIsADirectoryError::new_err(msg),
            _ => pyo3::exceptions::PyOSError::new_err(msg),
        },
        Error::Invalid(_) => InvalidArgumentError::new_err(msg),
    }
}
