//! The service's contract as OpenAPI 3 (`GET /openapi.json`), made from the
//! loaded bundles (each model's fields, their types and an example request),
//! and a page that lists it and sends requests (`GET /docs`), served from
//! the binary with nothing fetched from the network.
//!
//! Written by hand: the routes are six, and the request schemas come from
//! the bundles at run time, which derive-based generators (utoipa, okapi)
//! cannot see.
use serde_json::{json, Map, Value};

use super::bundle::Bundle;
use super::server::Server;
use crate::data::schema::ColumnKind;

/// The JSON schema of one raw value of a column, as `/predict_ctr` accepts it.
fn value_schema(kind: ColumnKind) -> Value {
    match kind {
        ColumnKind::Categorical => {
            json!({"type": ["string", "number", "null"], "description": "categorical; empty or null is missing"})
        }
        ColumnKind::Integer => json!({"type": ["integer", "null"]}),
        ColumnKind::Float => json!({"type": ["number", "null"]}),
        ColumnKind::Timestamp => json!({
            "type": ["string", "integer", "null"],
            "format": "date-time",
            "description": "RFC 3339 (2026-11-29T10:00:00Z) or unix seconds; absent: the server's clock",
        }),
        _ => json!({}),
    }
}

/// An example value of a column.
fn example(kind: ColumnKind) -> Value {
    match kind {
        ColumnKind::Categorical => json!("a1"),
        ColumnKind::Integer => json!(3),
        ColumnKind::Float => json!(0.5),
        ColumnKind::Timestamp => json!("2026-11-29T10:00:00Z"),
        _ => Value::Null,
    }
}

/// One model's raw fields (all optional: absent is missing), with `extra`
/// properties (the request's `model` and `version`, or an event's outcome).
fn fields(b: &Bundle, extra: &[(&str, Value)]) -> Value {
    let mut props = Map::new();
    let mut ex = Map::new();
    for (name, kind) in &b.map.columns {
        if matches!(
            kind,
            ColumnKind::Label | ColumnKind::Skip | ColumnKind::Truth
        ) {
            continue;
        }
        props.insert(name.clone(), value_schema(*kind));
        ex.insert(name.clone(), example(*kind));
    }
    for (k, v) in extra {
        props.insert(k.to_string(), v.clone());
    }
    json!({
        "type": "object",
        "description": format!("Raw fields for {}/{} ({})", b.name, b.version, b.meta.model),
        "properties": props,
        "additionalProperties": false,
        "example": ex,
    })
}

/// `{"anyOf": [$ref ...]}` over one schema a model, registered in `schemas`
/// as `<what>_<name>_<version>`.
fn per_model(
    server: &Server,
    schemas: &mut Map<String, Value>,
    what: &str,
    make: impl Fn(&Bundle) -> Value,
) -> Value {
    let refs: Vec<Value> = server
        .bundles
        .iter()
        .map(|b| {
            let key = format!("{what}_{}_{}", b.name, b.version).replace(['.', '-'], "_");
            schemas.insert(key.clone(), make(b));
            json!({"$ref": format!("#/components/schemas/{key}")})
        })
        .collect();
    if refs.is_empty() {
        json!({"type": "object"})
    } else {
        json!({"anyOf": refs})
    }
}

/// The OpenAPI 3.1 document of `server`.
pub fn spec(server: &Server) -> Value {
    let mut schemas = Map::new();
    let choice = |b: &Bundle| {
        [
            ("model", json!({"type": "string", "enum": [b.name]})),
            ("version", json!({"type": "string", "enum": [b.version]})),
        ]
    };
    let instance = per_model(server, &mut schemas, "Instance", |b| fields(b, &choice(b)));
    let row = per_model(server, &mut schemas, "Fields", |b| fields(b, &[]));
    let event = per_model(server, &mut schemas, "Event", |b| {
        fields(
            b,
            &[
                (
                    "clicked",
                    json!({"type": ["integer", "boolean"], "enum": [0, 1, true, false]}),
                ),
                ("event_id", json!({"type": "string"})),
            ],
        )
    });
    schemas.insert("Instance".into(), instance);
    let names: Vec<&str> = server.bundles.iter().map(|b| b.name.as_str()).collect();
    let versions: Vec<&str> = server.bundles.iter().map(|b| b.version.as_str()).collect();
    let pick = json!({
        "model": {"type": "string", "enum": names},
        "version": {"type": "string", "enum": versions},
    });
    schemas.insert("Fields".into(), row);
    schemas.insert("Event".into(), event);
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "field": {"type": ["string", "null"]},
                "status": {"type": "integer"},
            },
            "required": ["error", "status"],
        }),
    );
    let error = |what: &str| json!({"description": what, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let errors = |codes: &[(&str, &str)]| -> Map<String, Value> {
        codes
            .iter()
            .map(|(c, w)| (c.to_string(), error(w)))
            .collect()
    };
    let body_errors = [
        (
            "400",
            "a field that is unknown or of the wrong type, or a malformed body",
        ),
        ("404", "no such model or version"),
        ("408", "the body did not arrive in time"),
        ("413", "the body is too large"),
        ("415", "the body is not application/json"),
        ("500", "the model failed"),
        ("503", "the server is busy"),
    ];
    let json_body = |schema: Value| json!({"required": true, "content": {"application/json": {"schema": schema}}});
    let ok = |schema: Value| json!({"description": "OK", "content": {"application/json": {"schema": schema}}});
    let mut predict = errors(&body_errors);
    predict.insert(
        "200".into(),
        ok(json!({
            "type": "object",
            "properties": {
                "predicted_ctr": {"type": "number"},
                "probability": {"type": "number"},
                "model": {"type": "string"},
                "version": {"type": "string"},
                "request_id": {"type": "string"},
            },
            "required": ["predicted_ctr", "probability", "model", "version", "request_id"],
        })),
    );
    let mut batch = errors(&body_errors);
    batch.insert(
        "200".into(),
        ok(json!({
            "type": "object",
            "properties": {
                "predictions": {"type": "array", "items": {"type": "number"}},
                "model": {"type": "string"},
                "version": {"type": "string"},
                "request_id": {"type": "string"},
            },
            "required": ["predictions", "model", "version", "request_id"],
        })),
    );
    let mut feedback = errors(&body_errors);
    feedback.insert("401".into(), error("a feedback token is set and not given"));
    feedback.insert("200".into(), ok(json!({"type": "object"})));
    let limit = server.config.max_batch;
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ctr-dl",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Click-through-rate predictions of the loaded model bundles. Fields absent from an instance are missing values.",
        },
        "paths": {
            "/predict_ctr": {"post": {
                "summary": "The click probability of one instance",
                "requestBody": json_body(json!({"$ref": "#/components/schemas/Instance"})),
                "responses": predict,
            }},
            "/batch_predict": {"post": {
                "summary": format!("Click probabilities of up to {limit} instances, in order"),
                "requestBody": json_body(json!({
                    "type": "object",
                    "properties": {
                        "instances": {"type": "array", "minItems": 1, "maxItems": limit, "items": {"$ref": "#/components/schemas/Fields"}},
                        "model": pick["model"],
                        "version": pick["version"],
                    },
                    "required": ["instances"],
                    "additionalProperties": false,
                })),
                "responses": batch,
            }},
            "/feedback": {"post": {
                "summary": "Outcomes of earlier impressions, for models with history inputs",
                "requestBody": json_body(json!({
                    "type": "object",
                    "properties": {
                        "events": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Event"}},
                        "model": pick["model"],
                        "version": pick["version"],
                    },
                    "required": ["events"],
                    "additionalProperties": false,
                })),
                "responses": feedback,
            }},
            "/health": {"get": {
                "summary": "Ready, and the models served",
                "responses": {"200": ok(json!({"type": "object", "properties": {"status": {"type": "string"}, "models": {"type": "array", "items": {"type": "string"}}}, "required": ["status", "models"]}))},
            }},
            "/model_info": {"get": {
                "summary": "Each model's fields, metrics and provenance",
                "responses": {"200": ok(json!({"type": "object"}))},
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics (text format)",
                "responses": {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }},
            "/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": ok(json!({"type": "object"}))},
            }},
        },
        "components": {"schemas": schemas},
    })
}

/// `/docs`: the routes of `/openapi.json`, each with its example request and
/// a button that sends it (plain HTML and script, nothing fetched from
/// elsewhere).
pub const DOCS_HTML: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>ctr-dl API</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}
section{border:1px solid #ccc;border-radius:6px;margin:1em 0;padding:.5em 1em}
h2{font-size:1.1em}code{background:#f4f4f4}textarea{width:100%;height:8em;font-family:monospace}
pre{background:#f4f4f4;padding:.5em;white-space:pre-wrap}</style></head>
<body><h1>ctr-dl API</h1><p>From <a href="/openapi.json">/openapi.json</a>.</p><div id="routes"></div>
<script>
async function main() {
  const spec = await (await fetch('/openapi.json')).json();
  const root = document.getElementById('routes');
  const resolve = s => s && s.$ref ? spec.components.schemas[s.$ref.split('/').pop()] : s;
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const sec = document.createElement('section');
      const h = document.createElement('h2');
      h.textContent = method.toUpperCase() + ' ' + path + ' — ' + (op.summary || '');
      sec.appendChild(h);
      let body = null;
      if (op.requestBody) {
        let schema = resolve(op.requestBody.content['application/json'].schema);
        let example = {};
        if (schema.anyOf) example = resolve(schema.anyOf[0]).example || {};
        else if (schema.properties && schema.properties.instances) {
          const inst = resolve(schema.properties.instances.items);
          example = {instances: [inst.anyOf ? resolve(inst.anyOf[0]).example : {}]};
        } else if (schema.properties && schema.properties.events) example = {events: []};
        body = document.createElement('textarea');
        body.value = JSON.stringify(example, null, 2);
        sec.appendChild(body);
      }
      const button = document.createElement('button');
      button.textContent = 'Send';
      const out = document.createElement('pre');
      button.onclick = async () => {
        const init = {method: method.toUpperCase()};
        if (body) { init.body = body.value; init.headers = {'content-type': 'application/json'}; }
        const r = await fetch(path, init);
        out.textContent = r.status + ' ' + r.statusText + '\n' + await r.text();
      };
      sec.appendChild(button);
      sec.appendChild(out);
      root.appendChild(sec);
    }
  }
}
main();
</script></body></html>
"#;
