//! The fields of a prediction event other than its `features`, as the contract takes them.
//!
//! Each is read to the strict subset of the contract described in `lib.rs`; `None` from any
//! function here refuses the batch (the generic decoder then decides every record of it).

use std::borrow::Cow;

use crate::cursor::{Cursor, Number};

const EPOCH_MIN: f64 = -62135596800.0; // 0001-01-01T00:00:00Z, the contract's bounds for epoch seconds
const EPOCH_MAX: f64 = 253402300799.0; // 9999-12-31T23:59:59Z
const EXACT_MICROSECONDS: i64 = 1 << 53; // beyond, a float64 of microseconds could round twice

/// A value of a feature, an attribute or a label: what JSON sent, unconverted.
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Text(Cow<'a, [u8]>),
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or sent (`Some(Some(value))`).
pub(crate) type Sent<T> = Option<Option<T>>;

/// The event's `prediction` object: each field as sent.
#[derive(Default)]
pub(crate) struct Prediction<'a> {
    pub(crate) label: Option<Scalar<'a>>,
    pub(crate) score: Sent<f64>,
    pub(crate) value: Sent<f64>,
    pub(crate) probabilities: Sent<Vec<(Cow<'a, [u8]>, Number)>>,
}

/// Everything of one prediction event but its features (and `metadata`, checked and dropped).
pub(crate) struct Event<'a> {
    pub(crate) event_id: Cow<'a, [u8]>,
    pub(crate) prediction_id: Sent<Cow<'a, [u8]>>,
    pub(crate) model_id: Cow<'a, [u8]>,
    pub(crate) model_version: Option<Cow<'a, [u8]>>,
    pub(crate) time: f64, // epoch seconds
    pub(crate) prediction: Option<Prediction<'a>>,
    pub(crate) attributes: Option<Vec<(Cow<'a, [u8]>, Scalar<'a>)>>,
}

/// The top-level fields of an event, as they are read.
#[derive(Default)]
pub(crate) struct Fields<'a> {
    pub(crate) event_id: Option<Cow<'a, [u8]>>,
    pub(crate) prediction_id: Sent<Cow<'a, [u8]>>,
    pub(crate) model_id: Option<Cow<'a, [u8]>>,
    pub(crate) model_version: Option<Cow<'a, [u8]>>,
    pub(crate) time: Option<f64>,
    pub(crate) prediction: Option<Prediction<'a>>,
    pub(crate) attributes: Option<Vec<(Cow<'a, [u8]>, Scalar<'a>)>>,
    pub(crate) metadata: bool,
}

/// Set a field read once; None (refuse) if it was read before: a key sent twice.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

impl<'a> Fields<'a> {
    /// Read the value of top-level key `key`; false if the key is not one of these fields.
    pub(crate) fn read(&mut self, key: &[u8], cursor: &mut Cursor<'a>) -> Option<bool> {
        match key {
            b"event_id" => once(&mut self.event_id, non_empty(cursor)?)?,
            b"prediction_id" => once(&mut self.prediction_id, nullable(cursor, Cursor::text)?)?,
            b"model_id" => once(&mut self.model_id, non_empty(cursor)?)?,
            b"model_version" => once(&mut self.model_version, cursor.text()?)?,
            b"timestamp" => once(&mut self.time, timestamp(cursor)?)?,
            b"prediction" => once(&mut self.prediction, prediction(cursor)?)?,
            b"attributes" => once(&mut self.attributes, object(cursor, scalar)?)?,
            b"metadata" => {
                if std::mem::replace(&mut self.metadata, true) {
                    return None;
                }
                cursor.members(Cursor::text, |_, cursor| cursor.skip_value(2))?;
            }
            _ => return Some(false),
        }
        Some(true)
    }

    /// The event, if every required field was sent.
    pub(crate) fn event(self) -> Option<Event<'a>> {
        Some(Event {
            event_id: self.event_id?,
            prediction_id: self.prediction_id,
            model_id: self.model_id?,
            model_version: self.model_version,
            time: self.time?,
            prediction: self.prediction,
            attributes: self.attributes,
        })
    }
}

fn non_empty<'a>(cursor: &mut Cursor<'a>) -> Option<Cow<'a, [u8]>> {
    cursor.text().filter(|text| !text.is_empty())
}

/// `null`, or what `read` reads.
fn nullable<'a, T>(
    cursor: &mut Cursor<'a>,
    read: impl FnOnce(&mut Cursor<'a>) -> Option<T>,
) -> Option<Option<T>> {
    if cursor.peek()? == b'n' {
        cursor.literal(b"null")?;
        return Some(None);
    }
    read(cursor).map(Some)
}

/// A scalar: `null`, a boolean, a number or a string (containers refuse).
pub(crate) fn scalar<'a>(cursor: &mut Cursor<'a>) -> Option<Scalar<'a>> {
    Some(match cursor.peek()? {
        b'n' => cursor.literal(b"null").map(|_| Scalar::Null)?,
        b't' => cursor.literal(b"true").map(|_| Scalar::Bool(true))?,
        b'f' => cursor.literal(b"false").map(|_| Scalar::Bool(false))?,
        b'"' => Scalar::Text(cursor.text()?),
        _ => Scalar::Number(cursor.number()?),
    })
}

/// An object's entries in order, each value read by `value` (duplicate keys kept: the last one wins).
fn object<'a, T>(
    cursor: &mut Cursor<'a>,
    mut value: impl FnMut(&mut Cursor<'a>) -> Option<T>,
) -> Option<Vec<(Cow<'a, [u8]>, T)>> {
    let mut entries = Vec::new();
    cursor.members(Cursor::text, |key, cursor| {
        entries.push((key, value(cursor)?));
        Some(())
    })?;
    Some(entries)
}

/// The `prediction` object: `label` (text, int64, boolean or null), `score` (a probability),
/// `value` (a number), `probabilities` ({class: number}); other keys checked and skipped.
fn prediction<'a>(cursor: &mut Cursor<'a>) -> Option<Prediction<'a>> {
    let mut out = Prediction::default();
    cursor.members(Cursor::plain_string, |key, cursor| {
        match key {
            b"label" => match scalar(cursor)? {
                Scalar::Number(Number::Float(_)) => return None,
                label => once(&mut out.label, label)?,
            },
            b"score" => {
                let score = nullable(cursor, |c| c.number().map(Number::as_f64))?;
                if score.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                    return None;
                }
                once(&mut out.score, score)?
            }
            b"value" => once(
                &mut out.value,
                nullable(cursor, |c| c.number().map(Number::as_f64))?,
            )?,
            b"probabilities" => once(
                &mut out.probabilities,
                nullable(cursor, |c| object(c, Cursor::number))?,
            )?,
            _ => cursor.skip_value(2)?,
        }
        Some(())
    })?;
    Some(out)
}

/// The event time in epoch seconds: a number within the contract's bounds, or an RFC 3339
/// date-time of the form `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)` (at most six fraction digits),
/// converted exactly as Python's `datetime.timestamp()` (microseconds over 10^6, correctly
/// rounded); times more than 2^53 µs from 1970 (before 1685, after 2255) refuse.
fn timestamp(cursor: &mut Cursor<'_>) -> Option<f64> {
    if cursor.peek()? != b'"' {
        let seconds = cursor.number()?.as_f64();
        return (EPOCH_MIN..=EPOCH_MAX)
            .contains(&seconds)
            .then_some(seconds);
    }
    let text = cursor.plain_string()?;
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.iter().try_fold(0i64, |value, &d| {
            d.is_ascii_digit().then(|| value * 10 + i64::from(d - b'0'))
        })
    };
    let at = |i: usize, byte: u8| text.get(i) == Some(&byte);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0;
    if at(i, b'.') {
        let count = text[i + 1..]
            .iter()
            .take_while(|d| d.is_ascii_digit())
            .count();
        if !(1..=6).contains(&count) {
            return None;
        }
        micros = digits(i + 1..i + 1 + count)? * 10i64.pow(6 - count as u32);
        i += 1 + count;
    }
    let offset = match text.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (digits(i + 1..i + 3)?, digits(i + 4..i + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            (hours * 3600 + minutes * 60) * if *sign == b'-' { -1 } else { 1 }
        }
        _ => return None,
    };
    let seconds =
        days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset;
    let total = seconds * 1_000_000 + micros;
    (total.abs() <= EXACT_MICROSECONDS).then(|| total as f64 / 1e6)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant, "chrono-Compatible
/// Low-Level Date Algorithms", `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}
