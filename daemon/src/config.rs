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
/// names the keys without a default, for the error message. An empty variable counts as unset;
/// a key the configuration does not have (a typo such as `ALPES__PULSAR_URL`) is an error if the
/// configuration type says `deny_unknown_fields`, as the daemons' do.
pub fn load<T: DeserializeOwned>(defaults: &str, file: Option<&Path>, required: &[&str]) -> anyhow::Result<T> {
    load_from(defaults, file, required, None)
}

/// [`load`] with the variables given instead of the process's (tests).
fn load_from<T: DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
    required: &[&str],
    variables: Option<config::Map<String, String>>,
) -> anyhow::Result<T> {
    let mut builder = config::Config::builder().add_source(config::File::from_str(defaults, config::FileFormat::Toml));
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    let needed: Vec<String> = required.iter().map(|k| variable(k)).collect();
    builder
        .add_source(
            config::Environment::with_prefix(PREFIJO)
                .prefix_separator("__")
                .separator("__")
                .ignore_empty(true)
                .source(variables),
        )
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
#[serde(deny_unknown_fields)]
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

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nested {
        http: String,
        step_timeout_secs: u64,
        database_url: String,
        pulsar: Pulsar,
    }

    const NESTED: &str = "http = \"127.0.0.1:1\"\nstep_timeout_secs = 10\n[pulsar]\nurl = \"pulsar://d:1\"\n\
                          tenant = \"t\"\nnamespace = \"n\"\nsubscription = \"s\"\n";

    fn vars(pairs: &[(&str, &str)]) -> Option<config::Map<String, String>> {
        Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn variables_override_nested_keys_and_typos_and_empties_are_refused() {
        let c: Nested = load_from(
            NESTED,
            None,
            &["database_url"],
            vars(&[
                ("ALPES__DATABASE_URL", "postgres://x"),
                ("ALPES__STEP_TIMEOUT_SECS", "3"),
                ("ALPES__PULSAR__URL", "pulsar://b:6650"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (c.step_timeout_secs, c.pulsar.url.as_str(), c.http.as_str()),
            (3, "pulsar://b:6650", "127.0.0.1:1")
        );
        assert_eq!(c.database_url, "postgres://x");
        // A typo (one underscore) is a key the configuration does not have.
        let typo = load_from::<Nested>(
            NESTED,
            None,
            &["database_url"],
            vars(&[("ALPES__DATABASE_URL", "postgres://x"), ("ALPES__PULSAR_URL", "pulsar://typo:1")]),
        );
        assert!(format!("{:#}", typo.unwrap_err()).contains("pulsar_url"));
        // An empty required variable is missing, and named.
        let empty = load_from::<Nested>(NESTED, None, &["database_url"], vars(&[("ALPES__DATABASE_URL", "")]));
        assert!(format!("{:#}", empty.unwrap_err()).contains("ALPES__DATABASE_URL"));
    }

    #[test]
    fn environment_overrides_and_missing_keys_are_named() {
        #[derive(Deserialize)]
        struct C {
            http: String,
            database_url: String,
        }
        let defaults = "http = \"127.0.0.1:1\"\n";
        let err = load_from::<C>(defaults, None, &["database_url"], vars(&[])).err().unwrap();
        assert!(format!("{err:#}").contains("ALPES__DATABASE_URL"), "{err:#}");
        let dir = std::env::temp_dir().join(format!("alpes-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "database_url = \"postgres://f\"\nhttp = \"127.0.0.1:2\"\n").unwrap();
        let c: C = load_from(defaults, Some(&file), &["database_url"], vars(&[])).unwrap();
        assert_eq!((c.http.as_str(), c.database_url.as_str()), ("127.0.0.1:2", "postgres://f"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
