//! The HTTP routes (`/predict_ctr`, `/batch_predict`, `/feedback`,
//! `/health`, `/model_info`, `/metrics`), the catcher of every other answer,
//! and the fairing that times each request.
use std::sync::Arc;
use std::time::Instant;

use rocket::data::Data;
use rocket::fairing::{Fairing, Info, Kind as FairingKind};
use rocket::http::{ContentType, Status};
use rocket::serde::json::Json;
use rocket::{Request, Response, State};
use serde_json::{json, Map, Value};

use super::bundle::Bundle;
use super::config::EventWindow;
use super::request::{
    answer, authorized, json_only, list_body, read_object, str_field, type_name, ApiError,
    ApiResult, Authorization,
};
use super::server::{shown_path, Server};

async fn predict(
    server: &Server,
    bundle: Arc<Bundle>,
    ids: Vec<i32>,
    dense: Vec<f32>,
    rows: usize,
) -> ApiResult<Vec<f32>> {
    let b = bundle.clone();
    let p = server
        .pool
        .run(move || b.forward(&ids, &dense, rows))
        .await?
        .map_err(|e| ApiError::new(Status::InternalServerError, e.to_string()))?;
    server.metrics.predicted(&bundle, rows);
    Ok(p)
}

#[rocket::post("/predict_ctr", data = "<data>")]
pub(super) async fn predict_ctr(
    data: Data<'_>,
    ct: Option<&ContentType>,
    server: &State<Arc<Server>>,
    rid: RequestId,
) -> (Status, Json<Value>) {
    let started = Instant::now();
    let r: ApiResult<Value> = async {
        json_only(ct)?;
        let obj = read_object(
            data,
            &server.config,
            "the body must be a JSON object of raw fields",
        )
        .await?;
        let bundle = server.pick(str_field(&obj, "model")?, str_field(&obj, "version")?)?;
        let (ids, dense) = bundle.encode(&obj, &["model", "version"])?;
        let p = predict(server, bundle.clone(), ids, dense, 1).await?[0];
        let id = rid.0.clone();
        server.log(&bundle, &id, &[(&obj, p)], started);
        Ok(json!({
            "predicted_ctr": p,
            "probability": p,
            "model": bundle.name,
            "version": bundle.version,
            "request_id": id,
        }))
    }
    .await;
    answer(r)
}

#[rocket::post("/batch_predict", data = "<data>")]
pub(super) async fn batch_predict(
    data: Data<'_>,
    ct: Option<&ContentType>,
    server: &State<Arc<Server>>,
    rid: RequestId,
) -> (Status, Json<Value>) {
    let started = Instant::now();
    let r: ApiResult<Value> = async {
        json_only(ct)?;
        let obj = read_object(
            data,
            &server.config,
            "the body must be a JSON object {\"instances\": [...]}",
        )
        .await?;
        let instances = list_body(&obj, "instances", "a batch", server.config.max_batch)?;
        let bundle = server.pick(str_field(&obj, "model")?, str_field(&obj, "version")?)?;
        let (nf, nd) = (bundle.map.num_fields(), bundle.map.num_dense());
        let mut ids = Vec::with_capacity(instances.len() * nf);
        let mut dense = Vec::with_capacity(instances.len() * nd);
        for (i, inst) in instances.iter().enumerate() {
            let Value::Object(o) = inst else {
                return Err(ApiError::bad(
                    &format!("instances[{i}]"),
                    format!(
                        "instances[{i}]: expected an object, got {}",
                        type_name(inst)
                    ),
                ));
            };
            let (a, b) = bundle.encode(o, &[]).map_err(|mut e| {
                e.message = format!("instances[{i}]: {}", e.message);
                e.field = e.field.map(|f| format!("instances[{i}].{f}"));
                e
            })?;
            ids.extend(a);
            dense.extend(b);
        }
        let n = instances.len();
        let p = predict(server, bundle.clone(), ids, dense, n).await?;
        let id = rid.0.clone();
        let rows: Vec<(&Map<String, Value>, f32)> = instances
            .iter()
            .filter_map(|v| v.as_object())
            .zip(p.iter().copied())
            .collect();
        server.log(&bundle, &id, &rows, started);
        Ok(json!({
            "predictions": p,
            "model": bundle.name,
            "version": bundle.version,
            "request_id": id,
        }))
    }
    .await;
    answer(r)
}

/// `/feedback`: outcomes of shown impressions for the history counters.
/// `{"events": [{...fields, "clicked": 0|1}, ...]}`, with `model` (and
/// `version`) to feed one model; without, every loaded model that keeps
/// counters gets them (each reads its own key columns; a field no target
/// model reads is an error, as in a prediction).
#[rocket::post("/feedback", data = "<data>")]
pub(super) async fn feedback(
    data: Data<'_>,
    ct: Option<&ContentType>,
    auth: Authorization,
    server: &State<Arc<Server>>,
) -> (Status, Json<Value>) {
    let r: ApiResult<Value> = async {
        authorized(server.feedback_token.as_deref(), &auth)?;
        json_only(ct)?;
        let obj = read_object(
            data,
            &server.config,
            "the body must be a JSON object {\"events\": [...]}",
        )
        .await?;
        let events = list_body(&obj, "events", "feedback", server.config.max_batch)?;
        let ms = |s: u64| i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000);
        let window = EventWindow {
            max_age_ms: ms(server.config.feedback_max_age_s),
            max_ahead_ms: ms(server.config.feedback_max_ahead_s),
        };
        let targets: Vec<Arc<Bundle>> = match str_field(&obj, "model")? {
            Some(m) => vec![server.pick(Some(m), str_field(&obj, "version")?)?],
            None if str_field(&obj, "version")?.is_some() => {
                return Err(ApiError::bad(
                    "version",
                    "`version` names a version of one model: give `model` too (without \
                     both, every model that keeps counters gets the events)"
                        .into(),
                ))
            }
            None => server
                .bundles
                .iter()
                .filter(|b| b.history.is_some())
                .cloned()
                .collect(),
        };
        if targets.is_empty() {
            return Err(ApiError::new(
                Status::BadRequest,
                "no loaded model keeps history counters ([features.history])",
            ));
        }
        // Every event is checked for every target before any is applied.
        let mut per_model = Vec::with_capacity(targets.len());
        for b in &targets {
            let mut list = Vec::with_capacity(events.len());
            for (i, e) in events.iter().enumerate() {
                let Value::Object(o) = e else {
                    return Err(ApiError::bad(
                        &format!("events[{i}]"),
                        format!("events[{i}]: expected an object, got {}", type_name(e)),
                    ));
                };
                list.push(b.feedback_event(o, window).map_err(|mut err| {
                    err.message = format!("events[{i}]: {}", err.message);
                    err.field = err.field.map(|f| format!("events[{i}].{f}"));
                    err
                })?);
            }
            per_model.push(list);
        }
        let mut models = Vec::new();
        for (b, list) in targets.iter().zip(per_model) {
            let h = b.history.as_ref().expect("checked by feedback_event");
            let done = h
                .feedback(&list)
                .map_err(|e| ApiError::new(Status::InternalServerError, e.to_string()))?;
            models.push(json!({
                "model": b.name,
                "version": b.version,
                "events": done.seq,
                "applied": done.applied,
                "duplicates": done.duplicates,
            }));
            server.metrics.feedback_applied(b, done.applied);
        }
        Ok(json!({"accepted": events.len(), "models": models}))
    }
    .await;
    answer(r)
}

#[rocket::get("/health")]
pub(super) fn health(server: &State<Arc<Server>>) -> Json<Value> {
    Json(json!({
        "status": "ready",
        "models": server.bundles.iter().map(|b| format!("{}/{}", b.name, b.version)).collect::<Vec<_>>(),
    }))
}

#[rocket::get("/openapi.json")]
pub(super) fn openapi(server: &State<Arc<Server>>) -> Json<Value> {
    Json(super::openapi::spec(server))
}

#[rocket::get("/docs")]
pub(super) fn docs() -> rocket::response::content::RawHtml<&'static str> {
    rocket::response::content::RawHtml(super::openapi::DOCS_HTML)
}

#[rocket::get("/")]
pub(super) fn index() -> rocket::response::Redirect {
    rocket::response::Redirect::to("/docs")
}

#[rocket::get("/model_info")]
pub(super) fn model_info(server: &State<Arc<Server>>) -> Json<Value> {
    let models: Vec<Value> = server
        .bundles
        .iter()
        .map(|b| {
            json!({
                "name": b.name,
                "version": b.version,
                "kind": b.meta.model,
                "dir": shown_path(&server.config.models, &b.dir),
                "device": format!("{:?}", b.device()),
                "format": b.meta.format,
                "run": b.meta.run,
                "created": b.meta.created,
                "train_commit": b.meta.train_commit,
                "parameters": b.meta.parameters,
                "fields": b.map.columns.iter().map(|(c, k)| json!({"name": c, "kind": format!("{k:?}").to_lowercase()})).collect::<Vec<_>>(),
                "num_fields": b.map.num_fields(),
                "num_dense": b.map.num_dense(),
                "metrics": b.meta.metrics,
                "history": b.history.as_ref().map(|h| {
                    let (events, key_values) = h.stats();
                    json!({"keys": h.spec.keys, "time_column": h.spec.time_column, "events": events, "key_values": key_values})
                }),
            })
        })
        .collect();
    Json(json!({
        "models": models,
        "skipped": server.skipped.iter().map(|(dir, why)| json!({"dir": dir, "error": why})).collect::<Vec<_>>(),
        "workers": server.pool.workers,
        "predlog": server.predlog.as_ref().map(|l| json!({"target": l.target.describe(), "table": l.table})),
    }))
}

#[rocket::get("/metrics")]
pub(super) fn metrics(server: &State<Arc<Server>>) -> (ContentType, String) {
    (
        ContentType::new("text", "plain").with_params(("version", "0.0.4")),
        server
            .metrics
            .render(&server.bundles, server.predlog.as_ref()),
    )
}

#[rocket::catch(default)]
pub(super) fn catch_all(status: Status, req: &Request<'_>) -> Json<Value> {
    Json(json!({
        "error": format!("{} {}: {}", req.method(), req.uri().path(), status.reason_lossy()),
        "field": null,
        "status": status.code,
    }))
}

/// The request's id: in prediction answers, the prediction log, the
/// `X-Request-Id` header and the access log. Made on first use.
pub(super) struct RequestId(pub(super) String);

fn request_id<'r>(req: &'r Request<'_>, server: &Server) -> &'r RequestId {
    req.local_cache(|| RequestId(server.request_id()))
}

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for RequestId {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        match req.rocket().state::<Arc<Server>>() {
            Some(server) => {
                rocket::request::Outcome::Success(RequestId(request_id(req, server).0.clone()))
            }
            None => rocket::request::Outcome::Forward(Status::InternalServerError),
        }
    }
}

/// A request whose path exists under other methods is a 405 naming them
/// (with `Allow`), not a 404.
fn method_not_allowed(req: &Request<'_>, res: &mut Response<'_>) {
    let path = req.uri().path();
    let mut allowed: Vec<&str> = req
        .rocket()
        .routes()
        .filter(|r| r.uri.path() == path.as_str())
        .map(|r| r.method.as_str())
        .collect();
    if allowed.is_empty() {
        return;
    }
    allowed.sort();
    allowed.dedup();
    let allow = allowed.join(", ");
    let body = json!({
        "error": format!("{} {path}: method not allowed (use {allow})", req.method()),
        "field": null,
        "status": 405,
    })
    .to_string();
    res.set_status(Status::MethodNotAllowed);
    res.set_raw_header("Allow", allow);
    res.set_sized_body(body.len(), std::io::Cursor::new(body));
}

/// Request counts and latency per route, for `/metrics`.
pub(super) struct RequestMetrics(pub(super) Arc<Server>);

#[rocket::async_trait]
impl Fairing for RequestMetrics {
    fn info(&self) -> Info {
        Info {
            name: "request metrics",
            kind: FairingKind::Request | FairingKind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        req.local_cache(Instant::now);
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let start = req.local_cache(Instant::now);
        if res.status() == Status::NotFound && req.route().is_none() {
            method_not_allowed(req, res);
        }
        let route = req
            .route()
            .map(|r| r.uri.path().to_string())
            .unwrap_or_else(|| "unmatched".into());
        let seconds = start.elapsed().as_secs_f64();
        self.0.metrics.record(&route, res.status().code, seconds);
        let id = &request_id(req, &self.0).0;
        res.set_raw_header("X-Request-Id", id.clone());
        if self.0.config.access_log {
            // A client chooses its URL: shown plain and cut, as warnings are.
            println!(
                "{} {} {} {:.1} ms {id}",
                req.method(),
                super::logging::plain(req.uri().path().as_str(), 120),
                res.status().code,
                seconds * 1e3
            );
        }
    }
}
