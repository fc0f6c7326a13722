//! Resource arithmetic for the scheduler: `Quantity` parsing, a pod's effective requests (as
//! upstream `noderesources` computes them) and a node's allocatable.
//!
//! Start at [`pod_requests`] and [`node_allocatable`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// CPU the scoring plugins assume for a container without a CPU request, in millicores.
/// Upstream `schedutil.DefaultMilliCPURequest` (pkg/scheduler/util/pod_resources.go): 100m.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory the scoring plugins assume for a container without a memory request, in bytes.
/// Upstream `schedutil.DefaultMemoryRequest`: 200 MiB.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// CPU (millicores), memory (bytes) and pod count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub pods: i64,
}

impl Resources {
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.pods += other.pods;
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.pods -= other.pods;
    }

    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
    }
}

/// What a pod takes from a node: real requests (the fit filter) and requests with the
/// non-zero defaults (the scoring plugins), both counting one pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodUsage {
    pub requested: Resources,
    pub non_zero: Resources,
}

impl PodUsage {
    pub fn add(&mut self, other: &PodUsage) {
        self.requested.add(&other.requested);
        self.non_zero.add(&other.non_zero);
    }

    pub fn sub(&mut self, other: &PodUsage) {
        self.requested.sub(&other.requested);
        self.non_zero.sub(&other.non_zero);
    }
}

/// Parse a Kubernetes quantity and return `value * 1000` rounded up (so `"100m"` is 100 and
/// `"1Gi"` is 1073741824000). `None` for malformed input.
pub fn parse_milli(q: &str) -> Option<i128> {
    let q = q.trim();
    let (negative, q) = match q.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, q.strip_prefix('+').unwrap_or(q)),
    };
    let num_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(num_end);
    if num.is_empty() || num.len() > 30 {
        return None;
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    if frac_part.contains('.') {
        return None;
    }
    let digits: String = format!("{int_part}{frac_part}");
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let frac_digits = frac_part.len() as i32;
    // Returns (binary exponent in units of 2^10, decimal exponent).
    let (bin, dec): (u32, i32) = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (1, 0),
        "Mi" => (2, 0),
        "Gi" => (3, 0),
        "Ti" => (4, 0),
        "Pi" => (5, 0),
        "Ei" => (6, 0),
        s if s.starts_with(['e', 'E']) => (0, s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    let mut numerator = mantissa.checked_mul(1024i128.checked_pow(bin)?)?;
    let exp10 = 3 + dec - frac_digits;
    let mut denominator: i128 = 1;
    if exp10 >= 0 {
        numerator = numerator.checked_mul(10i128.checked_pow(exp10 as u32)?)?;
    } else {
        denominator = 10i128.checked_pow((-exp10) as u32)?;
    }
    let value = (numerator + denominator - 1) / denominator;
    Some(if negative { -value } else { value })
}

/// A quantity in thousandths (CPU millicores), saturating at `i64` range.
pub fn milli_value(q: &Quantity) -> Option<i64> {
    parse_milli(&q.0).map(|v| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

/// A quantity in whole units rounded up (bytes, pods).
pub fn value(q: &Quantity) -> Option<i64> {
    parse_milli(&q.0).map(|v| {
        let units = if v >= 0 { (v + 999) / 1000 } else { v / 1000 };
        units.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    })
}

fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> (Option<i64>, Option<i64>) {
    let Some(list) = list else {
        return (None, None);
    };
    let cpu = list.get("cpu").and_then(milli_value);
    let mem = list.get("memory").and_then(value);
    (cpu, mem)
}

/// One container's requests: real, and with the scoring defaults for missing ones.
fn container_usage(requests: Option<&BTreeMap<String, Quantity>>) -> (Resources, Resources) {
    let (cpu, mem) = from_list(requests);
    let real = Resources {
        milli_cpu: cpu.unwrap_or(0),
        memory: mem.unwrap_or(0),
        pods: 0,
    };
    let non_zero = Resources {
        milli_cpu: cpu.unwrap_or(DEFAULT_MILLI_CPU_REQUEST),
        memory: mem.unwrap_or(DEFAULT_MEMORY_REQUEST),
        pods: 0,
    };
    (real, non_zero)
}

/// A pod's effective requests as upstream computes them (`resourcehelper.PodRequests`): the
/// sum of its containers and restartable (sidecar) init containers, at least the largest
/// regular init container plus the sidecars started before it, plus `spec.overhead`.
pub fn pod_requests(pod: &Pod) -> PodUsage {
    let mut out = PodUsage::default();
    let Some(spec) = pod.spec.as_ref() else {
        out.requested.pods = 1;
        out.non_zero.pods = 1;
        return out;
    };
    for c in &spec.containers {
        let (real, nz) = container_usage(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
        out.requested.add(&real);
        out.non_zero.add(&nz);
    }
    let mut sidecars = PodUsage::default();
    let mut init_max = PodUsage::default();
    for c in spec.init_containers.iter().flatten() {
        let (real, nz) = container_usage(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.requested.add(&real);
            sidecars.non_zero.add(&nz);
            out.requested.add(&real);
            out.non_zero.add(&nz);
        } else {
            let mut total = sidecars;
            total.requested.add(&real);
            total.non_zero.add(&nz);
            init_max.requested.max_with(&total.requested);
            init_max.non_zero.max_with(&total.non_zero);
        }
    }
    out.requested.max_with(&init_max.requested);
    out.non_zero.max_with(&init_max.non_zero);
    let (cpu, mem) = from_list(spec.overhead.as_ref());
    let overhead = Resources {
        milli_cpu: cpu.unwrap_or(0),
        memory: mem.unwrap_or(0),
        pods: 0,
    };
    out.requested.add(&overhead);
    out.non_zero.add(&overhead);
    out.requested.pods = 1;
    out.non_zero.pods = 1;
    out
}

/// A node's `status.allocatable` (cpu, memory, pods); missing entries are zero, as upstream.
pub fn node_allocatable(node: &Node) -> Resources {
    let list = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let (cpu, mem) = from_list(list);
    let pods = list
        .and_then(|l| l.get("pods"))
        .and_then(value)
        .unwrap_or(0);
    Resources {
        milli_cpu: cpu.unwrap_or(0),
        memory: mem.unwrap_or(0),
        pods,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_like_upstream() {
        assert_eq!(parse_milli("100m"), Some(100));
        assert_eq!(parse_milli("1"), Some(1000));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_milli("2.5"), Some(2500));
        assert_eq!(parse_milli("128Mi"), Some(128 * 1024 * 1024 * 1000));
        assert_eq!(parse_milli("1Gi"), Some(1024 * 1024 * 1024 * 1000));
        assert_eq!(parse_milli("1G"), Some(1_000_000_000_000));
        assert_eq!(parse_milli("1k"), Some(1_000_000));
        assert_eq!(parse_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_milli("1E"), Some(1_000_000_000_000_000_000_000));
        assert_eq!(parse_milli("0.0001"), Some(1), "rounds up");
        assert_eq!(parse_milli("-1"), Some(-1000));
        assert_eq!(parse_milli("abc"), None);
        assert_eq!(parse_milli("1Zi"), None);
        assert_eq!(parse_milli(""), None);
        assert_eq!(value(&Quantity("1.5Ki".into())), Some(1536));
        assert_eq!(value(&Quantity("110".into())), Some(110));
    }

    #[test]
    fn pod_requests_sum_containers_and_take_init_max() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                    {"name": "b"}
                ],
                "initContainers": [
                    {"name": "i", "resources": {"requests": {"cpu": "2"}}},
                    {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}}
                ]
            }
        }))
        .unwrap();
        let u = pod_requests(&pod);
        assert_eq!(
            u.requested,
            Resources {
                milli_cpu: 2000,
                memory: 64 * 1024 * 1024,
                pods: 1
            }
        );
        assert_eq!(u.non_zero.milli_cpu, 2000);
        assert_eq!(
            u.non_zero.memory,
            64 * 1024 * 1024 + 2 * DEFAULT_MEMORY_REQUEST
        );
    }
}
