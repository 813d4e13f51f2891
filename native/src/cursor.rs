//! A cursor over one raw JSON record: the grammar the event reader checks, and the values it reads.
//!
//! Everything it passes over is checked at least as strictly as the generic decoder checks it
//! (strings valid UTF-8 with valid escapes, numbers that float64 or int64 carry), since no other
//! decoder looks at a record the reader takes.

use std::borrow::Cow;

const MAX_INTEGER_DIGITS: usize = 18; // every such integer is an int64
const MAX_DEPTH: usize = 64; // deeper values outside `features` are left to the generic decoder
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]; // every one exact in a double

/// A JSON number as the contracts take it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// As a float64: an integer as Python's `float(int)` converts it (exact below 2^53).
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Number::Int(value) => value as f64,
            Number::Float(value) => value,
        }
    }
}

pub(crate) struct Cursor<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.at).copied()
    }

    pub(crate) fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    pub(crate) fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at.checked_add(word.len())?;
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// The contents of a string written without escapes.
    pub(crate) fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let (bytes, start) = (self.bytes, self.at);
        let end = start + memchr::memchr2(b'"', b'\\', &bytes[start..])?;
        if bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        Some(&bytes[start..end])
    }

    /// A string's text, as UTF-8: borrowed if written without escapes, else with its escapes
    /// decoded as JSON defines them (a surrogate pair as its one character). None for a raw
    /// control character, invalid UTF-8, an unknown escape or a lone surrogate, which the
    /// generic decoder rejects (so it decides the batch).
    pub(crate) fn text(&mut self) -> Option<Cow<'a, [u8]>> {
        self.expect(b'"')?;
        let bytes = self.bytes;
        let (mut at, mut out) = (self.at, Vec::new());
        loop {
            let next = at + memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
            let raw = &bytes[at..next];
            if raw.iter().fold(false, |control, &b| control | (b < 0x20)) {
                return None;
            }
            if bytes[next] == b'"' && at == self.at {
                // (no escape before the closing quote: the text as written)
                std::str::from_utf8(raw).ok()?;
                self.at = next + 1;
                return Some(Cow::Borrowed(raw));
            }
            out.extend_from_slice(raw);
            if bytes[next] == b'"' {
                std::str::from_utf8(&out).ok()?;
                self.at = next + 1;
                return Some(Cow::Owned(out));
            }
            at = next + 2;
            match *bytes.get(next + 1)? {
                b'"' => out.push(b'"'),
                b'\\' => out.push(b'\\'),
                b'/' => out.push(b'/'),
                b'b' => out.push(0x08),
                b'f' => out.push(0x0c),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'u' => {
                    let unit = hex4(bytes.get(at..at + 4)?)?;
                    at += 4;
                    let code = match unit {
                        0xD800..=0xDBFF => {
                            // a high surrogate: only with a low one after it
                            if bytes.get(at..at + 2)? != b"\\u" {
                                return None;
                            }
                            let low = hex4(bytes.get(at + 2..at + 6)?)?;
                            if !(0xDC00..=0xDFFF).contains(&low) {
                                return None;
                            }
                            at += 6;
                            0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                        }
                        0xDC00..=0xDFFF => return None,
                        _ => unit,
                    };
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(char::from_u32(code)?.encode_utf8(&mut utf8).as_bytes());
                }
                _ => return None,
            }
        }
    }

    /// A numeric feature's value: NaN for null.
    pub(crate) fn numeric_value(&mut self) -> Option<f64> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(f64::NAN);
        }
        Some(self.number()?.as_f64())
    }

    /// A JSON number (RFC 8259 grammar): an integer of at most 18 digits (exactly an int64), or a
    /// finite float (None for anything else: the generic decoder decides those).
    ///
    /// One pass checks the number's grammar and gathers its decimal digits. An integer (of at
    /// most 18 digits) is converted exactly as Python's `float(int)`; a float whose digits fit in
    /// 53 bits with a power of ten up to 22 is one correctly rounded multiplication or division
    /// of two exact doubles (Clinger's fast path: W. D. Clinger, "How to read floating point
    /// numbers accurately", PLDI 1990); any other float goes to Rust's correctly rounded parser.
    pub(crate) fn number(&mut self) -> Option<Number> {
        self.skip_whitespace();
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
            return Some(Number::Int(if negative { -value } else { value })); // (-0 is the int 0)
        }
        if digits <= 19 && mantissa <= 1 << 53 && exponent.abs() <= 22 {
            let exact = mantissa as f64;
            let power = POWERS_OF_TEN[exponent.unsigned_abs() as usize];
            let value = if exponent < 0 {
                exact / power
            } else {
                exact * power
            };
            return Some(Number::Float(if negative { -value } else { value }));
        }
        // SAFETY: the grammar checked above admits ASCII digits, '-', '+', '.', 'e' and 'E' only
        let text = unsafe { std::str::from_utf8_unchecked(&bytes[start..at]) };
        let value = text.parse::<f64>().ok()?;
        value.is_finite().then_some(Number::Float(value))
    }

    /// A categorical feature's value: None for null.
    pub(crate) fn categorical_value(&mut self) -> Option<Option<Cow<'a, [u8]>>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        self.text().map(Some)
    }

    /// Through an object, its opening brace next: each member's key is read by `key`, then its
    /// value by `member` (given the key, the cursor past the colon).
    pub(crate) fn members<K>(
        &mut self,
        mut key: impl FnMut(&mut Self) -> Option<K>,
        mut member: impl FnMut(K, &mut Self) -> Option<()>,
    ) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let name = key(self)?;
            self.expect(b':')?;
            member(name, self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Past an array, its opening bracket next.
    fn skip_array(&mut self, depth: usize) -> Option<()> {
        self.expect(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.skip_value(depth + 1)?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Past any JSON value, checked (see the module's documentation).
    pub(crate) fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.text().map(|_| ()),
            b'{' => self.members(Cursor::text, |_, cursor| cursor.skip_value(depth + 1)),
            b'[' => self.skip_array(depth),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(|_| ()),
        }
    }
}

/// The value of four hexadecimal digits (either case), as in a `\uXXXX` escape.
fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |value, &digit| {
        Some(value << 4 | char::from(digit).to_digit(16)?)
    })
}
