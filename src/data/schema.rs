//! Dataset schemas: how the columns of a delimited text log map to typed
//! Parquet columns. A schema is a TOML file (`configs/datasets/*.toml`); the
//! built-in formats (criteo, criteo-1tb, avazu) ship the same files compiled
//! into the binary, so `ctr-dl convert --format criteo` needs no config on disk.
//!
//! Invariants once resolved: column names are unique, exactly one column is the
//! label, and the delimiter is a single byte.
use std::path::{Path, PathBuf};

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The type of one input column and of its Parquet column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// The click label, `0` or `1`; stored as Int8.
    Label,
    /// Any string; empty is missing. Stored as Utf8.
    Categorical,
    /// A signed 64-bit integer; `260.0` is accepted as 260. Stored as Int64.
    Integer,
    /// A finite number. Stored as Float64.
    Float,
    /// A point in time (see [`TimeFormat`]); stored as Timestamp(millisecond, UTC), a unit Parquet
    /// readers (pyarrow, Spark, DuckDB) all understand.
    Timestamp,
    /// Read past and not kept (row ids and the like).
    Skip,
    /// The true click probability of simulated rows: stored as Float64 for
    /// measuring a model's distance from the best possible, never a feature.
    Truth,
}

/// How a timestamp column is written in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// Seconds since 1970-01-01T00:00:00Z.
    #[default]
    Unix,
    /// Milliseconds since the epoch.
    UnixMs,
    /// `YYMMDDHH` in UTC, 20YY (Avazu's `hour`).
    Yymmddhh,
    /// RFC 3339 (`2026-11-29T10:00:00Z`), or `YYYY-MM-DD HH:MM:SS` read as UTC.
    Rfc3339,
}

/// One `[[columns]]` entry as written: either `name`, or `prefix` + `count`
/// (+ `start`, default 1) for a run of numbered columns such as `I1..I13`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u32>,
    #[serde(rename = "type")]
    pub kind: ColumnKind,
    /// Timestamp columns only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TimeFormat>,
}

/// A dataset schema file as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaFile {
    pub name: String,
    /// Field separator, one byte: `"\t"` or `","` (default `","`).
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Whether each input file starts with a header line. With a header,
    /// columns are matched by name; without, by position.
    #[serde(default)]
    pub header: bool,
    /// Whether absent trailing fields are missing values rather than errors.
    #[serde(default)]
    pub ragged: bool,
    pub columns: Vec<ColumnEntry>,
}

fn default_delimiter() -> String {
    ",".into()
}

/// One resolved column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TimeFormat>,
}

/// A validated schema: the columns in input order, expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSchema {
    pub name: String,
    pub delimiter: u8,
    pub header: bool,
    pub ragged: bool,
    pub columns: Vec<Column>,
}

/// The built-in formats of `ctr-dl convert --format`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("criteo", include_str!("../../configs/datasets/criteo.toml")),
    (
        "criteo-1tb",
        include_str!("../../configs/datasets/criteo-1tb.toml"),
    ),
    (
        "criteo-csv",
        include_str!("../../configs/datasets/criteo-csv.toml"),
    ),
    ("avazu", include_str!("../../configs/datasets/avazu.toml")),
];

impl DatasetSchema {
    /// The schema of a built-in format by name.
    pub fn builtin(name: &str) -> Result<Self> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            Error::Invalid(format!(
                "unknown dataset format `{name}` (known: {})",
                names.join(", ")
            ))
        })?;
        Self::parse(text, Path::new(&format!("<builtin {name}>")))
    }

    /// Load and validate a schema TOML file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let err = |message: String| Error::Schema {
            path: PathBuf::from(path),
            message,
        };
        let file: SchemaFile =
            toml::from_str(text).map_err(|e| err(crate::error::did_you_mean(&e.to_string())))?;
        Self::resolve(file).map_err(err)
    }

    fn resolve(file: SchemaFile) -> std::result::Result<Self, String> {
        let delimiter = match file.delimiter.as_bytes() {
            [b] => *b,
            _ => {
                return Err(format!(
                    "delimiter must be one byte, got {:?}",
                    file.delimiter
                ))
            }
        };
        let mut columns = Vec::new();
        for (i, entry) in file.columns.iter().enumerate() {
            if entry.format.is_some() && entry.kind != ColumnKind::Timestamp {
                return Err(format!(
                    "columns[{i}]: `format` is only for timestamp columns"
                ));
            }
            let format = match entry.kind {
                ColumnKind::Timestamp => Some(entry.format.unwrap_or_default()),
                _ => None,
            };
            match (&entry.name, &entry.prefix, entry.count) {
                (Some(name), None, None) => columns.push(Column {
                    name: name.clone(),
                    kind: entry.kind,
                    format,
                }),
                (None, Some(prefix), Some(count)) => {
                    let start = entry.start.unwrap_or(1);
                    for k in start..start + count {
                        columns.push(Column {
                            name: format!("{prefix}{k}"),
                            kind: entry.kind,
                            format,
                        });
                    }
                }
                _ => {
                    return Err(format!(
                        "columns[{i}]: give either `name`, or `prefix` and `count`"
                    ))
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for c in &columns {
            if c.name.is_empty() {
                return Err("a column has an empty name".into());
            }
            if !seen.insert(c.name.as_str()) {
                return Err(format!("column `{}` is declared twice", c.name));
            }
        }
        let labels = columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Label)
            .count();
        if labels != 1 {
            return Err(format!(
                "exactly one column must have type = \"label\", found {labels}"
            ));
        }
        Ok(DatasetSchema {
            name: file.name,
            delimiter,
            header: file.header,
            ragged: file.ragged,
            columns,
        })
    }

    /// The label column's name.
    pub fn label(&self) -> &str {
        &self
            .columns
            .iter()
            .find(|c| c.kind == ColumnKind::Label)
            .expect("validated: one label column")
            .name
    }

    /// The columns that are written to Parquet (all but `skip`), in order.
    pub fn kept(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.kind != ColumnKind::Skip)
    }

    /// The first timestamp column, if any: the time axis of `--split time`.
    pub fn time_column(&self) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.kind == ColumnKind::Timestamp)
    }

    /// The Arrow schema of the shards.
    pub fn arrow_schema(&self) -> Schema {
        Schema::new(
            self.kept()
                .map(|c| arrow_field(&c.name, c.kind))
                .collect::<Vec<_>>(),
        )
    }
}

/// The Arrow field a column of this kind is stored as.
pub fn arrow_field(name: &str, kind: ColumnKind) -> Field {
    match kind {
        ColumnKind::Label => Field::new(name, DataType::Int8, false),
        ColumnKind::Categorical => Field::new(name, DataType::Utf8, true),
        ColumnKind::Integer => Field::new(name, DataType::Int64, true),
        ColumnKind::Float | ColumnKind::Truth => Field::new(name, DataType::Float64, true),
        ColumnKind::Timestamp => Field::new(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        ColumnKind::Skip => unreachable!("skipped columns are not stored"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_resolve() {
        let c = DatasetSchema::builtin("criteo").unwrap();
        assert_eq!(c.columns.len(), 40);
        assert_eq!(c.columns[1].name, "I1");
        assert_eq!(c.columns[39].name, "C26");
        assert_eq!(c.label(), "label");
        assert_eq!(c.delimiter, b'\t');
        let a = DatasetSchema::builtin("avazu").unwrap();
        assert_eq!(a.columns.len(), 24);
        assert_eq!(a.label(), "click");
        assert_eq!(a.columns.last().unwrap().name, "C21");
        assert_eq!(a.kept().count(), 23);
        assert_eq!(a.time_column().unwrap().format, Some(TimeFormat::Yymmddhh));
    }

    #[test]
    fn a_mistyped_schema_key_gets_the_nearest() {
        let text = "name='x'\ndelimeter=','\n[[columns]]\nname='a'\ntype='label'\n";
        let e = DatasetSchema::parse(text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("did you mean `delimiter`?"),
            "{e}"
        );
        let text = "name='x'\n[[columns]]\nname='a'\ntpye='label'\n";
        let e = DatasetSchema::parse(text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `type`?"), "{e}");
    }

    #[test]
    fn bad_schemas_say_why() {
        let p = Path::new("x.toml");
        let two_labels =
            "name='x'\n[[columns]]\nname='a'\ntype='label'\n[[columns]]\nname='b'\ntype='label'\n";
        let e = DatasetSchema::parse(two_labels, p).unwrap_err().to_string();
        assert!(e.contains("exactly one column"), "{e}");
        let dup = "name='x'\n[[columns]]\nname='a'\ntype='label'\n[[columns]]\nname='a'\ntype='integer'\n";
        let e = DatasetSchema::parse(dup, p).unwrap_err().to_string();
        assert!(e.contains("declared twice"), "{e}");
        let unknown = "name='x'\n[[columns]]\nname='a'\ntype='lable'\n";
        let e = DatasetSchema::parse(unknown, p).unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("lable"), "{e}");
        let fmt = "name='x'\n[[columns]]\nname='a'\ntype='label'\nformat='unix'\n";
        assert!(DatasetSchema::parse(fmt, p).is_err());
    }
}
