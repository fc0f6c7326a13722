//! Strategic-merge patch metadata per kind: which lists merge, and by which key; start at
//! [`merge_key_for`].
//!
//! Taken from the `patchStrategy`/`patchMergeKey` struct tags in upstream
//! `k8s.io/api/core/v1/types.go`, `apps/v1/types.go` and `apimachinery/pkg/apis/meta/v1/types.go`
//! (v1.33). Lists not listed here are replaced whole, as upstream does for untagged lists; notable
//! untagged (atomic) lists: `Container.resizePolicy`, `Container.args/command/envFrom`,
//! `PodSpec.tolerations/readinessGates`, `NodeSpec.taints`, `ServiceSpec.clusterIPs`,
//! `EndpointSlice.endpoints/ports`.

/// One field of a struct type: its JSON name, patch strategy (`""`, `"merge"`, `"retainKeys"`,
/// `"merge,retainKeys"`), merge key, and the struct type of its value (or list element).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FieldMeta {
    pub name: &'static str,
    pub strategy: &'static str,
    pub key: Option<&'static str>,
    pub ty: Option<&'static str>,
}

const fn f(
    name: &'static str,
    strategy: &'static str,
    key: Option<&'static str>,
    ty: Option<&'static str>,
) -> FieldMeta {
    FieldMeta {
        name,
        strategy,
        key,
        ty,
    }
}

/// The kinds [`super::strategic_merge_patch`] accepts.
pub const PATCH_KINDS: &[&str] = &[
    "ConfigMap",
    "DaemonSet",
    "Deployment",
    "EndpointSlice",
    "Event",
    "Lease",
    "Namespace",
    "Node",
    "Pod",
    "PodDisruptionBudget",
    "ReplicaSet",
    "Secret",
    "Service",
    "ServiceAccount",
];

const META: FieldMeta = f("metadata", "", None, Some("ObjectMeta"));
const CONDITIONS: FieldMeta = f("conditions", "merge", Some("type"), None);

const CONTAINER: &[FieldMeta] = &[
    f("ports", "merge", Some("containerPort"), None),
    f("env", "merge", Some("name"), None),
    f("volumeMounts", "merge", Some("mountPath"), None),
    f("volumeDevices", "merge", Some("devicePath"), None),
];

/// Type name → its fields with patch metadata (or leading to some); a kind is its root type.
const TYPES: &[(&str, &[FieldMeta])] = &[
    (
        "Pod",
        &[
            META,
            f("spec", "", None, Some("PodSpec")),
            f("status", "", None, Some("PodStatus")),
        ],
    ),
    (
        "Service",
        &[
            META,
            f("spec", "", None, Some("ServiceSpec")),
            f("status", "", None, Some("Conditions")),
        ],
    ),
    (
        "Node",
        &[
            META,
            f("spec", "", None, Some("NodeSpec")),
            f("status", "", None, Some("NodeStatus")),
        ],
    ),
    (
        "Deployment",
        &[
            META,
            f("spec", "", None, Some("DeploymentSpec")),
            f("status", "", None, Some("Conditions")),
        ],
    ),
    (
        "ReplicaSet",
        &[
            META,
            f("spec", "", None, Some("ReplicaSetSpec")),
            f("status", "", None, Some("Conditions")),
        ],
    ),
    (
        "DaemonSet",
        &[
            META,
            // DaemonSetSpec: as in ReplicaSetSpec, only `template` leads to tagged lists.
            f("spec", "", None, Some("ReplicaSetSpec")),
            f("status", "", None, Some("Conditions")),
        ],
    ),
    (
        "Namespace",
        &[META, f("status", "", None, Some("Conditions"))],
    ),
    ("EndpointSlice", &[META]),
    ("Lease", &[META]),
    ("Event", &[META]),
    ("ConfigMap", &[META]),
    ("Secret", &[META]),
    (
        "ServiceAccount",
        &[
            META,
            f("secrets", "merge", Some("name"), None),
            f("imagePullSecrets", "merge", Some("name"), None),
        ],
    ),
    (
        "PodDisruptionBudget",
        &[META, f("status", "", None, Some("Conditions"))],
    ),
    (
        "ObjectMeta",
        &[
            f("ownerReferences", "merge", Some("uid"), None),
            f("finalizers", "merge", None, None),
        ],
    ),
    (
        "PodTemplateSpec",
        &[META, f("spec", "", None, Some("PodSpec"))],
    ),
    (
        "DeploymentSpec",
        &[
            f("template", "", None, Some("PodTemplateSpec")),
            f("strategy", "retainKeys", None, None),
        ],
    ),
    (
        "ReplicaSetSpec",
        &[f("template", "", None, Some("PodTemplateSpec"))],
    ),
    // Service, Deployment, ReplicaSet and Namespace statuses: only `conditions` is tagged.
    ("Conditions", &[CONDITIONS]),
    (
        "PodSpec",
        &[
            f("volumes", "merge,retainKeys", Some("name"), None),
            f("initContainers", "merge", Some("name"), Some("Container")),
            f("containers", "merge", Some("name"), Some("Container")),
            f(
                "ephemeralContainers",
                "merge",
                Some("name"),
                Some("Container"),
            ),
            f("imagePullSecrets", "merge", Some("name"), None),
            f("hostAliases", "merge", Some("ip"), None),
            f(
                "topologySpreadConstraints",
                "merge",
                Some("topologyKey"),
                None,
            ),
            f("schedulingGates", "merge", Some("name"), None),
            f("resourceClaims", "merge,retainKeys", Some("name"), None),
        ],
    ),
    ("Container", CONTAINER),
    (
        "PodStatus",
        &[
            CONDITIONS,
            f("podIPs", "merge", Some("ip"), None),
            f("hostIPs", "merge", Some("ip"), None),
            f(
                "resourceClaimStatuses",
                "merge,retainKeys",
                Some("name"),
                None,
            ),
        ],
    ),
    ("ServiceSpec", &[f("ports", "merge", Some("port"), None)]),
    ("NodeSpec", &[f("podCIDRs", "merge", None, None)]),
    (
        "NodeStatus",
        &[CONDITIONS, f("addresses", "merge", Some("type"), None)],
    ),
];

/// The fields with patch metadata of type `ty` (empty for types without any).
pub(crate) fn fields_of(ty: &str) -> &'static [FieldMeta] {
    TYPES
        .iter()
        .find(|(name, _)| *name == ty)
        .map(|(_, fields)| *fields)
        .unwrap_or_default()
}

/// The metadata of `field` within struct type `ty`, if it has any.
pub(crate) fn lookup(ty: Option<&str>, field: &str) -> Option<FieldMeta> {
    fields_of(ty?).iter().find(|m| m.name == field).copied()
}

/// The patch strategy and merge key of the field at `path` (JSON field names, no list indices)
/// in an object of `kind`, e.g. `("Deployment", ["spec","template","spec","containers"])` →
/// `Some(("merge", Some("name")))`. `None` when the field has no strategy (it is replaced).
pub fn merge_key_for(kind: &str, path: &[&str]) -> Option<(&'static str, Option<&'static str>)> {
    let (last, parents) = path.split_last()?;
    let mut ty = Some(fields_of_kind(kind)?);
    for p in parents {
        ty = lookup(ty, p)?.ty;
    }
    let m = lookup(ty, last)?;
    (!m.strategy.is_empty()).then_some((m.strategy, m.key))
}

/// The root type name of a served kind.
pub(crate) fn fields_of_kind(kind: &str) -> Option<&'static str> {
    PATCH_KINDS.iter().find(|k| **k == kind).copied()
}

/// Whether a strategy string says lists merge (`merge` or `merge,retainKeys`).
pub(crate) fn is_merge(strategy: &str) -> bool {
    strategy.split(',').any(|s| s == "merge")
}

/// Whether a strategy string says maps are replaced whole.
pub(crate) fn is_replace(strategy: &str) -> bool {
    strategy.split(',').any(|s| s == "replace")
}
