//! The reader of one batch: every record's fields (its `features` into columns), or None, in
//! threads that run while the caller waits without the GIL.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;
use std::thread::JoinHandle;

use rustc_hash::FxHashMap as HashMap;

use crate::cursor::Cursor;
use crate::event::{Event, Fields};

const MAX_THREADS: usize = 4; // threads that read one batch (at most one per core)
const MIN_CHUNK: usize = 256; // records per thread, at least

/// Where a configured feature goes: a column of the numeric matrix or a categorical list.
#[derive(Clone, Copy)]
enum Column {
    Numeric(usize),
    Categorical(usize),
}

/// One batch read: its features as columns and the other fields per record, borrowed from its records.
pub(crate) struct Columns<'a> {
    pub(crate) events: Vec<Event<'a>>,
    pub(crate) numeric: Vec<f64>, // row-major (records × numeric features)
    pub(crate) categorical: Vec<Vec<Option<Cow<'a, [u8]>>>>, // per categorical feature, per record
}

/// Reads one batch; None if any record is outside the subset.
pub(crate) struct Reader {
    names: Vec<(Vec<u8>, Column)>, // in the model's order: numeric, then categorical
    columns: HashMap<Vec<u8>, Column>,
    numeric: usize,
    categorical: usize,
}

/// A batch being read in chunks, each on its own thread (or, if the system refused to start
/// that thread, left to be read by [`Chunks::finish`]).
pub(crate) struct Chunks {
    reader: Arc<Reader>,
    records: Arc<[Record]>, // (shared with the threads, each reading its range)
    parts: Vec<(Range<usize>, Option<Thread>)>,
}

/// The thread reading one chunk; its answer as [`Reader::read`]'s.
type Thread = JoinHandle<Option<Columns<'static>>>;

/// A record's bytes, owned by a Python object that outlives the read (see [`Reader::spawn`]).
#[derive(Clone, Copy)]
pub(crate) struct Record(*const u8, usize);

// (the bytes are immutable and kept alive by the caller until the threads are joined)
unsafe impl Send for Record {}
unsafe impl Sync for Record {}

impl Record {
    /// # Safety
    /// The bytes must stay alive and unchanged until every thread reading them is joined.
    pub(crate) unsafe fn new(bytes: &[u8]) -> Self {
        Record(bytes.as_ptr(), bytes.len())
    }

    fn bytes(self) -> &'static [u8] {
        // SAFETY: see `Record::new`
        unsafe { std::slice::from_raw_parts(self.0, self.1) }
    }
}

impl Reader {
    /// The reader of a model's features; Err(the name) if a name is given twice.
    pub(crate) fn new(numeric: &[String], categorical: &[String]) -> Result<Self, String> {
        let names: Vec<(Vec<u8>, Column)> = (numeric.iter().enumerate())
            .map(|(j, name)| (name.as_bytes().to_vec(), Column::Numeric(j)))
            .chain(
                (categorical.iter().enumerate())
                    .map(|(j, name)| (name.as_bytes().to_vec(), Column::Categorical(j))),
            )
            .collect();
        let mut columns: HashMap<Vec<u8>, Column> = HashMap::default();
        for (name, column) in &names {
            if columns.insert(name.clone(), *column).is_some() {
                return Err(String::from_utf8_lossy(name).into_owned());
            }
        }
        Ok(Reader {
            names,
            columns,
            numeric: numeric.len(),
            categorical: categorical.len(),
        })
    }

    /// Start reading the batch in up to [`MAX_THREADS`] chunks, each on a thread of its own,
    /// and return at once.
    pub(crate) fn spawn(self: Arc<Self>, records: Arc<[Record]>) -> Chunks {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let chunks = cores.min(MAX_THREADS).min(records.len() / MIN_CHUNK).max(1);
        let size = records.len().div_ceil(chunks).max(1);
        let parts = (0..records.len())
            .step_by(size)
            .map(|start| {
                let range = start..(start + size).min(records.len());
                let (reader, shared, chunk) =
                    (Arc::clone(&self), Arc::clone(&records), range.clone());
                let handle = std::thread::Builder::new()
                    .name("watchkeeper-read".into())
                    .spawn(move || reader.read_range(&shared, chunk))
                    .ok();
                (range, handle)
            })
            .collect();
        Chunks {
            reader: self,
            records,
            parts,
        }
    }
}

impl Chunks {
    /// Wait for every chunk (reading here the ones no thread was started for) and join them
    /// into the batch's columns; None if any record is outside the subset (or a thread panicked).
    pub(crate) fn finish(mut self) -> Option<Columns<'static>> {
        let parts: Vec<Option<Columns<'static>>> = std::mem::take(&mut self.parts)
            .into_iter()
            .map(|(range, handle)| match handle {
                Some(handle) => handle.join().ok().flatten(),
                None => self.reader.read_range(&self.records, range),
            })
            .collect();
        let n = self.records.len();
        let mut out = Columns {
            events: Vec::with_capacity(n),
            numeric: Vec::with_capacity(n * self.reader.numeric),
            categorical: (0..self.reader.categorical)
                .map(|_| Vec::with_capacity(n))
                .collect(),
        };
        for part in parts {
            let part = part?;
            out.events.extend(part.events);
            out.numeric.extend_from_slice(&part.numeric);
            for (column, values) in out.categorical.iter_mut().zip(part.categorical) {
                column.extend(values);
            }
        }
        Some(out)
    }
}

impl Drop for Chunks {
    /// The threads read the records' bytes: they end before the records may be released.
    fn drop(&mut self) {
        for (_, handle) in self.parts.drain(..) {
            if let Some(handle) = handle {
                let _ = handle.join();
            }
        }
    }
}

impl Reader {
    /// The records of `range` read (see [`Reader::read`]).
    fn read_range(&self, records: &[Record], range: Range<usize>) -> Option<Columns<'static>> {
        self.read(records[range].iter().copied().map(Record::bytes))
    }

    fn read<'a>(&self, records: impl ExactSizeIterator<Item = &'a [u8]>) -> Option<Columns<'a>> {
        let mut out = Columns {
            events: Vec::with_capacity(records.len()),
            numeric: vec![f64::NAN; records.len() * self.numeric],
            categorical: vec![vec![None; records.len()]; self.categorical],
        };
        let mut seen = vec![usize::MAX; self.numeric + self.categorical]; // record that sent each feature
        for (row, bytes) in records.enumerate() {
            let mut cursor = Cursor { bytes, at: 0 };
            let mut found = false;
            let mut fields = Fields::default();
            cursor.members(Cursor::plain_string, |key, cursor| {
                if key == b"features" {
                    if std::mem::replace(&mut found, true) {
                        return None;
                    }
                    self.features(cursor, row, &mut out, &mut seen)
                } else if fields.read(key, cursor)? {
                    Some(())
                } else {
                    cursor.skip_value(1) // (a field the contract does not name: ignored)
                }
            })?;
            cursor.skip_whitespace();
            if !found || cursor.at != bytes.len() {
                return None;
            }
            out.events.push(fields.event()?);
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
        let mut next = 0; // producers usually send the features in one order: try the one after the last first
        cursor.members(Cursor::plain_string, |name, cursor| {
            let column = match self.names.get(next) {
                Some((expected, column)) if expected == name => *column,
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
            Some(())
        })
    }
}
