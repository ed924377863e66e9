//! Daemon configuration in layers: the daemon's defaults (TOML text), then an optional TOML
//! file, then `ALPES__…` environment variables (`ALPES__DATABASE_URL`, `ALPES__PULSAR__URL`:
//! a double underscore separates the prefix and nested keys). [`variables`] lists every variable
//! a daemon reads, derived from the same defaults, for `docker-compose.yml` and its checker.

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The prefix of configuration variables.
pub const PREFIJO: &str = "ALPES";

/// Variables every daemon reads besides its configuration: the log filter and format.
pub const VARIABLES_DE_REGISTRO: [&str; 2] = ["ALPES_LOG_FORMAT", "RUST_LOG"];

/// Reads a configuration: `defaults`, then `file` if given, then the environment. `required`
/// names the keys without a default, for the error message.
pub fn cargar<T: DeserializeOwned>(defaults: &str, file: Option<&Path>, required: &[&str]) -> anyhow::Result<T> {
    let mut builder = config::Config::builder().add_source(config::File::from_str(defaults, config::FileFormat::Toml));
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    let needed: Vec<String> = required.iter().map(|k| variable(k)).collect();
    builder
        .add_source(config::Environment::with_prefix(PREFIJO).prefix_separator("__").separator("__"))
        .build()
        .context("reading the configuration")?
        .try_deserialize()
        .with_context(|| format!("the configuration is incomplete or invalid (required: {})", needed.join(", ")))
}

/// The environment variable of a key path (`pulsar.url` → `ALPES__PULSAR__URL`).
pub fn variable(key: &str) -> String {
    format!("{PREFIJO}__{}", key.replace('.', "__").to_uppercase())
}

/// Every variable a daemon reads: one per key of `defaults` (nested tables flattened), one per
/// key of `required`, and the logging ones; sorted.
pub fn variables(defaults: &str, required: &[&str]) -> anyhow::Result<Vec<String>> {
    let table: toml::Table = toml::from_str(defaults).context("the defaults are not TOML")?;
    let mut keys: Vec<String> = required.iter().map(|k| (*k).to_owned()).collect();
    aplanar("", &table, &mut keys);
    let mut vars: Vec<String> = keys.iter().map(|k| variable(k)).collect();
    vars.extend(VARIABLES_DE_REGISTRO.iter().map(|v| (*v).to_owned()));
    vars.sort();
    vars.dedup();
    Ok(vars)
}

fn aplanar(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(t) => aplanar(&path, t, out),
            _ => out.push(path),
        }
    }
}

/// Where the broker is: the `[pulsar]` section of a daemon's configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Pulsar {
    /// Service URL, e.g. `pulsar://127.0.0.1:6650`.
    pub url: String,
    /// Tenant of every topic.
    pub tenant: String,
    /// Namespace of every topic.
    pub namespace: String,
    /// The subscription of this daemon's consumers; every instance of a service shares it.
    pub subscription: String,
}

#[cfg(feature = "pulsar")]
impl Pulsar {
    /// The transport these settings describe, with the transport's defaults for the rest.
    pub fn transport(
        &self,
        codec: std::sync::Arc<dyn saga_core::transport::codec::Codec>,
    ) -> saga_pulsar::PulsarTransport {
        let config = saga_pulsar::PulsarConfig::new(&self.url, &self.tenant, &self.namespace, &self.subscription);
        saga_pulsar::PulsarTransport::new(config, codec)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn variables_follow_the_defaults() {
        let defaults = "http = \"x\"\n[pulsar]\nurl = \"u\"\ntenant = \"t\"\n";
        let vars = variables(defaults, &["database_url"]).unwrap();
        assert_eq!(
            vars,
            [
                "ALPES_LOG_FORMAT",
                "ALPES__DATABASE_URL",
                "ALPES__HTTP",
                "ALPES__PULSAR__TENANT",
                "ALPES__PULSAR__URL",
                "RUST_LOG"
            ]
        );
    }

    #[test]
    fn environment_overrides_and_missing_keys_are_named() {
        #[derive(Deserialize)]
        struct C {
            http: String,
            database_url: String,
        }
        // Only this test sets this variable name.
        let defaults = "http = \"127.0.0.1:1\"\n";
        let err = cargar::<C>(defaults, None, &["database_url"]).err().unwrap();
        assert!(format!("{err:#}").contains("ALPES__DATABASE_URL"), "{err:#}");
        let dir = std::env::temp_dir().join(format!("alpes-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "database_url = \"postgres://f\"\nhttp = \"127.0.0.1:2\"\n").unwrap();
        let c: C = cargar(defaults, Some(&file), &["database_url"]).unwrap();
        assert_eq!((c.http.as_str(), c.database_url.as_str()), ("127.0.0.1:2", "postgres://f"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
