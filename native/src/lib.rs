//! Prediction events straight into Python, parsed with the GIL released.
//!
//! Stage 1 of watchkeeper spent most of its time decoding each event into Python objects
//! (msgspec parses a record in C, but under the GIL), reading the features back out by
//! name and freeing them. This module parses a whole batch of raw JSON prediction records
//! in threads that run without the GIL ([`start_events`], then [`PendingEvents::result`]):
//! each record's `features` go into a float64 matrix (the model's numeric features) and one
//! list per categorical feature, without a Python object per value; its other fields into a
//! dict as the generic decoder makes it, the event time as epoch seconds.
//!
//! It accepts a strict subset of what the prediction contract accepts, and answers `None`
//! for a batch with any record outside it; the caller then decodes that batch the generic
//! way, which accepts, rejects and counts exactly as before. The subset:
//!
//! * the record is one JSON object, each top-level key written without escapes; `features`
//!   (an object), `event_id` and `model_id` (non-empty strings) and `timestamp` are sent;
//!   no key the contract names is sent twice;
//! * every feature name is one the model configures, written without escapes, at most once;
//!   a numeric feature is `null` or a number, a categorical one `null` or a string;
//! * a number is an integer of at most 18 digits (exactly an int64, converted to float64 as
//!   Python's `float(int)` does where a float is expected) or a finite float (correctly
//!   rounded, as msgspec and Python parse it); strings are valid UTF-8, their escapes decoded
//!   as JSON defines them (a surrogate pair as one character; a raw control character or a
//!   lone surrogate refuses the batch);
//! * `timestamp` is epoch seconds within the contract's bounds, or an RFC 3339 date-time
//!   `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)` between the years 1685 and 2255;
//! * `prediction_id` is a string or `null`, `model_version` a string; `prediction` an
//!   object with `label` (string, integer, boolean or `null`), `score` (a number from 0 to 1
//!   or `null`), `value` (a number or `null`), `probabilities` (an object of numbers or
//!   `null`); `attributes` an object of strings, numbers, booleans or `null`; `metadata` an
//!   object (checked, and left out of the dict: the monitor never reads it); any other field
//!   any JSON value (checked, and ignored as the contract ignores it).
//!
//! A feature not sent or sent as `null` is NaN (numeric) or `None` (categorical).

mod cursor;
mod event;
mod reader;

use std::sync::Arc;

use numpy::{PyArray1, PyArray2, PyArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyString};
use rustc_hash::FxHashMap as HashMap;

use crate::cursor::Number;
use crate::event::{Event, Prediction, Scalar};
use crate::reader::{Chunks, Columns, Reader, Record};

/// A batch of raw prediction records being read by threads of their own (see
/// [`start_events`]); [`PendingEvents::result`] waits for them.
#[pyclass(module = "watchkeeper_native")]
struct PendingEvents {
    chunks: Option<Chunks>, // (declared first: dropped, and so joined, before the records)
    records: Vec<Py<PyBytes>>,
    numeric: usize,
}

/// One batch's events as Python objects: the dicts, their times, the features' columns.
type Events<'py> = (
    Bound<'py, PyList>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray2<f64>>,
    Vec<Bound<'py, PyList>>,
);

#[pymethods]
impl PendingEvents {
    /// Each record's fields but its features as a dict (``timestamp`` in epoch seconds), the
    /// event times (float64), the (records × numeric) float64 matrix of the numeric features
    /// (NaN: not sent or null) and, per categorical feature, the list of its values (None:
    /// not sent or null); or None if any record is outside the subset this reader takes (see
    /// the module's documentation), for the caller's generic path. Waits, with the GIL
    /// released, for the threads to finish.
    fn result<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Events<'py>>> {
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
        let Columns {
            events,
            numeric,
            categorical,
        } = read;
        let matrix = PyArray1::from_vec(py, numeric).reshape([self.records.len(), self.numeric])?;
        let mut texts = Texts::new(py);
        let times = PyArray1::from_iter(py, events.iter().map(|event| event.time));
        let dicts = events
            .iter()
            .map(|event| texts.event(event))
            .collect::<PyResult<Vec<_>>>()?;
        let mut lists = Vec::with_capacity(categorical.len());
        for values in categorical {
            let items = (values.iter())
                .map(|value| match value {
                    None => py.None(),
                    Some(text) => texts.shared(text),
                })
                .collect::<Vec<_>>();
            lists.push(PyList::new(py, items)?);
        }
        Ok(Some((PyList::new(py, dicts)?, times, matrix, lists)))
    }
}

/// The dict keys, interned once per batch.
struct Keys<'py> {
    event_id: Bound<'py, PyString>,
    prediction_id: Bound<'py, PyString>,
    model_id: Bound<'py, PyString>,
    model_version: Bound<'py, PyString>,
    timestamp: Bound<'py, PyString>,
    prediction: Bound<'py, PyString>,
    attributes: Bound<'py, PyString>,
    label: Bound<'py, PyString>,
    score: Bound<'py, PyString>,
    value: Bound<'py, PyString>,
    probabilities: Bound<'py, PyString>,
}

/// Python objects of one batch's values: one str object per distinct repeated text (model
/// ids, versions, categories, attributes), the dict keys interned.
struct Texts<'py> {
    py: Python<'py>,
    shared: HashMap<Vec<u8>, PyObject>,
    keys: Keys<'py>,
}

impl<'py> Texts<'py> {
    fn new(py: Python<'py>) -> Self {
        let key = |name| PyString::intern(py, name);
        let keys = Keys {
            event_id: key("event_id"),
            prediction_id: key("prediction_id"),
            model_id: key("model_id"),
            model_version: key("model_version"),
            timestamp: key("timestamp"),
            prediction: key("prediction"),
            attributes: key("attributes"),
            label: key("label"),
            score: key("score"),
            value: key("value"),
            probabilities: key("probabilities"),
        };
        Texts {
            py,
            shared: HashMap::default(),
            keys,
        }
    }

    /// A text as a str: checked to be UTF-8 while reading.
    fn text(&self, text: &[u8]) -> PyObject {
        PyString::new(self.py, std::str::from_utf8(text).unwrap_or_default())
            .into_any()
            .unbind()
    }

    /// A text that recurs in the batch, as one str object.
    fn shared(&mut self, text: &[u8]) -> PyObject {
        if let Some(object) = self.shared.get(text) {
            return object.clone_ref(self.py);
        }
        let object = self.text(text);
        self.shared.insert(text.to_vec(), object.clone_ref(self.py));
        object
    }

    fn scalar(&mut self, value: &Scalar<'_>) -> PyResult<PyObject> {
        let py = self.py;
        Ok(match value {
            Scalar::Null => py.None(),
            Scalar::Bool(flag) => PyBool::new(py, *flag).to_owned().into_any().unbind(),
            Scalar::Number(Number::Int(integer)) => integer.into_pyobject(py)?.into_any().unbind(),
            Scalar::Number(Number::Float(float)) => PyFloat::new(py, *float).into_any().unbind(),
            Scalar::Text(text) => self.shared(text),
        })
    }

    fn number(&self, value: Option<f64>) -> PyObject {
        value.map_or_else(
            || self.py.None(),
            |v| PyFloat::new(self.py, v).into_any().unbind(),
        )
    }

    fn event(&mut self, event: &Event<'_>) -> PyResult<Bound<'py, PyDict>> {
        let py = self.py;
        let dict = PyDict::new(py);
        let id = self.text(&event.event_id);
        dict.set_item(&self.keys.event_id, &id)?;
        match &event.prediction_id {
            None => {}
            Some(None) => dict.set_item(&self.keys.prediction_id, py.None())?,
            Some(Some(same)) if *same == event.event_id => {
                dict.set_item(&self.keys.prediction_id, &id)?
            }
            Some(Some(other)) => dict.set_item(&self.keys.prediction_id, self.text(other))?,
        }
        let model = self.shared(&event.model_id);
        dict.set_item(&self.keys.model_id, model)?;
        if let Some(version) = &event.model_version {
            let version = self.shared(version);
            dict.set_item(&self.keys.model_version, version)?;
        }
        dict.set_item(&self.keys.timestamp, PyFloat::new(py, event.time))?;
        if let Some(sent) = &event.prediction {
            let prediction = self.prediction(sent)?;
            dict.set_item(&self.keys.prediction, prediction)?;
        }
        if let Some(entries) = &event.attributes {
            let object = PyDict::new(py);
            for (name, value) in entries {
                object.set_item(self.shared(name), self.scalar(value)?)?;
            }
            dict.set_item(&self.keys.attributes, object)?;
        }
        Ok(dict)
    }

    fn prediction(&mut self, sent: &Prediction<'_>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(self.py);
        if let Some(given) = &sent.label {
            let label = self.scalar(given)?;
            dict.set_item(&self.keys.label, label)?;
        }
        if let Some(given) = sent.score {
            dict.set_item(&self.keys.score, self.number(given))?;
        }
        if let Some(given) = sent.value {
            dict.set_item(&self.keys.value, self.number(given))?;
        }
        match &sent.probabilities {
            None => {}
            Some(None) => dict.set_item(&self.keys.probabilities, self.py.None())?,
            Some(Some(entries)) => {
                let object = PyDict::new(self.py);
                for (class, p) in entries {
                    object.set_item(self.shared(class), PyFloat::new(self.py, p.as_f64()))?;
                }
                dict.set_item(&self.keys.probabilities, object)?;
            }
        }
        Ok(dict)
    }
}

/// Start reading a batch of raw prediction records; returns at once.
///
/// `numeric` and `categorical` are the model's feature names. The records are parsed by
/// up to four threads (one per core) that run without the GIL; the returned
/// [`PendingEvents`] holds the records until they are done.
#[pyfunction]
fn start_events(
    records: Vec<Bound<'_, PyBytes>>,
    numeric: Vec<String>,
    categorical: Vec<String>,
) -> PyResult<PendingEvents> {
    let reader = Reader::new(&numeric, &categorical).map_err(|name| {
        PyValueError::new_err(format!(
            "feature names: {name:?} is given twice; expected distinct names"
        ))
    })?;
    // SAFETY: `PendingEvents` keeps every record (immutable bytes) alive until its chunks
    // are joined: in `result`, or when it is dropped (`chunks` drops before `records`)
    let bytes: Arc<[Record]> = records
        .iter()
        .map(|record| unsafe { Record::new(record.as_bytes()) })
        .collect();
    let chunks = Arc::new(reader).spawn(bytes);
    Ok(PendingEvents {
        chunks: Some(chunks),
        records: records.into_iter().map(Bound::unbind).collect(),
        numeric: numeric.len(),
    })
}

#[pymodule]
fn watchkeeper_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(start_events, module)?)?;
    module.add_class::<PendingEvents>()?;
    Ok(())
}
