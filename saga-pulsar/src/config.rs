//! Where the broker is, how topics are named, and how patient the transport is with the broker.

use std::time::Duration;

/// What a dead-letter topic's name adds to its address: poison from `comandos.marca` goes to
/// `comandos.marca.dlq`, in the same tenant and namespace.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// The durable subscription the transport creates on every dead-letter topic before its first
/// dead letter, so the broker keeps them until an operator reads and acknowledges them.
pub const DEAD_LETTER_SUBSCRIPTION: &str = "dead-letters";

/// How the transport's producers and consumers share TCP connections to the broker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Connections {
    /// One client (one connection) for every producer, and one more per receiver for its
    /// consumer and its acknowledgements. The default: the pulsar crate never sets TCP_NODELAY,
    /// and on one shared connection a publish and an acknowledgement written back to back wait
    /// on Nagle's algorithm against the broker's delayed ACK (README.md, "Nagle").
    #[default]
    Separate,
    /// Everything over the publishing client's connection. Kept to measure what `Separate`
    /// buys (`benches/roundtrip.rs`); not meant for deployments.
    Shared,
}

/// The transport's configuration.
#[derive(Clone, Debug)]
pub struct PulsarConfig {
    /// Service URL, e.g. `pulsar://127.0.0.1:6650`.
    pub url: String,
    /// Tenant of every topic.
    pub tenant: String,
    /// Namespace of every topic.
    pub namespace: String,
    /// Subscription name of this deployment's consumers. Every instance of a service uses the
    /// same one, so they share the messages (a Shared subscription).
    pub subscription: String,
    /// How long one send attempt (producer creation, publish, the broker's receipt) may take
    /// before the producer is rebuilt and the message resent. Also the client's own operation
    /// timeout on the publishing connection.
    pub send_timeout: Duration,
    /// Send attempts before `send_*` gives up with `TransportError::Unavailable`.
    pub send_attempts: u32,
    /// Pause before the second attempt; doubled for each further one, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest pause between two send attempts, and between two attempts to (re)subscribe.
    pub max_backoff: Duration,
    /// How long `commands()` / `replies()` wait for the subscription to exist on the broker
    /// before answering `Unavailable`.
    pub subscribe_timeout: Duration,
    /// Messages a receiver may hold that the application has not asked for yet (the consumer's
    /// flow permits). Small, so that a busy or stuck instance does not hoard messages its
    /// siblings on the subscription could serve; not tiny, since each refill is a round trip.
    pub prefetch: u32,
    /// How producers and consumers share connections.
    pub connections: Connections,
}

impl PulsarConfig {
    /// A configuration with the defaults: 10 s per send attempt and 5 attempts (with 0.25 s to
    /// 5 s pauses, under a minute in all: beyond that the engine's own send retries and step
    /// timeout take over), 30 s to subscribe, 100 messages of prefetch, separate connections.
    pub fn new(
        url: impl Into<String>,
        tenant: impl Into<String>,
        namespace: impl Into<String>,
        subscription: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            tenant: tenant.into(),
            namespace: namespace.into(),
            subscription: subscription.into(),
            send_timeout: Duration::from_secs(10),
            send_attempts: 5,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            subscribe_timeout: Duration::from_secs(30),
            prefetch: 100,
            connections: Connections::Separate,
        }
    }

    /// The full topic name of an address: `persistent://{tenant}/{namespace}/{address}`.
    pub fn topic(&self, address: &str) -> String {
        format!("persistent://{}/{}/{}", self.tenant, self.namespace, address)
    }

    /// The full name of the dead-letter topic of an address.
    pub fn dead_letter_topic(&self, address: &str) -> String {
        self.topic(&format!("{address}{DEAD_LETTER_SUFFIX}"))
    }

    /// The pause before send attempt `attempt` (0-based; 0 has none).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (attempt - 1).min(16);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_backoff() {
        let c = PulsarConfig::new("pulsar://x:6650", "alpes", "afiliaciones", "marca");
        assert_eq!(c.topic("comandos.marca"), "persistent://alpes/afiliaciones/comandos.marca");
        assert_eq!(c.dead_letter_topic("comandos.marca"), "persistent://alpes/afiliaciones/comandos.marca.dlq");
        let pauses: Vec<u128> = (0..8).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(pauses, [0, 250, 500, 1000, 2000, 4000, 5000, 5000]);
    }
}
