//! The modelled delays: API writes, watch delivery, the pod runtime, rule application and the
//! network, each a uniform range of milliseconds drawn from the run's seeded RNG.
//!
//! Start at [`LatencyModel::default`]. The defaults follow three measured live runs of
//! `examples/zone-power-off.yaml` on one machine (loopback HTTP to the embedded store,
//! `ip netns` + veth per pod, `nft -f` per sync); the figures and commands are in
//! docs/simulator.md ("Latency model and calibration").

use std::time::Duration;

use controllers::time::span_ms;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A delay drawn uniformly from `[min_ms, max_ms]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    pub min_ms: i64,
    pub max_ms: i64,
}

impl Latency {
    pub const fn between(min_ms: i64, max_ms: i64) -> Latency {
        Latency { min_ms, max_ms }
    }

    /// One draw (the range is drawn as i64 milliseconds, so a seed gives the same stream).
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> Duration {
        if self.max_ms <= self.min_ms {
            return span_ms(self.min_ms);
        }
        span_ms(rng.random_range(self.min_ms..=self.max_ms))
    }
}

/// A write from issue to commit (and its answer): an HTTP request over loopback to the
/// embedded store; live median 2.0 – 2.6 ms.
pub const API_WRITE: Latency = Latency::between(1, 4);
/// From a commit to an informer that watches it (the watch cache fan-out plus HTTP chunk);
/// live, the event mostly arrives before the write's own answer.
pub const WATCH_DELIVERY: Latency = Latency::between(0, 2);
/// A write from a node that cannot reach the API (partition) fails after this long (the
/// client-go request timeout the kubelet's lease client uses is its renew interval, 10 s).
pub const UNREACHABLE_WRITE_TIMEOUT: Duration = Duration::from_millis(10_000);
/// Creating a pod's network namespace and veth pair. With the container start and the first
/// probe: pod bound → ready, live medians 100 – 167 ms.
pub const POD_NETWORK_SETUP: Latency = Latency::between(40, 120);
/// Starting a container process in it.
pub const CONTAINER_START: Latency = Latency::between(10, 40);
/// A container exiting after SIGTERM (the echo server exits at once) or SIGKILL.
pub const CONTAINER_STOP: Latency = Latency::between(2, 10);
/// Removing a pod's namespace.
pub const POD_NETWORK_TEARDOWN: Latency = Latency::between(10, 30);
/// A readiness/liveness probe's round trip to a running container.
pub const PROBE: Latency = Latency::between(1, 2);
/// Applying one rule transaction (`nft -f -` / `iptables-restore`); live median 20 – 26 ms.
pub const RULE_APPLY: Latency = Latency::between(5, 40);
/// A request's round trip to a running backend (new connection: handshake plus answer);
/// live median 0.7 – 0.8 ms.
pub const REQUEST: Latency = Latency::between(0, 2);

/// A client pod, created at t0, sends its first request this long after: its write, the
/// kubelet's pod start and `zonelab load` starting up; live 47 – 177 ms.
pub const CLIENT_START: Latency = Latency::between(50, 180);

/// Every modelled delay of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyModel {
    pub api_write: Latency,
    pub watch_delivery: Latency,
    pub unreachable_write_timeout: Duration,
    pub pod_network_setup: Latency,
    pub container_start: Latency,
    pub container_stop: Latency,
    pub pod_network_teardown: Latency,
    pub probe: Latency,
    pub rule_apply: Latency,
    pub request: Latency,
    pub client_start: Latency,
}

impl Default for LatencyModel {
    fn default() -> LatencyModel {
        LatencyModel {
            api_write: API_WRITE,
            watch_delivery: WATCH_DELIVERY,
            unreachable_write_timeout: UNREACHABLE_WRITE_TIMEOUT,
            pod_network_setup: POD_NETWORK_SETUP,
            container_start: CONTAINER_START,
            container_stop: CONTAINER_STOP,
            pod_network_teardown: POD_NETWORK_TEARDOWN,
            probe: PROBE,
            rule_apply: RULE_APPLY,
            request: REQUEST,
            client_start: CLIENT_START,
        }
    }
}
