//! `[params]`: the workflow's parameters.

use indexmap::IndexMap;
use toml::de::DeValue;

use super::{Decoder, V, span_of};
use crate::diag::Code;
use crate::spec::{Param, ParamSource};
use crate::types::Type;

const PARAM_KEYS: &[&str] = &[
    "type",
    "default",
    "description",
    "secret",
    "from_env",
    "from_file",
];

impl Decoder<'_, '_> {
    pub(super) fn params(&mut self, v: &V<'_>) -> IndexMap<String, Param> {
        let mut out = IndexMap::new();
        for (name, span, pv) in self.named(v, "`params`", "parameter") {
            let param = match pv.get_ref() {
                DeValue::Table(pt) => {
                    self.check_keys(pt, PARAM_KEYS, &format!("parameter `{name}`"));
                    let default = self.get(pt, "default").and_then(|d| self.json(d));
                    let description = self
                        .get(pt, "description")
                        .and_then(|d| self.string(d, "`description`"));
                    let ty = match self.get(pt, "type") {
                        Some(tv) => {
                            let Some(ts) = self.string(tv, "`type`") else {
                                continue;
                            };
                            match ts.parse::<Type>() {
                                Ok(t) => t,
                                Err(msg) => {
                                    self.err(Code::InvalidValue, span_of(tv), msg);
                                    continue;
                                }
                            }
                        }
                        None => match &default {
                            Some(d) => Type::of_value(d),
                            None => {
                                self.err(
                                    Code::MissingKey,
                                    span,
                                    format!("parameter `{name}` has neither `type` nor `default`"),
                                )
                                .help = Some(format!(
                                    "write `{name} = {{ type = \"string\" }}` for a required parameter"
                                ));
                                continue;
                            }
                        },
                    };
                    if let (Some(d), Some(dv)) = (&default, self.get(pt, "default"))
                        && !ty.accepts_value(d)
                    {
                        self.err(
                            Code::TypeMismatch,
                            span_of(dv),
                            format!("default of `{name}` is not {ty:#}"),
                        )
                        .help = Some(format!("give {ty:#} value, or change `type`"));
                    }
                    let secret = self
                        .get(pt, "secret")
                        .and_then(|b| self.boolean(b, "`secret`"))
                        .unwrap_or(false);
                    let from_env = self
                        .get(pt, "from_env")
                        .and_then(|e| self.string(e, "`from_env`").map(|n| (n, span_of(e))));
                    let from_file = self
                        .get(pt, "from_file")
                        .and_then(|f| self.string(f, "`from_file`").map(|n| (n, span_of(f))));
                    if let Some((n, at)) = &from_env
                        && (n.is_empty() || n.contains('=') || n.contains('\0'))
                    {
                        self.err(
                            Code::InvalidValue,
                            *at,
                            format!("`from_env` of `{name}` is not an environment variable name"),
                        );
                    }
                    let source = match (from_env, from_file) {
                        (Some(_), Some((_, at))) => {
                            self.err(
                                Code::Conflict,
                                at,
                                format!("parameter `{name}` has both `from_env` and `from_file`"),
                            )
                            .help = Some("keep one of them".into());
                            None
                        }
                        (Some((n, _)), None) => Some(ParamSource::Env(n)),
                        (None, Some((f, _))) => Some(ParamSource::File(f)),
                        (None, None) => None,
                    };
                    if secret && let Some(dv) = self.get(pt, "default") {
                        self.err(
                            Code::Conflict,
                            span_of(dv),
                            format!("secret parameter `{name}` has a `default`: its value would be written in the workflow file"),
                        )
                        .help = Some(format!(
                            "take it from the environment (`from_env = \"{}\"`) or a file (`from_file = \"...\"`), or pass `-p {name}=...`",
                            name.to_ascii_uppercase()
                        ));
                    }
                    Param {
                        ty,
                        default,
                        description,
                        secret,
                        source,
                        span,
                    }
                }
                // Shorthand: `name = value` declares a parameter with that default.
                _ => {
                    let Some(default) = self.json(pv) else {
                        continue;
                    };
                    Param {
                        ty: Type::of_value(&default),
                        default: Some(default),
                        description: None,
                        secret: false,
                        source: None,
                        span,
                    }
                }
            };
            out.insert(name, param);
        }
        out
    }
}
