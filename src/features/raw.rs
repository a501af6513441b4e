//! One raw value, as a request or a shard holds it ([`RawValue`]), typed
//! views of a shard's columns, the tokens values become before they are
//! looked up or hashed, and the check that a column's values can be counted.
//! Fitting, encoding, target statistics and the history replay all read
//! values through here; it imports nothing else of `features`.

use arrow::array::{
    Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};

use crate::data::schema::{ColumnKind, DatasetSchema};
use crate::error::{Error, Result};

/// One raw value, as a request or a shard holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawValue<'a> {
    Missing,
    Str(&'a str),
    Int(i64),
    Float(f64),
    /// Milliseconds since the epoch.
    TimeMs(i64),
}

/// The token of a non-string value: integers in decimal, floats in Rust's
/// shortest round-trip form.
pub(crate) fn token(v: RawValue<'_>) -> Option<String> {
    match v {
        RawValue::Missing => None,
        RawValue::Str(s) => Some(s.to_string()),
        RawValue::Int(i) => Some(i.to_string()),
        RawValue::Float(x) => Some(format!("{x}")),
        RawValue::TimeMs(ms) => Some(ms.to_string()),
    }
}

/// The value of a cross: its columns' tokens joined with U+001F; missing
/// when any of them is.
pub(crate) fn cross_token<'a>(values: impl Iterator<Item = RawValue<'a>>) -> Option<String> {
    let mut out = String::new();
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push('\u{1F}');
        }
        out.push_str(&token(v)?);
    }
    Some(out)
}

pub(crate) fn numeric(v: RawValue<'_>) -> Option<f64> {
    match v {
        RawValue::Int(i) => Some(i as f64),
        RawValue::Float(x) if x.is_finite() => Some(x),
        RawValue::Str(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

/// A typed view of one column of a batch.
pub(crate) enum ColumnView<'a> {
    Str(&'a StringArray),
    Int(&'a Int64Array),
    Float(&'a Float64Array),
    Time(&'a TimestampMillisecondArray),
}

impl ColumnView<'_> {
    #[inline]
    pub(crate) fn get(&self, r: usize) -> RawValue<'_> {
        match self {
            ColumnView::Str(a) if a.is_valid(r) => RawValue::Str(a.value(r)),
            ColumnView::Int(a) if a.is_valid(r) => RawValue::Int(a.value(r)),
            ColumnView::Float(a) if a.is_valid(r) => RawValue::Float(a.value(r)),
            ColumnView::Time(a) if a.is_valid(r) => RawValue::TimeMs(a.value(r)),
            _ => RawValue::Missing,
        }
    }
}

pub(crate) fn view<'a>(batch: &'a RecordBatch, name: &str) -> Result<ColumnView<'a>> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| Error::Invalid(format!("the shards have no column `{name}`")))?;
    let any = col.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        Ok(ColumnView::Str(a))
    } else if let Some(a) = any.downcast_ref::<Int64Array>() {
        Ok(ColumnView::Int(a))
    } else if let Some(a) = any.downcast_ref::<Float64Array>() {
        Ok(ColumnView::Float(a))
    } else if let Some(a) = any.downcast_ref::<TimestampMillisecondArray>() {
        Ok(ColumnView::Time(a))
    } else {
        Err(Error::Invalid(format!(
            "column `{name}` has type {}, which the feature map cannot read",
            col.data_type()
        )))
    }
}

/// A column whose values can be counted: kept, and not the label, the truth
/// or a timestamp; `setting` names the config key in the error.
pub(super) fn check_value_column(
    schema: &DatasetSchema,
    column: &str,
    setting: &str,
) -> Result<()> {
    let ok = schema.kept().any(|k| {
        k.name == column
            && !matches!(
                k.kind,
                ColumnKind::Label | ColumnKind::Truth | ColumnKind::Skip | ColumnKind::Timestamp
            )
    });
    if ok {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{setting}: `{column}` is not a feature column of dataset `{}`",
        schema.name
    )))
}
