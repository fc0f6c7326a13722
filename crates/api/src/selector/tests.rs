//! Tests of label and field selectors.
use super::*;
use metav1::LabelSelectorRequirement as Expr;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(s: &str) -> LabelSelector {
    LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn every_operator_matches_like_upstream() {
    let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
    let cases = [
        ("app=web", true),
        ("app==web", true),
        ("app=db", false),
        ("app!=db", true),
        ("missing!=x", true),
        ("app in (db, web)", true),
        ("app in (db)", false),
        ("missing in (x)", false),
        ("app notin (db)", true),
        ("app notin (web)", false),
        ("missing notin (x)", true),
        ("app", true),
        ("missing", false),
        ("!missing", true),
        ("!app", false),
        ("n>4", true),
        ("n<5", false),
        ("app>1", false),
        ("app=web,tier=front", true),
        ("app=web,tier=back", false),
    ];
    for (s, want) in cases {
        assert_eq!(sel(s).matches(&l), want, "{s}");
    }
}

#[test]
fn empty_selector_matches_everything() {
    for s in ["", "   "] {
        let e = sel(s);
        assert!(e.is_empty());
        assert!(e.matches(&labels(&[])));
        assert!(e.matches(&labels(&[("a", "b")])));
        assert_eq!(e.to_string(), "");
    }
    assert!(!LabelSelector::nothing().matches(&labels(&[])));
    assert!(LabelSelector::from_map(&BTreeMap::new()).is_empty());
}

#[test]
fn display_is_canonical_and_sorted() {
    let s = sel(" z notin (b,a,a) , !y,x in (in,notin), w==1, v!=2 , u,t=");
    assert_eq!(
        s.to_string(),
        "t=,u,v!=2,w==1,x in (in,notin),!y,z notin (a,b)"
    );
    assert_eq!(sel(&s.to_string()), s);
    assert_eq!(sel("a in ()").to_string(), "a in ()");
    assert!(sel("a in ()").matches(&labels(&[("a", "")])));
    assert_eq!(sel("a in (,b,)").requirements()[0].values, vec!["", "b"]);
    assert_eq!(
        sel("example.com/app=x").requires_exact_match("example.com/app"),
        Some("x")
    );
}

#[test]
fn parse_errors_carry_upstream_text() {
    let cases = [
        ("a=b,", "found '', expected: identifier after ','"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        (
            "=a",
            "found '=', expected: !, identifier, or 'end of string'",
        ),
        (
            "a b",
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
        ),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        (
            "a (b)",
            "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt",
        ),
        (
            "a in b",
            "unable to parse requirement: found 'b' expected: '('",
        ),
        (
            "a in (b c)",
            "unable to parse requirement: found 'c', expected: ',' or ')'",
        ),
        (
            "a in (b",
            "unable to parse requirement: found '', expected: ',' or ')'",
        ),
        (
            "a in (=)",
            "unable to parse requirement: found '=', expected: ',', ')' or identifier",
        ),
        (
            "a=(",
            "unable to parse requirement: found '(', expected: identifier",
        ),
        (
            "!!a",
            "unable to parse requirement: found '!', expected: identifier",
        ),
        (
            "n>x",
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer",
        ),
    ];
    for (s, want) in cases {
        assert_eq!(LabelSelector::parse(s).unwrap_err().0, want, "{s}");
    }
    let bad_key = LabelSelector::parse("A_/b/c=d").unwrap_err().0;
    assert!(bad_key.starts_with("unable to parse requirement: <nil>: Invalid value: \"A_/b/c\": a qualified name must consist"), "{bad_key}");
    let bad_prefix = LabelSelector::parse("Example.com/a").unwrap_err().0;
    assert!(
        bad_prefix.contains("prefix part a lowercase RFC 1123 subdomain"),
        "{bad_prefix}"
    );
    let bad_value = LabelSelector::parse("app=-x").unwrap_err().0;
    assert!(bad_value.starts_with("unable to parse requirement: values[0][app]: Invalid value: \"-x\": a valid label must be an empty string"), "{bad_value}");
    let long = format!("app={}", "v".repeat(64));
    assert!(
        LabelSelector::parse(&long)
            .unwrap_err()
            .0
            .contains("must be no more than 63 characters")
    );
    assert!(LabelSelector::parse(&format!("{}=v", "k".repeat(64))).is_err());
    assert!(LabelSelector::parse(&format!("{}=v", "k".repeat(63))).is_ok());
    assert!(
        LabelSelector::parse("/a")
            .unwrap_err()
            .0
            .contains("prefix part must be non-empty")
    );
}

fn expr(key: &str, op: &str, values: &[&str]) -> Expr {
    let values = if values.is_empty() {
        None
    } else {
        Some(values.iter().map(|s| s.to_string()).collect())
    };
    Expr {
        key: key.into(),
        operator: op.into(),
        values,
    }
}

#[test]
fn object_selector_matches_and_validates() {
    let ls = metav1::LabelSelector {
        match_labels: Some(labels(&[("app", "web")])),
        match_expressions: Some(vec![
            expr("tier", "In", &["front", "edge"]),
            expr("legacy", "DoesNotExist", &[]),
            expr("zone", "NotIn", &["b"]),
            expr("app", "Exists", &[]),
        ]),
    };
    let s = LabelSelector::from_label_selector(&ls, "spec.selector").unwrap();
    assert_eq!(
        s.to_string(),
        "app=web,app,!legacy,tier in (edge,front),zone notin (b)"
    );
    assert!(s.matches(&labels(&[("app", "web"), ("tier", "edge"), ("zone", "a")])));
    assert!(!s.matches(&labels(&[("app", "web"), ("tier", "edge"), ("legacy", "")])));
    assert!(!s.matches(&labels(&[("app", "web"), ("tier", "x")])));
    let empty = metav1::LabelSelector::default();
    assert!(
        LabelSelector::from_label_selector(&empty, "spec.selector")
            .unwrap()
            .is_empty()
    );

    let bad = metav1::LabelSelector {
        match_labels: Some(labels(&[("ok", "-bad")])),
        match_expressions: Some(vec![
            expr("a", "Equals", &["x"]),
            expr("b", "In", &[]),
            expr("c", "Exists", &["x"]),
            expr("Bad Key", "In", &["v", "no good"]),
        ]),
    };
    let causes = LabelSelector::from_label_selector(&bad, "spec.selector").unwrap_err();
    let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.selector.matchLabels",
            "spec.selector.matchExpressions[0].operator",
            "spec.selector.matchExpressions[1].values",
            "spec.selector.matchExpressions[2].values",
            "spec.selector.matchExpressions[3].key",
            "spec.selector.matchExpressions[3].values[1]",
        ]
    );
    assert_eq!(
        causes[1].message,
        "Invalid value: \"Equals\": not a valid selector operator"
    );
    assert_eq!(causes[2].reason, "FieldValueRequired");
    assert_eq!(causes[3].reason, "FieldValueForbidden");
}

#[test]
fn field_selectors_parse_match_and_render() {
    let get = |f: &str| match f {
        "metadata.name" => Some("web".to_string()),
        "spec.nodeName" => Some(String::new()),
        "weird" => Some("a,b=c".to_string()),
        _ => None,
    };
    let cases = [
        ("", true),
        ("metadata.name=web", true),
        ("metadata.name==web", true),
        ("metadata.name!=web", false),
        ("metadata.name=db", false),
        ("spec.nodeName=", true),
        ("spec.nodeName!=", false),
        ("status.phase=", true),
        ("metadata.name=web,spec.nodeName!=n1", true),
        ("weird=a\\,b\\=c", true),
    ];
    for (s, want) in cases {
        let f = FieldSelector::parse(s).unwrap();
        assert_eq!(f.matches(get), want, "{s}");
    }
    let f = FieldSelector::parse("spec.nodeName!=,metadata.name=a\\,b").unwrap();
    assert_eq!(f.fields(), ["metadata.name", "spec.nodeName"]);
    assert_eq!(f.to_string(), "metadata.name=a\\,b,spec.nodeName!=");
    assert_eq!(f.requires_exact_match("metadata.name"), Some("a,b"));
    assert!(FieldSelector::parse("").unwrap().is_empty());
    assert_eq!(
        FieldSelector::parse("a=b,c").unwrap_err().0,
        "invalid selector: 'a=b,c'; can't understand 'c'"
    );
    assert!(
        FieldSelector::parse("a=b=c")
            .unwrap_err()
            .0
            .contains("unescaped character")
    );
    assert!(
        FieldSelector::parse("a=\\x")
            .unwrap_err()
            .0
            .contains("invalid escape sequence")
    );
    let e = FieldSelector::parse("x").unwrap_err().to_status_error();
    assert_eq!((e.code, e.reason), (400, "BadRequest"));
}
