//! Prediction events' features straight into columns, with the GIL released.
//!
//! Stage 1 of watchkeeper spent over half of its time decoding each event's `features`
//! object into Python objects, reading them back out by name and freeing them. This module
//! reads the `features` of a whole batch of raw JSON records into a float64 matrix (the
//! model's numeric features) and one list per categorical feature, without a Python object
//! per value, in threads that run without the GIL while the caller decodes the rest of
//! each event ([`start_features`], then [`PendingFeatures::result`]).
//!
//! It accepts a strict subset of what the prediction contract accepts, and answers `None`
//! for a batch with any record outside it; the caller then decodes that batch the generic
//! way, which accepts, rejects and counts exactly as before. The subset:
//!
//! * the record is one JSON object with exactly one top-level `"features"` key, itself an
//!   object, and no top-level key written with an escape;
//! * every feature name is one the model configures, written without escapes, at most once;
//! * a numeric feature is `null` or a JSON number: an integer of at most 18 digits (exactly
//!   an int64, converted to float64 as Python's `float(int)` does) or a finite float
//!   (correctly rounded, as msgspec and Python parse it);
//! * a categorical feature is `null` or a string (its escapes decoded as JSON defines them,
//!   a surrogate pair as one character; a raw control character, invalid UTF-8 or a lone
//!   surrogate refuses the batch, as the generic decoder rejects them).
//!
//! A feature not sent or sent as `null` is NaN (numeric) or `None` (categorical).

mod cursor;
mod reader;

use std::sync::Arc;

use numpy::{PyArray1, PyArray2, PyArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};
use rustc_hash::FxHashMap as HashMap;

use crate::reader::{Chunks, Reader, Record};

/// The `features` of a batch of raw prediction records, being read into columns by threads
/// of their own (see [`start_features`]); [`PendingFeatures::result`] waits for them.
#[pyclass(module = "watchkeeper_native")]
struct PendingFeatures {
    chunks: Option<Chunks>, // (declared first: dropped, and so joined, before the records)
    records: Vec<Py<PyBytes>>,
    numeric: usize,
}

#[pymethods]
impl PendingFeatures {
    /// The (records × numeric) float64 matrix (NaN: not sent or null) and, per categorical
    /// feature, the list of its values (None: not sent or null); or None if any record is
    /// outside the subset this reader takes (see the module's documentation), for the
    /// caller's generic path. Waits, with the GIL released, for the threads to finish.
    #[allow(clippy::type_complexity)]
    fn result<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, PyArray2<f64>>, Vec<Bound<'py, PyList>>)>> {
        let chunks = self
            .chunks
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("the result of this read was taken already"))?;
        let Some(read) = py.allow_threads(|| {
            // (a bug here must not stop the worker: the generic decoder then reads the batch)
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| chunks.finish()))
                .ok()
                .flatten()
        }) else {
            return Ok(None);
        };
        let matrix =
            PyArray1::from_vec(py, read.numeric).reshape([self.records.len(), self.numeric])?;
        let mut lists = Vec::with_capacity(read.categorical.len());
        for values in read.categorical {
            let mut texts: HashMap<&[u8], PyObject> = HashMap::default(); // one str object per distinct value
            let mut items: Vec<PyObject> = Vec::with_capacity(values.len());
            for value in &values {
                items.push(match value.as_deref() {
                    None => py.None(),
                    Some(text) => texts
                        .entry(text)
                        .or_insert_with(|| {
                            // (checked to be UTF-8 while reading)
                            PyString::new(py, std::str::from_utf8(text).unwrap_or_default())
                                .into_any()
                                .unbind()
                        })
                        .clone_ref(py),
                });
            }
            lists.push(PyList::new(py, items)?);
        }
        Ok(Some((matrix, lists)))
    }
}

/// Start reading the `features` of a batch of raw prediction records into columns.
///
/// `numeric` and `categorical` are the model's feature names. The records are parsed by
/// up to four threads (one per core) that run without the GIL while the caller goes on;
/// the returned [`PendingFeatures`] holds the records until they are done.
#[pyfunction]
fn start_features(
    records: Vec<Bound<'_, PyBytes>>,
    numeric: Vec<String>,
    categorical: Vec<String>,
) -> PyResult<PendingFeatures> {
    let reader = Reader::new(&numeric, &categorical).map_err(|name| {
        PyValueError::new_err(format!(
            "feature names: {name:?} is given twice; expected distinct names"
        ))
    })?;
    // SAFETY: `PendingFeatures` keeps every record (immutable bytes) alive until its chunks
    // are joined: in `result`, or when it is dropped (`chunks` drops before `records`)
    let bytes: Arc<[Record]> = records
        .iter()
        .map(|record| unsafe { Record::new(record.as_bytes()) })
        .collect();
    let chunks = Arc::new(reader).spawn(bytes);
    Ok(PendingFeatures {
        chunks: Some(chunks),
        records: records.into_iter().map(Bound::unbind).collect(),
        numeric: numeric.len(),
    })
}

#[pymodule]
fn watchkeeper_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(start_features, module)?)?;
    module.add_class::<PendingFeatures>()?;
    Ok(())
}
