//! The shape of the generated protobuf schema table (`schema.rs`): messages, fields, presence.
//!
//! Start at [`Message`] and [`Presence`] (how a field's absence or zero value shows in JSON).

/// An API group/version and the proto package that holds its kinds.
#[derive(Debug)]
pub struct Group {
    pub group: &'static str,
    pub version: &'static str,
    pub package: &'static str,
}

/// One protobuf message.
#[derive(Debug)]
pub struct Message {
    /// Full proto name, e.g. `k8s.io.api.apps.v1.Deployment`.
    pub name: &'static str,
    /// A registered kind (its Go struct embeds TypeMeta): may be the top-level object of a body.
    pub kind: bool,
    /// A message with a JSON form of its own (Time, Quantity, IntOrString, ...).
    pub special: Option<Special>,
    /// Sorted by field number.
    pub fields: &'static [Field],
}

/// Messages whose JSON form is not an object of their fields (their Go `MarshalJSON`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// metav1.Time: RFC 3339 in seconds; the zero time is `null`.
    Time,
    /// metav1.MicroTime: RFC 3339 with microseconds; the zero time is `null`.
    MicroTime,
    /// metav1.Duration: a Go duration string (`1h0m0s`).
    Duration,
    /// resource.Quantity: its string form; the zero quantity is `"0"`.
    Quantity,
    /// intstr.IntOrString: an integer or a string by its `type`.
    IntOrString,
    /// runtime.RawExtension, metav1.FieldsV1: the raw bytes are embedded JSON.
    RawJson,
    /// A Go slice wrapped for protobuf (metav1.Verbs, ExtraValue): its `items` as an array.
    Items,
}

/// A field's value type (for maps: the value's type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Str,
    Bool,
    I32,
    I64,
    U32,
    U64,
    F64,
    F32,
    Bytes,
    /// Index into `MESSAGES`.
    Msg(u16),
}

/// Single, repeated, or a map with this key type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Card {
    One,
    Rep,
    Map(Ty),
}

/// How Go's encoding/json renders the Go field the protobuf field decodes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// A pointer with `omitempty` (or a field without Go information): present iff on the wire.
    Wire,
    /// A pointer without `omitempty`: `null` when not on the wire.
    WireOrNull,
    /// `omitempty` on a value: left out when zero or empty.
    OmitEmpty,
    /// A slice or map without `omitempty`: `null` when empty.
    NullIfEmpty,
    /// A value without `omitempty` (or any struct): always present, its zero value if not sent.
    Always,
    /// An embedded struct (`json:""`): its fields merge into the parent object.
    Inline,
}

/// One field of a message.
#[derive(Debug)]
pub struct Field {
    pub number: u32,
    /// The JSON name (for [`Presence::Inline`], the proto name; unused).
    pub json: &'static str,
    pub ty: Ty,
    pub card: Card,
    pub presence: Presence,
}
