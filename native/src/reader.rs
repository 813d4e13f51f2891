//! The reader of one batch: every record's `features` into columns, or None.

use rustc_hash::FxHashMap as HashMap;

use crate::cursor::Cursor;

const MAX_THREADS: usize = 4; // threads that read one batch (at most one per core)
const MIN_CHUNK: usize = 256; // records per thread, at least

/// Where a configured feature goes: a column of the numeric matrix or a categorical list.
#[derive(Clone, Copy)]
enum Column {
    Numeric(usize),
    Categorical(usize),
}

/// The columns of one batch, borrowed from its records.
pub(crate) struct Columns<'a> {
    pub(crate) numeric: Vec<f64>, // row-major (records × numeric features)
    pub(crate) categorical: Vec<Vec<Option<&'a [u8]>>>, // per categorical feature, per record
}

/// Reads one batch; None if any record is outside the subset.
pub(crate) struct Reader<'n> {
    names: Vec<(&'n [u8], Column)>, // in the model's order: numeric, then categorical
    columns: HashMap<&'n [u8], Column>,
    numeric: usize,
    categorical: usize,
}

impl<'n> Reader<'n> {
    /// The reader of a model's features; Err(the name) if a name is given twice.
    pub(crate) fn new(numeric: &'n [String], categorical: &'n [String]) -> Result<Self, &'n str> {
        let names: Vec<(&[u8], Column)> = (numeric.iter().enumerate())
            .map(|(j, name)| (name.as_bytes(), Column::Numeric(j)))
            .chain(
                (categorical.iter().enumerate())
                    .map(|(j, name)| (name.as_bytes(), Column::Categorical(j))),
            )
            .collect();
        let mut columns: HashMap<&[u8], Column> = HashMap::default();
        for (name, column) in names.iter().copied() {
            if columns.insert(name, column).is_some() {
                return Err(std::str::from_utf8(name).unwrap_or_default());
            }
        }
        Ok(Reader {
            names,
            columns,
            numeric: numeric.len(),
            categorical: categorical.len(),
        })
    }

    /// The batch read in up to [`MAX_THREADS`] chunks at once (it is parsed outside the GIL, so
    /// the worker's other threads go on meanwhile); None if any chunk has a record outside the subset.
    pub(crate) fn read_chunks<'a>(&self, records: &[&'a [u8]]) -> Option<Columns<'a>> {
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
