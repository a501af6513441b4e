//! Requests and answers: JSON bodies read under a size and time limit,
//! values checked against a model's columns, and the API error that names
//! the field at fault.

use rocket::data::{Data, ToByteUnit};
use rocket::http::{ContentType, Status};
use rocket::serde::json::Json;
use rocket::Request;
use serde_json::{json, Map, Value};

use super::config::ServeConfig;
use crate::data::parse::parse_rfc3339;
use crate::data::schema::ColumnKind;
use crate::features::RawValue;

pub(super) fn raw_value<'a>(
    field: &str,
    kind: ColumnKind,
    v: &'a Value,
) -> ApiResult<RawValue<'a>> {
    let wrong = |want: &str| {
        ApiError::bad(
            field,
            format!("field `{field}`: expected {want}, got {}", type_name(v)),
        )
    };
    Ok(match (kind, v) {
        (_, Value::Null) => RawValue::Missing,
        (ColumnKind::Categorical, Value::String(s)) if s.is_empty() => RawValue::Missing,
        (ColumnKind::Categorical, Value::String(s)) => RawValue::Str(s),
        (ColumnKind::Categorical, Value::Number(n)) => match n.as_i64() {
            Some(i) => RawValue::Int(i),
            None => RawValue::Float(n.as_f64().ok_or_else(|| wrong("a string or number"))?),
        },
        (ColumnKind::Categorical, _) => return Err(wrong("a string or number")),
        (ColumnKind::Integer, Value::Number(n)) => match n.as_i64() {
            Some(i) => RawValue::Int(i),
            None => match n.as_f64() {
                Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => RawValue::Int(x as i64),
                _ => return Err(wrong("an integer")),
            },
        },
        (ColumnKind::Integer, _) => return Err(wrong("an integer")),
        (ColumnKind::Float, Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => RawValue::Float(x),
            _ => return Err(wrong("a finite number")),
        },
        (ColumnKind::Float, _) => return Err(wrong("a number")),
        (ColumnKind::Timestamp, Value::String(s)) => match parse_rfc3339(s) {
            Some(secs) => RawValue::TimeMs(secs * 1000),
            None => {
                return Err(ApiError::bad(
                    field,
                    format!("field `{field}`: {s:?} is not an RFC 3339 time"),
                ))
            }
        },
        (ColumnKind::Timestamp, Value::Number(n)) => match n.as_i64() {
            Some(secs) if secs.abs() < 1 << 40 => RawValue::TimeMs(secs * 1000),
            _ => return Err(wrong("RFC 3339 text or unix seconds")),
        },
        (ColumnKind::Timestamp, _) => return Err(wrong("RFC 3339 text or unix seconds")),
        (_, _) => return Err(wrong("nothing (the model does not read this column)")),
    })
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An error answer: a status and a JSON body naming the field at fault.
#[derive(Debug)]
pub struct ApiError {
    pub status: Status,
    pub field: Option<String>,
    pub message: String,
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    pub(super) fn bad(field: &str, message: String) -> Self {
        ApiError {
            status: Status::BadRequest,
            field: Some(field.to_string()),
            message,
        }
    }
    pub(super) fn new(status: Status, message: impl Into<String>) -> Self {
        ApiError {
            status,
            field: None,
            message: message.into(),
        }
    }
    pub(super) fn answer(&self) -> (Status, Json<Value>) {
        (
            self.status,
            Json(json!({"error": self.message, "field": self.field, "status": self.status.code})),
        )
    }
}

/// 200 with the value, or the error's status and JSON.
pub(super) fn answer(r: ApiResult<Value>) -> (Status, Json<Value>) {
    match r {
        Ok(v) => (Status::Ok, Json(v)),
        Err(e) => e.answer(),
    }
}

/// JSON routes take JSON bodies only (`application/json` or a `+json`
/// type): a `text/plain` or form body, which any web page may post
/// cross-origin without a preflight, is answered 415.
pub(super) fn json_only(ct: Option<&ContentType>) -> ApiResult<()> {
    match ct {
        Some(ct) if ct.is_json() || ct.sub().as_str().ends_with("+json") => Ok(()),
        Some(ct) => Err(ApiError::new(
            Status::UnsupportedMediaType,
            format!("Content-Type {ct}: this route takes application/json"),
        )),
        None => Err(ApiError::new(
            Status::UnsupportedMediaType,
            "no Content-Type: this route takes application/json",
        )),
    }
}

/// The request's `Authorization` header, for `/feedback`.
pub struct Authorization(Option<String>);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for Authorization {
    type Error = std::convert::Infallible;
    async fn from_request(req: &'r Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        rocket::request::Outcome::Success(Authorization(
            req.headers().get_one("Authorization").map(str::to_string),
        ))
    }
}

/// Check a bearer token against the configured one in constant time.
pub(super) fn authorized(expected: Option<&str>, got: &Authorization) -> ApiResult<()> {
    let Some(want) = expected else { return Ok(()) };
    let given = got
        .0
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    let same = want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            Status::Unauthorized,
            "/feedback needs `Authorization: Bearer <feedback_token>`",
        ))
    }
}

/// The body as a JSON object; `shape` says what it should have been.
pub(super) async fn read_object(
    data: Data<'_>,
    config: &ServeConfig,
    shape: &str,
) -> ApiResult<Map<String, Value>> {
    let timeout = std::time::Duration::from_secs_f64(config.body_read_timeout_s.max(0.001));
    match read_body(data, config.max_body_bytes, timeout).await? {
        Value::Object(obj) => Ok(obj),
        _ => Err(ApiError::new(Status::BadRequest, shape)),
    }
}

/// The body as JSON: at most `limit` bytes (413 past it), arrived within
/// `timeout` (408 otherwise, so a client that sends its body slowly cannot
/// hold a connection).
pub(super) async fn read_body(
    data: Data<'_>,
    limit: u64,
    timeout: std::time::Duration,
) -> ApiResult<Value> {
    let body = rocket::tokio::time::timeout(timeout, data.open(limit.bytes()).into_string())
        .await
        .map_err(|_| {
            ApiError::new(
                Status::RequestTimeout,
                format!(
                    "the body did not arrive within {} s (body_read_timeout_s)",
                    timeout.as_secs_f64()
                ),
            )
        })?
        .map_err(|e| ApiError::new(Status::BadRequest, format!("reading the body: {e}")))?;
    if !body.is_complete() {
        return Err(ApiError::new(
            Status::PayloadTooLarge,
            format!("the body is over {limit} bytes"),
        ));
    }
    serde_json::from_str(&body).map_err(|e| {
        ApiError::new(
            Status::BadRequest,
            format!(
                "malformed JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

/// A body of `{"<key>": [...], "model", "version"}` (what `what` holds):
/// its list, checked to be a non-empty array of at most `max` items, and no
/// other field.
pub(super) fn list_body<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    what: &str,
    max: usize,
) -> ApiResult<&'a Vec<Value>> {
    for k in obj.keys() {
        if ![key, "model", "version"].contains(&k.as_str()) {
            return Err(ApiError::bad(
                k,
                format!("unknown field `{k}`; {what} holds `{key}`, `model`, `version`"),
            ));
        }
    }
    let list = match obj.get(key) {
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(ApiError::bad(
                key,
                format!("field `{key}`: expected an array, got {}", type_name(v)),
            ))
        }
        None => return Err(ApiError::bad(key, format!("field `{key}` is missing"))),
    };
    if list.is_empty() {
        return Err(ApiError::bad(key, format!("`{key}` is empty")));
    }
    if list.len() > max {
        return Err(ApiError::new(
            Status::PayloadTooLarge,
            format!("{} {key}; at most {max} per request", list.len()),
        ));
    }
    Ok(list)
}

pub(super) fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> ApiResult<Option<&'a str>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(_)) if key == "version" => Err(ApiError::bad(
            key,
            format!("field `{key}`: give the version as a string, e.g. \"1\""),
        )),
        Some(v) => Err(ApiError::bad(
            key,
            format!("field `{key}`: expected a string, got {}", type_name(v)),
        )),
    }
}
