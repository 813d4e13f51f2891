//! Prediction events' features straight into columns, with the GIL released.
//!
//! Stage 1 of watchkeeper spends over half of its time decoding each event's `features`
//! object into Python objects, reading them back out by name and freeing them. This module
//! reads the `features` of a whole batch of raw JSON records into a float64 matrix (the
//! model's numeric features) and one list per categorical feature, without a Python object
//! per value, and without holding the GIL while it parses.
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
//! * a categorical feature is `null` or a string without escapes or control characters.
//!
//! A feature not sent or sent as `null` is NaN (numeric) or `None` (categorical).

use numpy::{PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};
use rustc_hash::FxHashMap as HashMap;

const MAX_DEPTH: usize = 64; // deeper values outside `features` are left to the generic decoder
const MAX_INTEGER_DIGITS: usize = 18; // every such integer is an int64
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]; // every one exact in a double
const MAX_THREADS: usize = 4; // threads that read one batch (at most one per core)
const MIN_CHUNK: usize = 256; // records per thread, at least

/// Where a configured feature goes: a column of the numeric matrix or a categorical list.
#[derive(Clone, Copy)]
enum Column {
    Numeric(usize),
    Categorical(usize),
}

/// The columns of one batch, borrowed from its records.
struct Columns<'a> {
    numeric: Vec<f64>,                       // row-major (records × numeric features)
    categorical: Vec<Vec<Option<&'a [u8]>>>, // per categorical feature, per record
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at.checked_add(word.len())?;
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// The contents of a string written without escapes (`checked`: nor control characters).
    fn plain_string(&mut self, checked: bool) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let (bytes, start) = (self.bytes, self.at);
        let end = start + memchr::memchr2(b'"', b'\\', &bytes[start..])?;
        if bytes[end] != b'"' {
            return None;
        }
        let text = &bytes[start..end];
        if checked && text.iter().fold(false, |control, &b| control | (b < 0x20)) {
            return None;
        }
        self.at = end + 1;
        Some(text)
    }

    /// Past any string (escapes allowed: the generic decoder checks what they say).
    fn skip_string(&mut self) -> Option<()> {
        self.expect(b'"')?;
        let bytes = self.bytes;
        let mut at = self.at;
        loop {
            at += memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
            if bytes[at] == b'"' {
                self.at = at + 1;
                return Some(());
            }
            at += 2; // (past the escaped character)
        }
    }

    fn digits(&mut self) -> usize {
        let (bytes, start) = (self.bytes, self.at);
        let mut end = start;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
        }
        self.at = end;
        end - start
    }

    /// A JSON number (RFC 8259 grammar): its text and whether it is an integer.
    fn number(&mut self) -> Option<(&'a [u8], bool)> {
        self.skip_whitespace();
        let start = self.at;
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match self.bytes.get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        let mut integer = true;
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            integer = false;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some((&self.bytes[start..self.at], integer))
    }

    /// A numeric feature's value: NaN for null.
    ///
    /// One pass checks the number's grammar and gathers its decimal digits. An integer (of at
    /// most 18 digits) is converted exactly as Python's `float(int)`; a float whose digits fit in
    /// 53 bits with a power of ten up to 22 is one correctly rounded multiplication or division
    /// of two exact doubles (Clinger's fast path: W. D. Clinger, "How to read floating point
    /// numbers accurately", PLDI 1990); any other float goes to Rust's correctly rounded parser.
    fn numeric_value(&mut self) -> Option<f64> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(f64::NAN);
        }
        let (bytes, start) = (self.bytes, self.at);
        let mut at = start;
        let negative = bytes.get(at) == Some(&b'-');
        at += usize::from(negative);
        let (mut mantissa, mut digits) = (0u64, 0usize); // (wraps past 19 digits: then unused)
        let mut gather = |at: &mut usize| {
            let first = *at;
            while let Some(digit @ b'0'..=b'9') = bytes.get(*at).copied() {
                mantissa = mantissa
                    .wrapping_mul(10)
                    .wrapping_add(u64::from(digit - b'0'));
                *at += 1;
            }
            digits += *at - first;
            *at - first
        };
        match bytes.get(at)? {
            b'0' => at += 1,
            b'1'..=b'9' => {
                gather(&mut at);
            }
            _ => return None,
        }
        let mut exponent: i64 = 0;
        let mut integer = true;
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            integer = false;
            let fraction = gather(&mut at);
            if fraction == 0 {
                return None;
            }
            exponent -= fraction as i64;
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            at += 1;
            integer = false;
            let sign = match bytes.get(at) {
                Some(b'-') => -1,
                _ => 1,
            };
            at += usize::from(matches!(bytes.get(at), Some(b'+' | b'-')));
            let first = at;
            let mut power: i64 = 0;
            while let Some(digit @ b'0'..=b'9') = bytes.get(at).copied() {
                power = (power * 10 + i64::from(digit - b'0')).min(1 << 20);
                at += 1;
            }
            if at == first {
                return None;
            }
            exponent += sign * power;
        }
        self.at = at;
        if integer {
            if digits > MAX_INTEGER_DIGITS {
                return None;
            }
            let value = mantissa as i64; // (< 10^18: exact)
            return Some((if negative { -value } else { value }) as f64); // (-0 is the int 0)
        }
        if digits <= 19 && mantissa <= 1 << 53 && exponent.abs() <= 22 {
            let exact = mantissa as f64;
            let power = POWERS_OF_TEN[exponent.unsigned_abs() as usize];
            let value = if exponent < 0 {
                exact / power
            } else {
                exact * power
            };
            return Some(if negative { -value } else { value });
        }
        // SAFETY: the grammar checked above admits ASCII digits, '-', '+', '.', 'e' and 'E' only
        let text = unsafe { std::str::from_utf8_unchecked(&bytes[start..at]) };
        let value = text.parse::<f64>().ok()?;
        value.is_finite().then_some(value)
    }

    /// A categorical feature's value: None for null.
    fn categorical_value(&mut self) -> Option<Option<&'a [u8]>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        let text = self.plain_string(true)?;
        std::str::from_utf8(text).ok()?;
        Some(Some(text))
    }

    /// Past an object (`keyed`) or an array, its opening byte next; `close` is its closing byte.
    fn skip_container(&mut self, close: u8, depth: usize, keyed: bool) -> Option<()> {
        self.at += 1;
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            if keyed {
                self.skip_string()?;
                self.expect(b':')?;
            }
            self.skip_value(depth + 1)?;
            match self.peek()? {
                b',' => self.at += 1,
                byte if byte == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Past any JSON value.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => self.skip_container(b'}', depth, true),
            b'[' => self.skip_container(b']', depth, false),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(|_| ()),
        }
    }
}

/// Reads one batch; None if any record is outside the subset.
struct Reader<'n> {
    names: Vec<(&'n [u8], Column)>, // in the model's order: numeric, then categorical
    columns: HashMap<&'n [u8], Column>,
    numeric: usize,
    categorical: usize,
}

impl<'n> Reader<'n> {
    /// The batch read in up to [`MAX_THREADS`] chunks at once (it is parsed outside the GIL, so
    /// the worker's other threads go on meanwhile); None if any chunk has a record outside the subset.
    fn read_chunks<'a>(&self, records: &[&'a [u8]]) -> Option<Columns<'a>> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let chunks = cores.min(MAX_THREADS).min(records.len() / MIN_CHUNK).max(1);
        if chunks == 1 {
            return self.read(records);
        }
        let size = records.len().div_ceil(chunks);
        let parts: Vec<Option<Columns<'a>>> = std::thread::scope(|scope| {
            // (a thread the system refuses to start: that chunk is read here, after the others start)
            let handles: Vec<_> = records
                .chunks(size)
                .map(|chunk| {
                    (
                        chunk,
                        std::thread::Builder::new().spawn_scoped(scope, || self.read(chunk)),
                    )
                })
                .collect();
            handles
                .into_iter()
                .map(|(chunk, handle)| match handle {
                    Ok(handle) => handle.join().ok().flatten(),
                    Err(_) => self.read(chunk),
                })
                .collect()
        });
        let mut out = Columns {
            numeric: Vec::with_capacity(records.len() * self.numeric),
            categorical: vec![],
        };
        out.categorical = (0..self.categorical)
            .map(|_| Vec::with_capacity(records.len()))
            .collect();
        for part in parts {
            let part = part?;
            out.numeric.extend_from_slice(&part.numeric);
            for (column, values) in out.categorical.iter_mut().zip(part.categorical) {
                column.extend(values);
            }
        }
        Some(out)
    }

    fn read<'a>(&self, records: &[&'a [u8]]) -> Option<Columns<'a>> {
        let mut out = Columns {
            numeric: vec![f64::NAN; records.len() * self.numeric],
            categorical: vec![vec![None; records.len()]; self.categorical],
        };
        let mut seen = vec![usize::MAX; self.numeric + self.categorical]; // record that sent each feature
        for (row, bytes) in records.iter().enumerate() {
            let mut cursor = Cursor { bytes, at: 0 };
            cursor.expect(b'{')?;
            let mut found = false;
            if cursor.peek()? != b'}' {
                loop {
                    let key = cursor.plain_string(false)?;
                    cursor.expect(b':')?;
                    if key == b"features" {
                        if found {
                            return None;
                        }
                        found = true;
                        self.features(&mut cursor, row, &mut out, &mut seen)?;
                    } else {
                        cursor.skip_value(1)?;
                    }
                    match cursor.peek()? {
                        b',' => cursor.at += 1,
                        b'}' => break,
                        _ => return None,
                    }
                }
            }
            cursor.at += 1;
            cursor.skip_whitespace();
            if !found || cursor.at != bytes.len() {
                return None;
            }
        }
        Some(out)
    }

    fn features<'a>(
        &self,
        cursor: &mut Cursor<'a>,
        row: usize,
        out: &mut Columns<'a>,
        seen: &mut [usize],
    ) -> Option<()> {
        cursor.expect(b'{')?;
        if cursor.peek()? == b'}' {
            cursor.at += 1;
            return Some(());
        }
        let mut next = 0; // producers usually send the features in one order: try the one after the last first
        loop {
            let name = cursor.plain_string(false)?;
            cursor.expect(b':')?;
            let column = match self.names.get(next) {
                Some(&(expected, column)) if expected == name => column,
                _ => *self.columns.get(name)?,
            };
            let slot = match column {
                Column::Numeric(j) => j,
                Column::Categorical(j) => self.numeric + j,
            };
            next = slot + 1;
            if seen[slot] == row {
                return None; // (a name sent twice)
            }
            seen[slot] = row;
            match column {
                Column::Numeric(j) => {
                    out.numeric[row * self.numeric + j] = cursor.numeric_value()?
                }
                Column::Categorical(j) => out.categorical[j][row] = cursor.categorical_value()?,
            }
            match cursor.peek()? {
                b',' => cursor.at += 1,
                b'}' => {
                    cursor.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// Read the `features` of a batch of raw prediction records into columns.
///
/// `numeric` and `categorical` are the model's feature names. Returns the (records ×
/// numeric) float64 matrix (NaN: not sent or null) and, per categorical feature, the list
/// of its values (None: not sent or null); or None if any record is outside the subset
/// this reader takes (see the module's documentation), for the caller's generic path.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn read_features<'py>(
    py: Python<'py>,
    records: Vec<Bound<'py, PyBytes>>,
    numeric: Vec<String>,
    categorical: Vec<String>,
) -> PyResult<Option<(Bound<'py, PyArray2<f64>>, Vec<Bound<'py, PyList>>)>> {
    let names: Vec<(&[u8], Column)> = (numeric.iter().enumerate())
        .map(|(j, name)| (name.as_bytes(), Column::Numeric(j)))
        .chain(
            categorical
                .iter()
                .enumerate()
                .map(|(j, name)| (name.as_bytes(), Column::Categorical(j))),
        )
        .collect();
    let columns: HashMap<&[u8], Column> = names.iter().copied().collect();
    if columns.len() != numeric.len() + categorical.len() {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "feature names: a name is given twice; expected distinct names",
        ));
    }
    let reader = Reader {
        names,
        columns,
        numeric: numeric.len(),
        categorical: categorical.len(),
    };
    let bytes: Vec<&[u8]> = records.iter().map(|record| record.as_bytes()).collect();
    let Some(read) = py.allow_threads(|| {
        // (a bug here must not stop the worker: the generic decoder then reads the batch)
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.read_chunks(&bytes)))
            .ok()
            .flatten()
    }) else {
        return Ok(None);
    };
    let matrix = PyArray1::from_vec(py, read.numeric).reshape([records.len(), numeric.len()])?;
    let mut lists = Vec::with_capacity(categorical.len());
    for values in read.categorical {
        let mut texts: HashMap<&[u8], PyObject> = HashMap::default(); // one str object per distinct value
        let mut items: Vec<PyObject> = Vec::with_capacity(values.len());
        for value in values {
            items.push(match value {
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

#[pymodule]
fn watchkeeper_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(read_features, module)?)?;
    Ok(())
}
