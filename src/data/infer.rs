//! `ctr-dl schema infer`: a dataset schema proposed from a CSV/TSV file's
//! first lines, with the reason for each guess, so a new data set converts
//! without writing the schema by hand.
//!
//! The rules, in order, on up to `rows` lines (plain or gzip):
//! - the delimiter is the one of `,` tab `;` `|` that splits the most lines
//!   into the same number (more than one) of fields;
//! - lines with fewer fields make the schema `ragged` (absent trailing
//!   fields are missing values);
//! - there is a header when the first line's fields are distinct names and
//!   none of them parses as a number while some column's values do;
//! - the label is `--label`, else the first column named `click`, `clicked`,
//!   `label`, `target` or `y` whose values are all 0 or 1, else the first
//!   column whose values are all 0 or 1;
//! - a column named `id` whose values are nearly all distinct is a row id:
//!   `skip`;
//! - times: 8-digit `YYMMDDHH` values in a column named like a time
//!   (`hour`, `time`, `date`, `ts`), unix seconds or milliseconds there, or
//!   RFC 3339 text anywhere;
//! - other integers are `integer`, other numbers `float`, the rest
//!   `categorical` (and so is a column with no value in the sample).
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::parse::{parse_float, parse_int, parse_rfc3339, split_fields};
use super::schema::{ColumnEntry, ColumnKind, DatasetSchema, SchemaFile, TimeFormat};
use crate::error::{Error, Result};

/// A proposed schema and why each column got its type.
#[derive(Debug, Clone)]
pub struct Inferred {
    pub schema: SchemaFile,
    /// One line a column: `name: type (reason)`, then the file-level guesses.
    pub reasons: Vec<String>,
    pub lines_read: usize,
}

impl Inferred {
    /// The schema as a TOML file, its reasons as comments at the top.
    pub fn to_toml(&self) -> Result<String> {
        let body = toml::to_string(&self.schema)
            .map_err(|e| Error::Invalid(format!("the inferred schema: {e}")))?;
        let mut out = format!(
            "# Inferred by `ctr-dl schema infer` from {} line(s); check it, then\n\
             # `ctr-dl convert --format csv --schema THIS_FILE --input ... --out ...`.\n",
            self.lines_read
        );
        for r in &self.reasons {
            out += &format!("#   {r}\n");
        }
        Ok(out + "\n" + &body)
    }
}

/// Propose a schema named `name` for `path` from its first `rows` lines.
pub fn infer(path: &Path, name: &str, label: Option<&str>, rows: usize) -> Result<Inferred> {
    let reader = super::io::open_input(path, Arc::new(AtomicU64::new(0)))?;
    let mut lines = Vec::new();
    for line in BufReader::new(reader).split(b'\n').take(rows.max(2) + 1) {
        let mut line = line.map_err(|e| Error::io(path, e))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    if lines.len() < 2 {
        return Err(Error::Invalid(format!(
            "{}: fewer than two lines: nothing to infer a schema from",
            path.display()
        )));
    }
    let (delimiter, width) = pick_delimiter(&lines).ok_or_else(|| {
        Error::Invalid(format!(
            "{}: no delimiter (`,` tab `;` `|`) splits its lines into the same number of fields",
            path.display()
        ))
    })?;
    let split = |line: &[u8]| -> Vec<String> {
        let mut f = Vec::new();
        match split_fields(line, delimiter, &mut f) {
            Ok(()) => f
                .iter()
                .map(|x| String::from_utf8_lossy(x).trim().to_string())
                .collect(),
            Err(_) => Vec::new(),
        }
    };
    let first = split(&lines[0]);
    // Lines short of fields: absent trailing fields are missing values.
    let short = lines.iter().filter(|l| split(l).len() < width).count();
    let body: Vec<Vec<String>> = lines[1..]
        .iter()
        .map(|l| split(l))
        .filter(|f| f.len() <= width && !f.is_empty())
        .map(|mut f| {
            f.resize(width, String::new());
            f
        })
        .collect();
    let numeric = |s: &str| parse_float(s.as_bytes()).is_ok();
    let distinct_names = {
        let mut n = first.clone();
        n.sort();
        n.dedup();
        n.len() == first.len()
    };
    let some_numeric_column = (0..width).any(|c| body.iter().any(|r| numeric(&r[c])));
    let header = first.len() == width
        && distinct_names
        && first.iter().all(|f| !f.is_empty() && !numeric(f))
        && some_numeric_column;
    let mut reasons = vec![format!(
        "delimiter {:?}: it splits the lines into {width} fields",
        delimiter as char
    )];
    if short > 0 {
        reasons.push(format!(
            "ragged: {short} line(s) have fewer fields; their absent trailing fields are missing"
        ));
    }
    let (names, rows): (Vec<String>, Vec<Vec<String>>) = if header {
        reasons.push("header: the first line is distinct names, none a number".into());
        (first, body)
    } else {
        reasons
            .push("no header: the first line holds values; columns are named c1, c2, ...".into());
        let mut first = first;
        first.resize(width, String::new());
        let mut all = vec![first];
        all.extend(body);
        ((1..=width).map(|i| format!("c{i}")).collect(), all)
    };
    let values = |c: usize| {
        rows.iter()
            .map(move |r| r[c].as_str())
            .filter(|v| !v.is_empty())
    };
    let binary = |c: usize| values(c).next().is_some() && values(c).all(|v| v == "0" || v == "1");

    let label_col = match label {
        Some(l) => names.iter().position(|n| n == l).ok_or_else(|| {
            Error::Invalid(format!(
                "--label {l}: no such column (the columns: {})",
                names.join(", ")
            ))
        })?,
        None => {
            let named = ["click", "clicked", "label", "target", "y"];
            (0..width)
                .find(|&c| named.contains(&names[c].to_lowercase().as_str()) && binary(c))
                .or_else(|| (0..width).find(|&c| binary(c)))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: no column holds only 0 and 1 in the first {} rows: name the label \
                         with --label",
                        path.display(),
                        rows.len()
                    ))
                })?
        }
    };
    let mut columns = Vec::new();
    for (c, name) in names.iter().enumerate() {
        let (kind, format, why) = if c == label_col {
            (ColumnKind::Label, None, "the label".to_string())
        } else {
            guess(name, values(c).collect(), rows.len())
        };
        reasons.push(format!(
            "{name}: {}{} ({why})",
            snake(kind),
            format.map_or(String::new(), |f| format!(" {}", snake(f)))
        ));
        columns.push(ColumnEntry {
            name: Some(name.clone()),
            prefix: None,
            count: None,
            start: None,
            kind,
            format,
        });
    }
    let schema = SchemaFile {
        name: name.to_string(),
        delimiter: (delimiter as char).to_string(),
        header,
        ragged: short > 0,
        columns,
    };
    // What is proposed must read back as a schema.
    let inferred = Inferred {
        schema,
        reasons,
        lines_read: lines.len(),
    };
    DatasetSchema::parse(&inferred.to_toml()?, path)?;
    Ok(inferred)
}

/// The delimiter that splits the most lines into one field count (> 1).
fn pick_delimiter(lines: &[Vec<u8>]) -> Option<(u8, usize)> {
    let mut best: Option<(usize, u8, usize)> = None;
    for d in [b',', b'\t', b';', b'|'] {
        let mut counts = std::collections::HashMap::<usize, usize>::new();
        let mut f = Vec::new();
        for l in lines {
            if split_fields(l, d, &mut f).is_ok() {
                *counts.entry(f.len()).or_default() += 1;
            }
        }
        if let Some((&width, &n)) = counts
            .iter()
            .filter(|(w, _)| **w > 1)
            .max_by_key(|(_, n)| **n)
        {
            if best.is_none_or(|(m, _, _)| n > m) {
                best = Some((n, d, width));
            }
        }
    }
    best.map(|(_, d, w)| (d, w))
}

/// A column's type from its sampled values (without the empty ones).
fn guess(name: &str, values: Vec<&str>, rows: usize) -> (ColumnKind, Option<TimeFormat>, String) {
    if values.is_empty() {
        return (
            ColumnKind::Categorical,
            None,
            format!("no value in {rows} rows"),
        );
    }
    let lower = name.to_lowercase();
    let timeish = ["hour", "time", "date", "ts"]
        .iter()
        .any(|t| lower == *t || lower.contains(t));
    let ints: Option<Vec<i64>> = values
        .iter()
        .map(|v| parse_int(v.as_bytes()).ok())
        .collect();
    let mut distinct = values.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if lower == "id" && distinct.len() * 100 >= values.len() * 95 {
        return (
            ColumnKind::Skip,
            None,
            format!(
                "a row id: {} distinct values in {}",
                distinct.len(),
                values.len()
            ),
        );
    }
    if let Some(ints) = &ints {
        if timeish {
            let all = |f: &dyn Fn(i64) -> bool| ints.iter().all(|&x| f(x));
            if all(&|x| {
                let (mm, dd, hh) = (x / 10_000 % 100, x / 100 % 100, x % 100);
                (10_000_000..100_000_000).contains(&x)
                    && (1..=12).contains(&mm)
                    && (1..=31).contains(&dd)
                    && hh < 24
            }) {
                return (
                    ColumnKind::Timestamp,
                    Some(TimeFormat::Yymmddhh),
                    "a time column of YYMMDDHH values".into(),
                );
            }
            if all(&|x| (946_684_800..4_102_444_800).contains(&x)) {
                return (
                    ColumnKind::Timestamp,
                    Some(TimeFormat::Unix),
                    "a time column of unix seconds (2000-2100)".into(),
                );
            }
            if all(&|x| (946_684_800_000..4_102_444_800_000).contains(&x)) {
                return (
                    ColumnKind::Timestamp,
                    Some(TimeFormat::UnixMs),
                    "a time column of unix milliseconds (2000-2100)".into(),
                );
            }
        }
        return (
            ColumnKind::Integer,
            None,
            format!(
                "{} integers, {} distinct; declare it categorical if they are codes",
                values.len(),
                distinct.len()
            ),
        );
    }
    if values.iter().all(|v| parse_float(v.as_bytes()).is_ok()) {
        return (
            ColumnKind::Float,
            None,
            format!("{} numbers, not all integers", values.len()),
        );
    }
    if values.iter().all(|v| parse_rfc3339(v).is_some()) {
        return (
            ColumnKind::Timestamp,
            Some(TimeFormat::Rfc3339),
            "RFC 3339 times".into(),
        );
    }
    (
        ColumnKind::Categorical,
        None,
        format!("text, {} distinct of {}", distinct.len(), values.len()),
    )
}

/// A unit enum's name as the schema file writes it.
fn snake(v: impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
