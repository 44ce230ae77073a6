//! Placement constraints in the Mesos attribute grammar.
//!
//! A constraint string is `attr:v1,v2;attr2`, exactly what Spark accepts as
//! `spark.mesos.constraints`: terms separated by `;`, each an attribute name
//! and, after `:`, the values that satisfy it (any one of them). An attribute
//! without values only has to be present.
//!
//! Workers and clusters carry [`Attributes`] in the Mesos attribute format
//! (`zone:us-east-1a;cpus_class:4;ports:[1000-2000];tags:{a,b}`), and a
//! constraint value is matched by the attribute's type, as Spark does:
//! text by equality, a scalar when the constraint value is at most the
//! attribute's, a range when the value lies inside it, a set when the value
//! is one of its members.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// A parsed constraint string.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Constraints {
    /// The terms; all must hold.
    pub terms: Vec<Term>,
}

/// `attr` or `attr:v1,v2`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Term {
    /// The attribute name.
    pub attribute: String,
    /// Accepted values; empty means "has the attribute".
    pub values: Vec<String>,
}

/// Why a constraint or attribute string does not parse: offsets into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstraintError {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// What is wrong.
    pub message: String,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
}

/// Splits `s` on `sep`, yielding each piece with its byte offset.
fn split_offsets(s: &str, sep: char) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    s.split(sep).map(move |piece| {
        let at = offset;
        offset += piece.len() + sep.len_utf8();
        (at, piece)
    })
}

impl Constraints {
    /// Parses `attr:v1,v2;attr2`. Whitespace around names and values is
    /// ignored; an empty string means no constraints.
    pub fn parse(s: &str) -> Result<Constraints, ConstraintError> {
        let mut terms: Vec<Term> = Vec::new();
        if s.trim().is_empty() {
            return Ok(Constraints { terms });
        }
        for (at, raw) in split_offsets(s, ';') {
            let err = |start: usize, end: usize, message: String| ConstraintError {
                start,
                end,
                message,
            };
            if raw.trim().is_empty() {
                return Err(err(
                    at,
                    at + raw.len().max(1),
                    "empty term between `;`".into(),
                ));
            }
            let (name, values) = match raw.split_once(':') {
                Some((n, v)) => (n, Some(v)),
                None => (raw, None),
            };
            let name_t = name.trim();
            if !valid_name(name_t) {
                return Err(err(
                    at,
                    at + name.len().max(1),
                    format!("`{name_t}` is not an attribute name (letters, digits, `_ - . /`)"),
                ));
            }
            if terms.iter().any(|t| t.attribute == name_t) {
                return Err(err(
                    at,
                    at + name.len(),
                    format!(
                        "attribute `{name_t}` appears twice; list all its values in one term: `{name_t}:a,b`"
                    ),
                ));
            }
            let mut vals = Vec::new();
            if let Some(v) = values {
                let vat = at + name.len() + 1;
                if v.trim().is_empty() {
                    return Err(err(
                        at,
                        vat,
                        format!(
                            "`{name_t}:` has no values; write `{name_t}` alone to require only that the attribute exists"
                        ),
                    ));
                }
                for (off, val) in split_offsets(v, ',') {
                    let val_t = val.trim();
                    if val_t.is_empty() || val_t.contains(':') {
                        return Err(err(
                            vat + off,
                            vat + off + val.len().max(1),
                            format!(
                                "bad value `{val_t}` for `{name_t}`: values are separated by `,`, terms by `;`"
                            ),
                        ));
                    }
                    vals.push(val_t.to_string());
                }
            }
            terms.push(Term {
                attribute: name_t.to_string(),
                values: vals,
            });
        }
        Ok(Constraints { terms })
    }

    /// True when there are no terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// True when `attrs` satisfy every term.
    pub fn matches(&self, attrs: &Attributes) -> bool {
        self.terms.iter().all(|t| match attrs.0.get(&t.attribute) {
            None => false,
            Some(_) if t.values.is_empty() => true,
            Some(a) => t.values.iter().any(|v| a.satisfied_by(v)),
        })
    }
}

/// Prints the canonical form, which is also what Spark takes as
/// `spark.mesos.constraints`.
impl fmt::Display for Constraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            f.write_str(&t.attribute)?;
            if !t.values.is_empty() {
                write!(f, ":{}", t.values.join(","))?;
            }
        }
        Ok(())
    }
}

/// One attribute value of a worker or cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum AttrValue {
    /// `zone:us-east-1a`
    Text(String),
    /// `cpus_class:4`
    Scalar(f64),
    /// `ports:[1000-2000]`
    Range(f64, f64),
    /// `tags:{a,b}`
    Set(Vec<String>),
}

impl AttrValue {
    fn parse(s: &str) -> Option<AttrValue> {
        let s = s.trim();
        if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let (lo, hi) = inner.split_once('-')?;
            return Some(AttrValue::Range(
                lo.trim().parse().ok()?,
                hi.trim().parse().ok()?,
            ));
        }
        if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            return Some(AttrValue::Set(
                inner.split(',').map(|v| v.trim().to_string()).collect(),
            ));
        }
        if s.is_empty() {
            return None;
        }
        Some(match s.parse::<f64>() {
            Ok(x) => AttrValue::Scalar(x),
            Err(_) => AttrValue::Text(s.to_string()),
        })
    }

    fn satisfied_by(&self, want: &str) -> bool {
        match self {
            AttrValue::Text(t) => t == want,
            AttrValue::Scalar(have) => want.parse::<f64>().is_ok_and(|w| w <= *have),
            AttrValue::Range(lo, hi) => want.parse::<f64>().is_ok_and(|w| *lo <= w && w <= *hi),
            AttrValue::Set(items) => items.iter().any(|i| i == want),
        }
    }
}

/// The attributes of a worker or Spark cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Attributes(pub BTreeMap<String, AttrValue>);

impl Attributes {
    /// Parses `zone:us-east-1a;cpus_class:4;ports:[1000-2000];tags:{a,b}`.
    pub fn parse(s: &str) -> Result<Attributes, ConstraintError> {
        let mut map = BTreeMap::new();
        if s.trim().is_empty() {
            return Ok(Attributes(map));
        }
        for (at, raw) in split_offsets(s, ';') {
            let Some((name, value)) = raw.split_once(':') else {
                return Err(ConstraintError {
                    start: at,
                    end: at + raw.len().max(1),
                    message: format!(
                        "attribute `{}` has no value: write `name:value`",
                        raw.trim()
                    ),
                });
            };
            let v = AttrValue::parse(value).ok_or_else(|| ConstraintError {
                start: at,
                end: at + raw.len(),
                message: format!(
                    "`{}` is not a text, scalar, [range] or {{set}} value",
                    value.trim()
                ),
            })?;
            if !valid_name(name.trim()) {
                return Err(ConstraintError {
                    start: at,
                    end: at + name.len().max(1),
                    message: format!("`{}` is not an attribute name", name.trim()),
                });
            }
            map.insert(name.trim().to_string(), v);
        }
        Ok(Attributes(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        let c = Constraints::parse("zone:us-east-1a, us-east-1b ; tier:batch;gpu").expect("parses");
        assert_eq!(c.terms.len(), 3);
        assert_eq!(c.to_string(), "zone:us-east-1a,us-east-1b;tier:batch;gpu");
        assert_eq!(Constraints::parse(&c.to_string()).expect("again"), c);
    }

    #[test]
    fn errors_point_at_the_bad_part() {
        let e = Constraints::parse("zone:a,,b").expect_err("empty value");
        assert_eq!(e.start, 7);
        let e = Constraints::parse("zone:a;;tier:b").expect_err("empty term");
        assert_eq!(e.start, 7);
        assert!(Constraints::parse("zone:").is_err());
        assert!(Constraints::parse("zone:a;zone:b").is_err());
        assert!(Constraints::parse("zo ne:a").is_err());
    }

    #[test]
    fn matching_follows_spark_semantics() {
        let attrs =
            Attributes::parse("zone:us-east-1a;mem_gb:64;ports:[1000-2000];tags:{ml,batch}")
                .expect("attrs");
        let ok = |s: &str| Constraints::parse(s).expect(s).matches(&attrs);
        assert!(ok("zone:us-east-1a,us-east-1b"));
        assert!(!ok("zone:us-west-2a"));
        assert!(ok("mem_gb:32"));
        assert!(!ok("mem_gb:128"));
        assert!(ok("ports:1500"));
        assert!(!ok("ports:3000"));
        assert!(ok("tags:ml"));
        assert!(ok("zone;tags"));
        assert!(!ok("gpu"));
        assert!(ok(""));
    }
}
