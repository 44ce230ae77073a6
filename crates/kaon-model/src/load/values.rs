//! Reading TOML values: strings, templates, numbers, sizes, durations,
//! names, each reported with its place when it is not what is expected.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use toml::de::{DeTable, DeValue};

use super::{Decoder, V, span_of, type_name};
use crate::diag::{Code, Diagnostic, Span, StrMap, suggest};
use crate::expr::{Template, is_ident, parse_template};
use crate::flow::{MARKERS, RESERVED};

impl Decoder<'_, '_> {
    pub(super) fn err(
        &mut self,
        code: Code,
        span: Span,
        msg: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diags
            .push_mut(Diagnostic::error(code, self.file, span, msg))
    }

    pub(super) fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], context: &str) {
        for (k, _) in table.iter() {
            let key: &str = k.get_ref();
            if !allowed.contains(&key) {
                let help = match suggest(key, allowed.iter().copied()) {
                    Some(s) => format!(
                        "did you mean `{s}`? {context} takes: {}",
                        allowed.join(", ")
                    ),
                    None => format!("{context} takes: {}", allowed.join(", ")),
                };
                self.err(
                    Code::UnknownKey,
                    span_of(k),
                    format!("unknown key `{key}` in {context}"),
                )
                .help = Some(help);
            }
        }
    }

    pub(super) fn get<'a, 'i>(&self, table: &'a DeTable<'i>, key: &str) -> Option<&'a V<'i>> {
        table.get(key)
    }

    pub(super) fn table<'a, 'i>(&mut self, v: &'a V<'i>, what: &str) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be a table, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub(super) fn string(&mut self, v: &V<'_>, what: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub(super) fn template(&mut self, v: &V<'_>, what: &str) -> Option<Template> {
        let s = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            // Numbers and booleans are accepted where text is expected (conf values).
            DeValue::Integer(i) => i.to_string(),
            DeValue::Float(f) => f.to_string(),
            DeValue::Boolean(b) => b.to_string(),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be a string, found {}", type_name(other)),
                );
                return None;
            }
        };
        let span = span_of(v);
        let map = StrMap::new(self.text, span, &s);
        match parse_template(&s, |a, b| map.map(a, b), span) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(Code::InvalidValue, map.map(e.start, e.end), e.message).help =
                    Some("references are written `${params.name}`, `${step.output}` or `${loop_var}`; `$${` is a literal `${`".into());
                None
            }
        }
    }

    pub(super) fn templates(&mut self, v: &V<'_>, what: &str) -> Option<Vec<Template>> {
        match v.get_ref() {
            DeValue::Array(items) => {
                let out: Vec<Option<Template>> =
                    items.iter().map(|i| self.template(i, what)).collect();
                out.into_iter().collect()
            }
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!(
                        "{what} must be an array of strings, found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    pub(super) fn strings(&mut self, v: &V<'_>, what: &str) -> Option<Vec<String>> {
        match v.get_ref() {
            DeValue::Array(items) => items.iter().map(|i| self.string(i, what)).collect(),
            DeValue::String(s) => Some(
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
            ),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!(
                        "{what} must be an array of strings, found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, v: &V<'_>, what: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be true or false, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub(super) fn int(&mut self, v: &V<'_>, what: &str, min: i64, max: i64) -> Option<i64> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be an integer, found {}", type_name(other)),
                );
                return None;
            }
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be between {min} and {max}"),
                );
                None
            }
        }
    }

    pub(super) fn u32_setting(&mut self, t: &DeTable<'_>, key: &str, what: &str) -> Option<u32> {
        let v = self.get(t, key)?;
        self.int(v, what, 1, i64::from(u32::MAX)).map(|n| n as u32)
    }

    pub(super) fn memory(&mut self, v: &V<'_>, what: &str) -> Option<u64> {
        let s = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(_) => return self.int(v, what, 1, i64::MAX).map(|n| n as u64),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!(
                        "{what} must be a size like \"4g\" or \"512MiB\", found {}",
                        type_name(other)
                    ),
                );
                return None;
            }
        };
        match parse_memory(&s) {
            Some(n) => Some(n),
            None => {
                self.err(Code::InvalidValue, span_of(v), format!("`{s}` is not a size"))
                    .help = Some("write a number and a unit: \"512m\", \"4g\", \"2GiB\", \"1.5t\" (units are powers of 1024, as in Spark)".into());
                None
            }
        }
    }

    pub(super) fn json(&mut self, v: &V<'_>) -> Option<Value> {
        Some(match v.get_ref() {
            DeValue::String(s) => Value::String(s.to_string()),
            DeValue::Integer(i) => Value::from(i64::from_str_radix(i.as_str(), i.radix()).ok()?),
            DeValue::Float(f) => {
                serde_json::Number::from_f64(f.as_str().replace('_', "").parse().ok()?)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(d) => Value::String(d.to_string()),
            DeValue::Array(a) => Value::Array(a.iter().filter_map(|i| self.json(i)).collect()),
            DeValue::Table(t) => Value::Object(
                t.iter()
                    .filter_map(|(k, v)| Some((k.get_ref().to_string(), self.json(v)?)))
                    .collect(),
            ),
        })
    }

    pub(super) fn name_ok(&mut self, name: &str, span: Span, what: &str) -> bool {
        if !is_ident(name) {
            self.err(
                Code::InvalidValue,
                span,
                format!("`{name}` is not a valid {what} name"),
            )
            .help =
                Some("names start with a letter or `_` and contain letters, digits and `_`".into());
            return false;
        }
        if RESERVED.contains(&name) || (what == "step" && MARKERS.contains(&name)) {
            self.err(
                Code::ReservedName,
                span,
                format!("`{name}` is a reserved word and cannot name a {what}"),
            )
            .help = Some(format!("rename the {what}, e.g. `{name}_step`"));
            return false;
        }
        true
    }

    pub(super) fn duration(&mut self, v: &V<'_>, what: &str) -> Option<Duration> {
        let s = self.string(v, what)?;
        match humantime::parse_duration(&s) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be longer than zero"),
                );
                None
            }
            Err(e) => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("`{s}` is not a duration: {e}"),
                )
                .help = Some("write e.g. \"90s\", \"10m\", \"1h 30m\"".into());
                None
            }
        }
    }

    pub(super) fn template_map(&mut self, v: &V<'_>, what: &str) -> BTreeMap<String, Template> {
        let mut out = BTreeMap::new();
        if let Some(t) = self.table(v, what) {
            for (k, val) in t.iter() {
                if let Some(tpl) = self.template(val, what) {
                    out.insert(k.get_ref().to_string(), tpl);
                }
            }
        }
        out
    }
}

/// Parses a size: a number and a binary unit, as Spark does (`512m`, `4g`,
/// `2GiB`, `1.5t`, a bare number is bytes).
pub fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    let bytes = n * mult as f64;
    (bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512m"), Some(512 << 20));
        assert_eq!(parse_memory("4g"), Some(4 << 30));
        assert_eq!(parse_memory("2GiB"), Some(2 << 30));
        assert_eq!(parse_memory("1.5k"), Some(1536));
        assert_eq!(parse_memory("4 gb"), Some(4 << 30));
        assert_eq!(parse_memory("4x"), None);
        assert_eq!(parse_memory("0m"), None);
        assert_eq!(parse_memory("g"), None);
    }
}
