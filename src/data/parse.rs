//! Parsing of delimited text lines into typed values. The fast path splits on
//! a single-byte delimiter with memchr; a line holding a double quote takes the
//! RFC 4180 path (quoted fields, `""` escapes). Every failure names the field.
use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use super::schema::{ColumnKind, TimeFormat};

/// One parsed field of a row, before it is appended to a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Missing,
    Label(i8),
    Int(i64),
    Float(f64),
    Time(i64),
    Str(Cow<'a, str>),
}

/// Split `line` on `delim` into `out` (cleared first). Quoted fields are
/// unquoted when the line contains `"`.
pub fn split_fields<'a>(
    line: &'a [u8],
    delim: u8,
    out: &mut Vec<Cow<'a, [u8]>>,
) -> Result<(), String> {
    out.clear();
    if memchr::memchr(b'"', line).is_none() {
        let mut start = 0;
        for pos in memchr::memchr_iter(delim, line) {
            out.push(Cow::Borrowed(&line[start..pos]));
            start = pos + 1;
        }
        out.push(Cow::Borrowed(&line[start..]));
        return Ok(());
    }
    // RFC 4180: a field that starts with a quote runs to the matching quote;
    // `""` inside it is one quote.
    let mut i = 0;
    loop {
        if line.get(i) == Some(&b'"') {
            let mut field = Vec::new();
            i += 1;
            loop {
                match line.get(i) {
                    None => return Err("unterminated quoted field".into()),
                    Some(b'"') if line.get(i + 1) == Some(&b'"') => {
                        field.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&b) => {
                        field.push(b);
                        i += 1;
                    }
                }
            }
            out.push(Cow::Owned(field));
            match line.get(i) {
                None => return Ok(()),
                Some(&b) if b == delim => i += 1,
                Some(_) => return Err("text after a closing quote".into()),
            }
        } else {
            let end = memchr::memchr(delim, &line[i..]).map(|p| i + p);
            match end {
                Some(e) => {
                    out.push(Cow::Borrowed(&line[i..e]));
                    i = e + 1;
                }
                None => {
                    out.push(Cow::Borrowed(&line[i..]));
                    return Ok(());
                }
            }
        }
    }
}

fn as_str(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|_| "is not valid UTF-8".to_string())
}

/// An integer field: optional sign and digits; a float literal with a zero
/// fraction (`260.0`) is accepted, as some exports write integers that way.
pub fn parse_int(raw: &[u8]) -> Result<i64, String> {
    let (neg, digits) = match raw.first() {
        Some(b'-') => (true, &raw[1..]),
        Some(b'+') => (false, &raw[1..]),
        _ => (false, raw),
    };
    if !digits.is_empty() && digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit) {
        let mut v: i64 = 0;
        for d in digits {
            v = v * 10 + (d - b'0') as i64;
        }
        return Ok(if neg { -v } else { v });
    }
    let text = as_str(raw)?;
    if let Ok(v) = text.parse::<i64>() {
        return Ok(v);
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(format!("`{}` is not an integer", truncate(text))),
    }
}

pub fn parse_float(raw: &[u8]) -> Result<f64, String> {
    let text = as_str(raw)?;
    match text.trim().parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(f),
        Ok(_) => Err(format!("`{}` is not a finite number", truncate(text))),
        Err(_) => Err(format!("`{}` is not a number", truncate(text))),
    }
}

pub fn parse_label(raw: &[u8]) -> Result<i8, String> {
    match raw {
        b"0" => Ok(0),
        b"1" => Ok(1),
        other => Err(format!(
            "label must be 0 or 1, got `{}`",
            truncate(&String::from_utf8_lossy(other))
        )),
    }
}

/// Parse a timestamp into seconds since the epoch (UTC).
pub fn parse_time(raw: &[u8], format: TimeFormat) -> Result<i64, String> {
    let text = as_str(raw)?.trim();
    let bad = || format!("`{}` is not a {:?} timestamp", truncate(text), format);
    match format {
        TimeFormat::Unix => parse_int(text.as_bytes()).map_err(|_| bad()),
        TimeFormat::UnixMs => parse_int(text.as_bytes())
            .map(|ms| ms.div_euclid(1000))
            .map_err(|_| bad()),
        TimeFormat::Yymmddhh => {
            let b = text.as_bytes();
            if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
                return Err(bad());
            }
            let n = |i: usize| ((b[i] - b'0') * 10 + (b[i + 1] - b'0')) as u32;
            let date = NaiveDate::from_ymd_opt(2000 + n(0) as i32, n(2), n(4)).ok_or_else(bad)?;
            let dt = date.and_hms_opt(n(6), 0, 0).ok_or_else(bad)?;
            Ok(dt.and_utc().timestamp())
        }
        TimeFormat::Rfc3339 => parse_rfc3339(text).ok_or_else(bad),
    }
}

/// RFC 3339 with an offset, or a naive `YYYY-MM-DD[T ]HH:MM:SS` read as UTC.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.timestamp());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(text, fmt) {
            return Some(dt.and_utc().timestamp());
        }
    }
    None
}

/// Parse one raw field of the given kind. Empty is missing for every kind but
/// the label.
pub fn parse_value<'a>(
    raw: Cow<'a, [u8]>,
    kind: ColumnKind,
    format: Option<TimeFormat>,
) -> Result<Value<'a>, String> {
    if kind == ColumnKind::Label {
        return parse_label(&raw).map(Value::Label);
    }
    if raw.is_empty() {
        return Ok(Value::Missing);
    }
    Ok(match kind {
        ColumnKind::Integer => Value::Int(parse_int(&raw)?),
        ColumnKind::Float | ColumnKind::Truth => Value::Float(parse_float(&raw)?),
        ColumnKind::Timestamp => Value::Time(parse_time(&raw, format.unwrap_or_default())?),
        ColumnKind::Categorical => Value::Str(match raw {
            Cow::Borrowed(b) => Cow::Borrowed(as_str(b)?),
            Cow::Owned(v) => {
                Cow::Owned(String::from_utf8(v).map_err(|_| "is not valid UTF-8".to_string())?)
            }
        }),
        ColumnKind::Label | ColumnKind::Skip => Value::Missing,
    })
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Hour of day (UTC) and weekday (0 = Monday) of a unix time.
pub fn hour_weekday(t: i64) -> (u32, u32) {
    let days = t.div_euclid(86_400);
    let hod = (t.rem_euclid(86_400) / 3600) as u32;
    // 1970-01-01 was a Thursday (weekday 3).
    let wd = (days + 3).rem_euclid(7) as u32;
    (hod, wd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekday_and_hour() {
        // 2026-01-05T00:00:00Z is a Monday.
        assert_eq!(hour_weekday(1_767_571_200), (0, 0));
        assert_eq!(
            hour_weekday(1_767_571_200 + 6 * 86_400 + 13 * 3600),
            (13, 6)
        );
    }

    fn fields(line: &str, d: u8) -> Vec<String> {
        let mut out = Vec::new();
        split_fields(line.as_bytes(), d, &mut out).unwrap();
        out.iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn splits_plain_and_quoted() {
        assert_eq!(fields("a\t\tb", b'\t'), ["a", "", "b"]);
        assert_eq!(fields("a,", b','), ["a", ""]);
        assert_eq!(
            fields(r#""x,y",2,"say ""hi""""#, b','),
            ["x,y", "2", r#"say "hi""#]
        );
        let mut out = Vec::new();
        assert!(split_fields(br#""open,1"#, b',', &mut out).is_err());
        assert!(split_fields(br#""a"b,1"#, b',', &mut out).is_err());
    }

    #[test]
    fn integers() {
        assert_eq!(parse_int(b"42"), Ok(42));
        assert_eq!(parse_int(b"-3"), Ok(-3));
        assert_eq!(parse_int(b"260.0"), Ok(260));
        assert_eq!(parse_int(b"9223372036854775807"), Ok(i64::MAX));
        assert!(parse_int(b"2.5").unwrap_err().contains("not an integer"));
        assert!(parse_int(b"abc").is_err());
        assert!(parse_int(b"-").is_err());
    }

    #[test]
    fn labels_and_floats() {
        assert_eq!(parse_label(b"1"), Ok(1));
        assert!(parse_label(b"2").unwrap_err().contains("0 or 1"));
        assert!(parse_label(b"").is_err());
        assert_eq!(parse_float(b"1e-3"), Ok(0.001));
        assert!(parse_float(b"inf").unwrap_err().contains("finite"));
        assert!(parse_float(b"NaN").is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_time(b"14102100", TimeFormat::Yymmddhh),
            Ok(1_413_849_600)
        );
        assert_eq!(
            parse_time(b"14103023", TimeFormat::Yymmddhh),
            Ok(1_414_710_000)
        );
        assert!(parse_time(b"14133100", TimeFormat::Yymmddhh).is_err());
        assert_eq!(
            parse_time(b"2026-11-29T10:00:00Z", TimeFormat::Rfc3339),
            Ok(1_795_946_400)
        );
        assert_eq!(
            parse_time(b"2026-11-29 10:00:00", TimeFormat::Rfc3339),
            Ok(1_795_946_400)
        );
        assert_eq!(
            parse_time(b"1795946400123", TimeFormat::UnixMs),
            Ok(1_795_946_400)
        );
    }
}
