//! Label and field selectors with upstream parsing, validation, matching and string forms.
//!
//! Start at [`LabelSelector::parse`] (the `?labelSelector=` query form) and
//! [`LabelSelector::from_label_selector`] (`matchLabels` + `matchExpressions` in objects);
//! [`FieldSelector::parse`] handles `?fieldSelector=`. Behaviour follows
//! `k8s.io/apimachinery/pkg/labels/selector.go` and `pkg/fields/selector.go`.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

use crate::status::{Cause, StatusError};

/// A selector that could not be parsed; the text is upstream's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

impl SelectorError {
    /// The 400 BadRequest the apiserver answers for a bad `labelSelector`/`fieldSelector`.
    pub fn to_status_error(&self) -> StatusError {
        StatusError::bad_request(self.0.clone())
    }
}

/// A requirement operator (upstream `selection.Operator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operator {
    /// `k in (a,b)`
    In,
    /// `k notin (a,b)`
    NotIn,
    /// `k=v`
    Equals,
    /// `k==v`
    DoubleEquals,
    /// `k!=v`
    NotEquals,
    /// `k`
    Exists,
    /// `!k`
    DoesNotExist,
    /// `k>5` (integer compare)
    GreaterThan,
    /// `k<5` (integer compare)
    LessThan,
}

/// One `key operator values` term; a selector is the AND of its requirements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted, without duplicates.
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether `labels` satisfy this requirement (upstream `Requirement.Matches`).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let got = labels.get(&self.key);
        let has = |v: &String| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => got.is_some_and(has),
            Operator::NotIn | Operator::NotEquals => !got.is_some_and(has),
            Operator::Exists => got.is_some(),
            Operator::DoesNotExist => got.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = got.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        f.write_str(op)?;
        if set {
            f.write_str("(")?;
        }
        f.write_str(&self.values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: the AND of its requirements, sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// Upstream `labels.Nothing()`: matches no object.
    nothing: bool,
}

impl LabelSelector {
    /// Matches every object.
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// Matches no object (upstream's selector for an absent `*LabelSelector`).
    pub fn nothing() -> LabelSelector {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// `k1=v1,k2=v2` for a plain map such as `Service.spec.selector` (no validation, as upstream's
    /// `SelectorFromSet`); an empty map selects everything.
    pub fn from_map(map: &BTreeMap<String, String>) -> LabelSelector {
        let requirements = map
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            })
            .collect();
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// Parse the query-string form, e.g. `app=web,tier notin (db),!legacy`.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let tokens = lex(s);
        let mut requirements = Parser { tokens, pos: 0 }.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Build and validate from an object's `LabelSelector`; cause fields are under `prefix`
    /// (e.g. `spec.selector`). An empty selector matches everything.
    pub fn from_label_selector(
        sel: &metav1::LabelSelector,
        prefix: &str,
    ) -> Result<LabelSelector, Vec<Cause>> {
        let causes = validate_label_selector(sel, prefix);
        if !causes.is_empty() {
            return Err(causes);
        }
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            });
        }
        for expr in sel.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                _ => Operator::DoesNotExist,
            };
            let mut values = expr.values.clone().unwrap_or_default();
            values.sort();
            values.dedup();
            requirements.push(Requirement {
                key: expr.key.clone(),
                operator,
                values,
            });
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Whether every requirement holds for `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True when the selector does not restrict anything (matches everything).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The value an `=`/`==`/single-value `in` requirement demands for `key` (upstream
    /// `RequiresExactMatch`), useful to index lookups.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer and parser for the query-string form.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    End,
    OpenPar,
    ClosePar,
    Comma,
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    In,
    NotIn,
    Ident,
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn special_token(s: &str) -> Option<Tok> {
    Some(match s {
        "(" => Tok::OpenPar,
        ")" => Tok::ClosePar,
        "," => Tok::Comma,
        "!" => Tok::Not,
        "=" => Tok::Eq,
        "==" => Tok::DoubleEq,
        "!=" => Tok::NotEq,
        ">" => Tok::Gt,
        "<" => Tok::Lt,
        _ => return None,
    })
}

/// Split `s` into tokens; the last one is always [`Tok::End`].
fn lex(s: &str) -> Vec<(Tok, String)> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        if i >= bytes.len() {
            out.push((Tok::End, String::new()));
            return out;
        }
        let start = i;
        if is_special(bytes[i]) {
            // Two-symbol operators win over their one-symbol prefixes, as upstream's greedy scan.
            let two = s.get(start..start + 2).and_then(special_token);
            let (tok, end) = match two {
                Some(t) => (t, start + 2),
                None => (
                    special_token(&s[start..start + 1]).unwrap_or(Tok::Comma),
                    start + 1,
                ),
            };
            out.push((tok, s[start..end].to_string()));
            i = end;
        } else {
            while i < bytes.len() && !is_special(bytes[i]) && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let word = &s[start..i];
            let tok = match word {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Ident,
            };
            out.push((tok, word.to_string()));
        }
    }
}

struct Parser {
    tokens: Vec<(Tok, String)>,
    pos: usize,
}

fn err<T>(msg: String) -> Result<T, SelectorError> {
    Err(SelectorError(msg))
}

impl Parser {
    /// The token at the cursor; in value position `in`/`notin` are plain identifiers.
    fn peek(&self, values: bool) -> (Tok, String) {
        let (t, l) = self
            .tokens
            .get(self.pos)
            .cloned()
            .unwrap_or((Tok::End, String::new()));
        match t {
            Tok::In | Tok::NotIn if values => (Tok::Ident, l),
            _ => (t, l),
        }
    }

    fn next(&mut self, values: bool) -> (Tok, String) {
        let t = self.peek(values);
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.peek(true);
            match tok {
                Tok::Ident | Tok::Not => {
                    let r = self.requirement().map_err(|e| {
                        SelectorError(format!("unable to parse requirement: {}", e.0))
                    })?;
                    reqs.push(r);
                    match self.next(true) {
                        (Tok::End, _) => return Ok(reqs),
                        (Tok::Comma, _) => {
                            let (t2, l2) = self.peek(true);
                            if t2 != Tok::Ident && t2 != Tok::Not {
                                return err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        (_, l) => {
                            return err(format!("found '{l}', expected: ',' or 'end of string'"));
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (mut tok, mut key) = self.next(true);
        let negated = tok == Tok::Not;
        if negated {
            (tok, key) = self.next(true);
        }
        if tok != Tok::Ident {
            return err(format!("found '{key}', expected: identifier"));
        }
        let errs = qualified_name_errors(&key);
        if !errs.is_empty() {
            return err(format!(
                "<nil>: Invalid value: \"{key}\": {}",
                errs.join("; ")
            ));
        }
        let at_end = matches!(self.peek(true).0, Tok::End | Tok::Comma);
        if negated || at_end {
            let operator = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Ok(Requirement {
                key,
                operator,
                values: Vec::new(),
            });
        }
        let operator = self.operator()?;
        let mut values = match operator {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        values.sort();
        values.dedup();
        check_values(&key, operator, &values)?;
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    fn operator(&mut self) -> Result<Operator, SelectorError> {
        let (tok, lit) = self.next(false);
        Ok(match tok {
            Tok::In => Operator::In,
            Tok::NotIn => Operator::NotIn,
            Tok::Eq => Operator::Equals,
            Tok::DoubleEq => Operator::DoubleEquals,
            Tok::NotEq => Operator::NotEquals,
            Tok::Gt => Operator::GreaterThan,
            Tok::Lt => Operator::LessThan,
            _ => {
                return err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    /// `(a,b,,c)`; empty members are the empty string.
    fn set_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, lit) = self.next(true);
        if tok != Tok::OpenPar {
            return err(format!("found '{lit}' expected: '('"));
        }
        let (tok, first) = self.peek(true);
        match tok {
            Tok::ClosePar => {
                self.next(true);
                return Ok(vec![String::new()]);
            }
            Tok::Ident | Tok::Comma => {}
            _ => return err(format!("found '{first}', expected: ',', ')' or identifier")),
        }
        let mut values = Vec::new();
        // Alternate value / comma; a comma not preceded by a value stands for "".
        let mut want_value = true;
        loop {
            let (tok, lit) = self.next(true);
            match (tok, want_value) {
                (Tok::Ident, true) => {
                    values.push(lit);
                    want_value = false;
                }
                (Tok::Comma, true) => values.push(String::new()),
                (Tok::Comma, false) => want_value = true,
                (Tok::ClosePar, _) => {
                    if want_value {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                (_, true) => return err(format!("found '{lit}', expected: ',', or identifier")),
                (_, false) => return err(format!("found '{lit}', expected: ',' or ')'")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.peek(true) {
            (Tok::End | Tok::Comma, _) => Ok(vec![String::new()]),
            (Tok::Ident, lit) => {
                self.next(true);
                Ok(vec![lit])
            }
            (_, lit) => err(format!("found '{lit}', expected: identifier")),
        }
    }
}

/// Upstream `NewRequirement` value checks, with its field paths (`values[0][key]`).
fn check_values(key: &str, op: Operator, values: &[String]) -> Result<(), SelectorError> {
    let mut errs = Vec::new();
    if matches!(op, Operator::GreaterThan | Operator::LessThan) {
        for (i, v) in values.iter().enumerate() {
            if v.parse::<i64>().is_err() {
                errs.push(format!(
                    "values[{i}]: Invalid value: \"{v}\": for 'Gt', 'Lt' operators, the value must be an integer"
                ));
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let msgs = label_value_errors(v);
        if !msgs.is_empty() {
            errs.push(format!(
                "values[{i}][{key}]: Invalid value: \"{v}\": {}",
                msgs.join("; ")
            ));
        }
    }
    match errs.len() {
        0 => Ok(()),
        1 => err(errs.remove(0)),
        _ => err(format!("[{}]", errs.join(", "))),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation (upstream k8s.io/apimachinery/pkg/util/validation).

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// Upstream `RegexError`: `msg (e.g. 'a',  or 'b', regex used for validation is 'fmt')`.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() && b.iter().all(inner)
        }
        _ => false,
    }
}

/// Upstream `IsDNS1123Subdomain` messages (empty when valid).
pub fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        match (b.first(), b.last()) {
            (Some(f), Some(e)) => ok(f) && ok(e) && b.iter().all(|c| ok(c) || *c == b'-'),
            _ => false,
        }
    };
    if !s.split('.').all(label_ok) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Upstream `IsQualifiedName` messages for a label key (empty when valid).
pub fn qualified_name_errors(s: &str) -> Vec<String> {
    let parts: Vec<&str> = s.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            )];
        }
    };
    let mut errs = Vec::new();
    match prefix {
        Some("") => errs.push("prefix part must be non-empty".to_string()),
        Some(p) => errs.extend(
            dns1123_subdomain_errors(p)
                .into_iter()
                .map(|m| format!("prefix part {m}")),
        ),
        None => {}
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Upstream `IsValidLabelValue` messages (empty when valid; `""` is valid).
pub fn label_value_errors(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !v.is_empty() && !is_qualified_name_part(v) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            &format!("({QUALIFIED_NAME_FMT})?"),
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Upstream `ValidateLabelSelector` for an object's selector; fields under `prefix`.
pub fn validate_label_selector(sel: &metav1::LabelSelector, prefix: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let ml = format!("{prefix}.matchLabels");
    for (k, v) in sel.match_labels.iter().flatten() {
        for m in qualified_name_errors(k) {
            causes.push(Cause::invalid(ml.clone(), &Value::String(k.clone()), &m));
        }
        for m in label_value_errors(v) {
            causes.push(Cause::invalid(ml.clone(), &Value::String(v.clone()), &m));
        }
    }
    for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
        let at = format!("{prefix}.matchExpressions[{i}]");
        let values = expr.values.as_deref().unwrap_or_default();
        match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => causes.push(Cause::required(
                format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => causes.push(Cause::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => causes.push(Cause::invalid(
                format!("{at}.operator"),
                &Value::String(other.to_string()),
                "not a valid selector operator",
            )),
        }
        for m in qualified_name_errors(&expr.key) {
            causes.push(Cause::invalid(
                format!("{at}.key"),
                &Value::String(expr.key.clone()),
                &m,
            ));
        }
        for (j, v) in values.iter().enumerate() {
            for m in label_value_errors(v) {
                causes.push(Cause::invalid(
                    format!("{at}.values[{j}]"),
                    &Value::String(v.clone()),
                    &m,
                ));
            }
        }
    }
    causes
}

// ---------------------------------------------------------------------------------------------
// Field selectors.

/// One `field=value` / `field!=value` term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub value: String,
    /// True for `!=`.
    pub negated: bool,
}

/// A field selector: the AND of its terms (sorted as upstream sorts the raw terms).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parse `metadata.name=foo,spec.nodeName!=` (values may escape `\,` `\=` `\\`).
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut parts = split_unescaped_commas(s);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((field, negated, raw)) = split_field_term(part) else {
                return err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            terms.push(FieldTerm {
                field: field.to_string(),
                value: unescape(raw)?,
                negated,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// Whether every term holds; `get` returns a field's value (absent counts as `""`).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|t| {
            let have = get(&t.field).unwrap_or_default();
            (have == t.value) != t.negated
        })
    }

    /// The field names used, so the caller can reject unsupported ones.
    pub fn fields(&self) -> Vec<&str> {
        self.terms.iter().map(|t| t.field.as_str()).collect()
    }

    /// The terms in order.
    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// True when the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value an `=` term demands for `field`, if any.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && !t.negated)
            .map(|t| t.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = if t.negated { "!=" } else { "=" };
            let escaped = t
                .value
                .replace('\\', "\\\\")
                .replace(',', "\\,")
                .replace('=', "\\=");
            write!(f, "{}{op}{escaped}", t.field)?;
        }
        Ok(())
    }
}

/// Split on commas not preceded by a backslash escape (escapes are kept).
fn split_unescaped_commas(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The first `!=`, `==` or `=` splits field from raw value.
fn split_field_term(term: &str) -> Option<(&str, bool, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        if let Some(v) = rest.strip_prefix("!=") {
            return Some((&term[..i], true, v));
        }
        if let Some(v) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
            return Some((&term[..i], false, v));
        }
    }
    None
}

fn unescape(raw: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return err(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                ));
            }
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' || c == '=' {
            return err(format!(
                "invalid field selector: unescaped character in value: {c}"
            ));
        } else {
            out.push(c);
        }
    }
    if escaped {
        return err("invalid field selector: invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
