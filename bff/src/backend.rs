//! The services the BFF reads: an HTTP client per service with the configured timeout, and one
//! short cache of their successful `GET` answers, shared by every route.
//!
//! Metrics: `bff_cache_hits_total`, `bff_cache_misses_total`, and per backend
//! `bff_backend_requests_total{backend, outcome}` (`ok`, `error` for a 4xx answer,
//! `unavailable` for no answer, a timeout or a 5xx) and `bff_backend_request_duration_seconds`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Config;

/// Why a backend call gave no usable answer.
#[derive(Clone, Debug)]
pub enum Fallo {
    /// It did not answer in time, could not be reached, or answered 5xx: its part is unavailable.
    NoDisponible(String),
    /// It answered a 4xx: the request itself was refused (a bad parameter, an unknown id).
    Rechazo {
        /// The status.
        status: u16,
        /// Its JSON body (or `{"error": text}`).
        cuerpo: Value,
    },
}

impl std::fmt::Display for Fallo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallo::NoDisponible(why) => write!(f, "no disponible: {why}"),
            Fallo::Rechazo { status, cuerpo } => write!(f, "respondió {status}: {cuerpo}"),
        }
    }
}

/// One service.
pub struct Backend {
    /// Its name in answers, logs and metrics (`orquestador`, `cliente`).
    pub nombre: &'static str,
    base: String,
    client: reqwest::Client,
}

/// The cache's counters, as `/api/v1/health` shows them.
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Every service, and the cache of their answers.
pub struct Backends {
    /// The orchestrator: sagas, campaigns, payouts, dead letters.
    pub orquestador: Backend,
    /// The cliente service.
    pub cliente: Backend,
    cache: Option<moka::sync::Cache<String, Arc<Value>>>,
    ttl: Duration,
    stats: CacheStats,
}

impl Backends {
    /// The clients of `config`'s services.
    pub fn new(config: &Config, access: &daemon::access::Access) -> reqwest::Result<Backends> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = access.authorization() {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder().timeout(config.timeout()).default_headers(headers).build()?;
        let backend = |nombre, base: &str| Backend {
            nombre,
            base: base.trim_end_matches('/').to_owned(),
            client: client.clone(),
        };
        let ttl = Duration::from_millis(config.cache_ttl_ms);
        let cache = (config.cache_ttl_ms > 0)
            .then(|| moka::sync::Cache::builder().max_capacity(config.cache_entradas).time_to_live(ttl).build());
        Ok(Backends {
            orquestador: backend("orquestador", &config.orquestador_url),
            cliente: backend("cliente", &config.cliente_url),
            cache,
            ttl,
            stats: CacheStats::default(),
        })
    }

    /// Every backend, for `/health`.
    pub fn all(&self) -> [&Backend; 2] {
        [&self.orquestador, &self.cliente]
    }

    /// `GET path` of `backend`, from the cache while it is fresh.
    pub async fn get(&self, backend: &Backend, path: &str) -> Result<Arc<Value>, Fallo> {
        let key = format!("{}{path}", backend.base);
        if let Some(cache) = &self.cache {
            if let Some(hit) = cache.get(&key) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("bff_cache_hits_total").increment(1);
                return Ok(hit);
            }
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("bff_cache_misses_total").increment(1);
        }
        let value = Arc::new(backend.get(path).await?);
        if let Some(cache) = &self.cache {
            cache.insert(key, value.clone());
        }
        Ok(value)
    }

    /// `GET path` of `backend`, never from the cache (what an operator just changed).
    pub async fn get_fresh(&self, backend: &Backend, path: &str) -> Result<Value, Fallo> {
        backend.get(path).await
    }

    /// `POST path` of `backend` with `body`: the status and body it answered. Empties the cache,
    /// so the next reads see the change.
    pub async fn post(&self, backend: &Backend, path: &str, body: &Value) -> Result<(u16, Value), Fallo> {
        let answer = backend.send(backend.client.post(format!("{}{path}", backend.base)).json(body)).await;
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
        answer
    }

    /// The cache's hits, misses, hit rate, size and time to live.
    pub fn cache(&self) -> Value {
        let hits = self.stats.hits.load(Ordering::Relaxed);
        let misses = self.stats.misses.load(Ordering::Relaxed);
        let rate = if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 };
        serde_json::json!({
            "activa": self.cache.is_some(),
            "hits": hits,
            "misses": misses,
            "hit_rate": rate,
            "entradas": self.cache.as_ref().map(|c| c.entry_count()).unwrap_or(0),
            "ttl_ms": self.ttl.as_millis() as u64,
        })
    }
}

impl Backend {
    async fn get(&self, path: &str) -> Result<Value, Fallo> {
        match self.send(self.client.get(format!("{}{path}", self.base))).await? {
            (200..=299, body) => Ok(body),
            (status, cuerpo) => Err(Fallo::Rechazo { status, cuerpo }),
        }
    }

    /// Sends `request`: a 2xx or 4xx answer with its JSON body, or why there is none.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), Fallo> {
        let started = Instant::now();
        let answer = request.send().await;
        let outcome = match answer {
            Err(e) => {
                let why = if e.is_timeout() {
                    "no respondió a tiempo".to_owned()
                } else {
                    "no se pudo contactar".to_owned()
                };
                tracing::warn!(backend = self.nombre, error = %e, "backend unavailable");
                Err(Fallo::NoDisponible(why))
            }
            Ok(r) if r.status().is_server_error() => {
                tracing::warn!(backend = self.nombre, status = r.status().as_u16(), "backend answered a server error");
                Err(Fallo::NoDisponible(format!("respondió {}", r.status().as_u16())))
            }
            Ok(r) => {
                let status = r.status().as_u16();
                match r.bytes().await {
                    Err(e) => {
                        tracing::warn!(backend = self.nombre, error = %e, "backend answer cut");
                        Err(Fallo::NoDisponible("la respuesta llegó incompleta".into()))
                    }
                    Ok(bytes) => {
                        let body = serde_json::from_slice(&bytes).unwrap_or_else(
                            |_| serde_json::json!({ "error": String::from_utf8_lossy(&bytes).chars().take(500).collect::<String>() }),
                        );
                        Ok((status, body))
                    }
                }
            }
        };
        let label = match &outcome {
            Ok((200..=299, _)) => "ok",
            Ok(_) => "error",
            Err(_) => "unavailable",
        };
        metrics::counter!("bff_backend_requests_total", "backend" => self.nombre, "outcome" => label).increment(1);
        metrics::histogram!("bff_backend_request_duration_seconds", "backend" => self.nombre)
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    /// Its `/health`: whether it is ready, and how long it took to say so.
    pub async fn ping(&self) -> (Result<Value, Fallo>, Duration) {
        let started = Instant::now();
        let answer = match self.send(self.client.get(format!("{}/health", self.base))).await {
            Ok((200..=299, body)) => Ok(body),
            Ok((status, cuerpo)) => Err(Fallo::Rechazo { status, cuerpo }),
            Err(e) => Err(e),
        };
        (answer, started.elapsed())
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.base
    }
}

/// `path` with `query`'s pairs that have a value, encoded: what [`Backends::get`] takes.
pub fn path_with(path: &str, query: &[(&str, Option<String>)]) -> String {
    let pairs: Vec<(&str, &str)> = query.iter().filter_map(|(k, v)| v.as_deref().map(|v| (*k, v))).collect();
    if pairs.is_empty() {
        return path.to_owned();
    }
    let mut url = reqwest::Url::parse("http://bff.invalid").expect("a valid base");
    url.query_pairs_mut().extend_pairs(pairs);
    format!("{path}?{}", url.query().unwrap_or_default())
}

/// One path segment (an id) encoded, so it cannot reach another route of the backend.
pub fn segment(id: &str) -> String {
    let mut url = reqwest::Url::parse("http://bff.invalid/").expect("a valid base");
    url.path_segments_mut().expect("a base with a path").push(id);
    url.path().trim_start_matches('/').to_owned()
}
