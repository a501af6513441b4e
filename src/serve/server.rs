//! `ctr-dl serve`: the service's shared state and its assembly on Rocket.
//!
//! Every bundle under `models/` (the newest version of each name that loads,
//! or all of them) is loaded and warmed up before the server binds, so
//! `/health` answers ready from the first request. A request is validated and
//! encoded on the async worker ([`super::routes`], with the same
//! `FeatureMap::encode_row` as training uses); the forward runs on the
//! [`Pool`], a fixed set of OS threads, never on the async workers. libtorch's
//! intra-op threads are set so that workers times threads does not exceed the
//! cores.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};

use super::bundle::{bundle_versions, now_ms, version_order, Bundle};
use super::config::ServeConfig;
use super::metrics::Metrics;
use super::pool::Pool;
use super::predlog::{PredLog, PredLogOptions, Record, Target};
use super::request::{ApiError, ApiResult};
use super::routes;
use crate::error::{Error, Result};

/// The service's shared state.
pub struct Server {
    pub bundles: Vec<Arc<Bundle>>,
    pub pool: Pool,
    pub metrics: Metrics,
    pub config: ServeConfig,
    pub predlog: Option<PredLog>,
    /// Bundles that did not load: their folder (relative to the models
    /// folder) and why.
    pub skipped: Vec<(String, String)>,
    /// `/feedback`'s bearer token, when one is set.
    pub(super) feedback_token: Option<String>,
    next_id: AtomicU64,
    started: u64,
}

impl Server {
    /// Load the bundles of `config.models` (a bundle that fails is reported
    /// on stderr and skipped) and start the inference threads.
    pub fn load(config: ServeConfig) -> Result<Server> {
        let device = crate::device::resolve_device(&config.device).map_err(Error::Invalid)?;
        let names = bundle_versions(&config.models)?;
        let found: usize = names.iter().map(Vec::len).sum();
        let mut bundles: Vec<Arc<Bundle>> = Vec::new();
        let mut skipped = Vec::new();
        for versions in &names {
            // Newest first; without `all_versions`, the newest that loads.
            for dir in versions.iter().rev() {
                let shown = shown_path(&config.models, dir);
                let loaded = Bundle::load_with_history(
                    dir,
                    device,
                    Some(&config.history_dir),
                    &config.history_options(),
                )
                .and_then(|b| {
                    match bundles
                        .iter()
                        .find(|o| o.name == b.name && o.version == b.version)
                    {
                        Some(o) => Err(Error::Invalid(format!(
                            "its metadata names {}/{}, which {} already serves",
                            b.name,
                            b.version,
                            shown_path(&config.models, &o.dir)
                        ))),
                        None => Ok(b),
                    }
                });
                match loaded {
                    Ok(b) => {
                        if let Some(newer) = skipped
                            .last()
                            .filter(|_: &&(String, String)| !config.all_versions)
                        {
                            if newer.0.starts_with(&format!("{}/", b.name)) {
                                eprintln!(
                                    "serve: serving {}/{} instead, the newest version that loads",
                                    b.name, b.version
                                );
                            }
                        }
                        bundles.push(Arc::new(b));
                        if !config.all_versions {
                            break;
                        }
                    }
                    Err(e) => {
                        eprintln!("serve: skipping {shown}: {e}");
                        skipped.push((shown, e.to_string()));
                    }
                }
            }
        }
        if bundles.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no model bundle could be loaded ({found} found); `ctr-dl export` writes them",
                config.models.display(),
            )));
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let workers = if config.workers == 0 {
            cores
        } else {
            config.workers
        };
        // Workers times intra-op threads stays within the cores.
        tch::set_num_threads((cores / workers).max(1) as i32);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let predlog = match config.predlog.as_str() {
            "" | "off" | "none" => None,
            t => {
                let target = Target::parse(t);
                let dead_letter = match config.predlog_dead_letter.as_str() {
                    "off" | "none" => None,
                    "" => Some(target.default_dead_letter()),
                    p => Some(PathBuf::from(p)),
                };
                Some(PredLog::start_with(
                    target,
                    &config.predlog_table,
                    PredLogOptions {
                        capacity: config.predlog_queue,
                        max_bytes: config.predlog_queue_bytes,
                        dead_letter,
                    },
                )?)
            }
        };
        Ok(Server {
            bundles,
            pool: Pool::new(workers),
            metrics: Metrics::default(),
            predlog,
            skipped,
            feedback_token: config.feedback_token(),
            config,
            next_id: AtomicU64::new(0),
            started,
        })
    }

    /// The bundle a request names: by model name (default: the first loaded)
    /// and version (default: the latest loaded of that name).
    pub(super) fn pick(
        &self,
        model: Option<&str>,
        version: Option<&str>,
    ) -> ApiResult<Arc<Bundle>> {
        let candidates: Vec<&Arc<Bundle>> = match model {
            Some(m) => self.bundles.iter().filter(|b| b.name == m).collect(),
            None => {
                let first = &self.bundles[0].name;
                self.bundles.iter().filter(|b| &b.name == first).collect()
            }
        };
        if candidates.is_empty() {
            let names: Vec<&str> = self.bundles.iter().map(|b| b.name.as_str()).collect();
            return Err(ApiError::bad(
                "model",
                format!(
                    "no model {:?} is loaded (loaded: {})",
                    model.unwrap_or(""),
                    names.join(", ")
                ),
            ));
        }
        match version {
            Some(v) => candidates
                .into_iter()
                .find(|b| b.version == v)
                .cloned()
                .ok_or_else(|| ApiError::bad("version", format!("version {v:?} is not loaded"))),
            None => Ok(candidates
                .into_iter()
                .max_by(|a, b| version_order(&a.version, &b.version))
                .cloned()
                .expect("non-empty")),
        }
    }

    pub(super) fn request_id(&self) -> String {
        format!(
            "{:x}-{:06x}",
            self.started,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl Server {
    /// Queue predictions for the log (a no-op when it is off).
    pub(super) fn log(
        &self,
        b: &Bundle,
        request_id: &str,
        rows: &[(&Map<String, Value>, f32)],
        started: Instant,
    ) {
        let Some(log) = &self.predlog else { return };
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let time_ms = now_ms();
        for (fields, p) in rows {
            let fields: Map<String, Value> = fields
                .iter()
                .filter(|(k, _)| k.as_str() != "model" && k.as_str() != "version")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            log.log(Record {
                request_id: request_id.to_string(),
                time_ms,
                model: b.name.clone(),
                version: b.version.clone(),
                fields: Value::Object(fields).to_string(),
                probability: *p as f64,
                latency_ms,
            });
        }
    }
}

/// A bundle folder as shown to clients and logs: relative to the models
/// folder (never an absolute path).
pub(super) fn shown_path(models: &Path, dir: &Path) -> String {
    dir.strip_prefix(models)
        .unwrap_or(dir)
        .display()
        .to_string()
}

/// The Rocket instance serving `server` (bound to `config.address:port`).
pub fn rocket(server: Arc<Server>) -> rocket::Rocket<rocket::Build> {
    let figment = rocket::Config::figment()
        .merge(("address", server.config.address.clone()))
        .merge(("port", server.config.port))
        .merge(("log_level", rocket::config::LogLevel::Critical))
        .merge(("cli_colors", false))
        // Read by the patched Rocket (vendor/rocket/PATCHES.md).
        .merge(("header_read_timeout", server.config.header_read_timeout_s))
        .merge(("max_connections", server.config.connection_limit()));
    rocket::custom(figment)
        .manage(server.clone())
        .attach(super::routes::RequestMetrics(server))
        .mount(
            "/",
            rocket::routes![
                routes::predict_ctr,
                routes::batch_predict,
                routes::feedback,
                routes::health,
                routes::model_info,
                routes::metrics,
                routes::openapi,
                routes::docs,
                routes::index
            ],
        )
        .register("/", rocket::catchers![routes::catch_all])
}

/// Load the bundles and serve until SIGINT or SIGTERM (in-flight requests
/// finish first).
pub fn serve(config: ServeConfig) -> Result<()> {
    super::logging::init();
    // A taken port or an address not of this machine: said before anything
    // loads, and before a line claims it serves.
    let at = format!("{}:{}", config.address, config.port);
    std::net::TcpListener::bind(&at).map_err(|e| {
        Error::Invalid(format!(
            "cannot listen on {at}: {e}{}",
            if e.kind() == std::io::ErrorKind::AddrInUse {
                " (another server has the port: stop it, or pass --port)"
            } else {
                ""
            }
        ))
    })?;
    let server = Arc::new(Server::load(config)?);
    for b in &server.bundles {
        println!(
            "serve: {}/{} ({}, {} fields) from {}",
            b.name,
            b.version,
            b.meta.model,
            b.map.num_fields(),
            shown_path(&server.config.models, &b.dir)
        );
    }
    let loopback = server
        .config
        .address
        .parse::<std::net::IpAddr>()
        .map_or(server.config.address == "localhost", |ip| ip.is_loopback());
    if !loopback
        && server.feedback_token.is_none()
        && server.bundles.iter().any(|b| b.history.is_some())
    {
        eprintln!(
            "serve: warning: binding {} with no feedback_token (or CTR_DL_FEEDBACK_TOKEN): \
             anyone who can reach the port can change the history counters through /feedback",
            server.config.address
        );
    }
    println!(
        "serve: http://{}:{} ({} inference workers), prediction log: {}",
        server.config.address,
        server.config.port,
        server.pool.workers,
        server
            .predlog
            .as_ref()
            .map_or("off".to_string(), |l| format!(
                "{} table {}",
                l.target.describe(),
                l.table
            ))
    );
    let result = rocket::execute(rocket(server.clone()).launch());
    // History counters: a last snapshot, so a restart starts where this ends.
    for b in &server.bundles {
        if let Some(h) = &b.history {
            match h.snapshot() {
                Ok(()) => println!(
                    "serve: history counters of {}/{} saved ({} events)",
                    b.name,
                    b.version,
                    h.stats().0
                ),
                Err(e) => eprintln!("serve: {}/{}: {e}", b.name, b.version),
            }
        }
    }
    // In-flight requests have finished: write what the log still holds.
    if let Some(log) = &server.predlog {
        log.close();
        println!(
            "serve: stopped; prediction log: {} written, {} dropped",
            log.stats.written.load(Ordering::Relaxed),
            log.stats.dropped.load(Ordering::Relaxed)
        );
    }
    result.map(|_| ()).map_err(|e| Error::Server(Box::new(e)))
}
