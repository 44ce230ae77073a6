//! `[[workflow.schedule]]` and `[[workflow.trigger]]`: when a deployed
//! workflow runs by itself, and with which parameters.

use std::collections::HashMap;

use indexmap::IndexMap;
use kaon_schedule::{
    CatchUp, Concurrency, Cron, DEFAULT_CATCH_UP_LIMIT, DEFAULT_TIMEZONE, Piece, ScheduleError,
    ScheduleSpec, TriggerSpec,
};
use serde_json::Value;
use toml::de::{DeTable, DeValue};

use super::{Decoder, V, span_of, type_name};
use crate::diag::{Code, Diagnostic, Span, StrMap, suggest};
use crate::spec::Param;
use crate::types::Type;

const SCHEDULE_KEYS: &[&str] = &[
    "name",
    "cron",
    "timezone",
    "params",
    "catch_up",
    "catch_up_limit",
    "concurrency",
];
const TRIGGER_KEYS: &[&str] = &["name", "on_success", "params", "concurrency"];

/// The names of the schedules and triggers so far, with where each stands
/// and whether it was given by default.
#[derive(Default)]
pub(super) struct Names(HashMap<String, (Span, bool)>);

/// What a schedule's or trigger's parameters may hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Literal values only.
    Schedule,
    /// Literal values, and `${outputs.NAME}` of the upstream run in strings.
    Trigger,
}

impl Decoder<'_, '_> {
    /// `[[workflow.schedule]]`.
    pub(super) fn schedules(
        &mut self,
        v: &V<'_>,
        params: &IndexMap<String, Param>,
        names: &mut Names,
    ) -> Vec<ScheduleSpec> {
        let mut out = Vec::new();
        for (i, (span, t)) in self.entries(v, "schedule").into_iter().enumerate() {
            self.check_keys(t, SCHEDULE_KEYS, "`[[workflow.schedule]]`");
            let name = self.entry_name(t, span, "schedule", i, names);
            let what = format!("schedule `{name}`");
            let cron = match self.get(t, "cron") {
                Some(cv) => self.string(cv, "`cron`").map(|c| (c, span_of(cv))),
                None => {
                    self.err(Code::MissingKey, span, format!("{what} has no `cron`"))
                        .help = Some(
                        "add `cron = \"0 3 * * *\"` (minute hour day-of-month month day-of-week; 03:00 every day)"
                            .into(),
                    );
                    None
                }
            };
            let timezone = match self.get(t, "timezone") {
                Some(tv) => self
                    .string(tv, "`timezone`")
                    .filter(|tz| self.timezone_ok(tz, span_of(tv))),
                None => Some(DEFAULT_TIMEZONE.to_string()),
            };
            let cron = cron.filter(|(c, at)| self.cron_ok(c, *at));
            let run_params = self.run_params(t, span, &what, params, Source::Schedule);
            let catch_up = self.policy::<CatchUp>(t, "catch_up", CatchUp::NAMES);
            let catch_up_limit = match self.get(t, "catch_up_limit") {
                Some(lv) => {
                    let limit = self
                        .int(lv, "`catch_up_limit`", 1, i64::from(u32::MAX))
                        .map(|n| n as u32);
                    if limit.is_some() && catch_up != Some(CatchUp::All) {
                        self.diags.push(
                            Diagnostic::warning(
                                Code::Conflict,
                                self.file,
                                span_of(lv),
                                format!(
                                    "{what}: `catch_up_limit` counts only with `catch_up = \"all\"`"
                                ),
                            )
                            .with_help("add `catch_up = \"all\"`, or drop `catch_up_limit`"),
                        );
                    }
                    limit
                }
                None => Some(DEFAULT_CATCH_UP_LIMIT),
            };
            let concurrency = self.policy::<Concurrency>(t, "concurrency", Concurrency::NAMES);
            if let (
                Some((cron, _)),
                Some(timezone),
                Some(params),
                Some(catch_up),
                Some(catch_up_limit),
                Some(concurrency),
            ) = (
                cron,
                timezone,
                run_params,
                catch_up,
                catch_up_limit,
                concurrency,
            ) {
                out.push(ScheduleSpec {
                    name,
                    cron,
                    timezone,
                    params,
                    catch_up,
                    catch_up_limit,
                    concurrency,
                });
            }
        }
        out
    }

    /// `[[workflow.trigger]]`; `workflow` is this workflow's name, when known.
    pub(super) fn triggers(
        &mut self,
        v: &V<'_>,
        params: &IndexMap<String, Param>,
        workflow: Option<&str>,
        names: &mut Names,
    ) -> Vec<TriggerSpec> {
        let mut out = Vec::new();
        for (i, (span, t)) in self.entries(v, "trigger").into_iter().enumerate() {
            self.check_keys(t, TRIGGER_KEYS, "`[[workflow.trigger]]`");
            let name = self.entry_name(t, span, "trigger", i, names);
            let what = format!("trigger `{name}`");
            let on_success = match self.get(t, "on_success") {
                Some(ov) => self.string(ov, "`on_success`").filter(|up| {
                    let at = span_of(ov);
                    if up.trim().is_empty() {
                        self.err(Code::InvalidValue, at, "`on_success` is empty")
                            .help = Some("name the workflow whose successful runs fire this one".into());
                        false
                    } else if Some(up.as_str()) == workflow {
                        self.err(
                            Code::Conflict,
                            at,
                            format!("{what} fires on the success of this same workflow"),
                        )
                        .help = Some(
                            "a workflow that triggers itself would run for ever; use a schedule, or a repeat block in the flow"
                                .into(),
                        );
                        false
                    } else {
                        true
                    }
                }),
                None => {
                    self.err(Code::MissingKey, span, format!("{what} has no `on_success`"))
                        .help = Some(
                        "add `on_success = \"ingest\"`: the name of the workflow whose successful runs fire this one"
                            .into(),
                    );
                    None
                }
            };
            let run_params = self.run_params(t, span, &what, params, Source::Trigger);
            let concurrency = self.policy::<Concurrency>(t, "concurrency", Concurrency::NAMES);
            if let (Some(on_success), Some(params), Some(concurrency)) =
                (on_success, run_params, concurrency)
            {
                out.push(TriggerSpec {
                    name,
                    on_success,
                    params,
                    concurrency,
                });
            }
        }
        out
    }

    /// The tables of `[[workflow.KEY]]` with where each stands; a single
    /// `[workflow.KEY]` table counts as one.
    fn entries<'a, 'i>(&mut self, v: &'a V<'i>, key: &str) -> Vec<(Span, &'a DeTable<'i>)> {
        match v.get_ref() {
            DeValue::Table(t) => vec![(span_of(v), t)],
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| {
                    self.table(item, &format!("each `workflow.{key}`"))
                        .map(|t| (span_of(item), t))
                })
                .collect(),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!(
                        "`workflow.{key}` must be tables, found {}",
                        type_name(other)
                    ),
                )
                .help = Some(format!("write each as a `[[workflow.{key}]]` table"));
                Vec::new()
            }
        }
    }

    /// The entry's `name`, or `KIND-N` (1-based), checked and made unique.
    fn entry_name(
        &mut self,
        t: &DeTable<'_>,
        span: Span,
        kind: &str,
        index: usize,
        names: &mut Names,
    ) -> String {
        let given = self.get(t, "name").is_some();
        let (name, at) = match self.get(t, "name") {
            Some(nv) => {
                let at = span_of(nv);
                match self.string(nv, &format!("a {kind}'s `name`")) {
                    Some(n) if valid_name(&n) => (n, at),
                    Some(n) => {
                        self.err(
                            Code::InvalidValue,
                            at,
                            format!("`{n}` is not a valid {kind} name"),
                        )
                        .help = Some(
                            "names are made of letters, digits, `-`, `_` and `.`, e.g. \"nightly\""
                                .into(),
                        );
                        (n, at)
                    }
                    None => (format!("{kind}-{}", index + 1), at),
                }
            }
            None => (format!("{kind}-{}", index + 1), span),
        };
        if let Some((first, by_default)) = names.0.get(&name).copied() {
            let label = if by_default {
                format!("this one has no `name`, so it is called `{name}`")
            } else {
                "first used here".to_string()
            };
            self.diags.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    self.file,
                    at,
                    format!("the name `{name}` is used twice among the workflow's schedules and triggers"),
                )
                .with_secondary(self.file, first, label)
                .with_help("give each schedule and trigger its own `name`"),
            );
        } else {
            names.0.insert(name.clone(), (at, !given));
        }
        name
    }

    fn timezone_ok(&mut self, tz: &str, at: Span) -> bool {
        match kaon_schedule::check_timezone(tz) {
            Ok(()) => true,
            Err(ScheduleError::UnknownTimeZone { zone, suggestion }) => {
                self.err(Code::InvalidValue, at, format!("unknown time zone `{zone}`"))
                    .help = Some(match suggestion {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "use an IANA time zone name, e.g. \"UTC\", \"Europe/Amsterdam\" or \"America/New_York\"".into(),
                });
                false
            }
            Err(e) => {
                self.err(Code::InvalidValue, at, e.to_string());
                false
            }
        }
    }

    fn cron_ok(&mut self, expr: &str, at: Span) -> bool {
        match Cron::parse(expr, DEFAULT_TIMEZONE) {
            Ok(_) => true,
            Err(e) => {
                self.err(Code::InvalidValue, at, e.to_string()).help = Some(
                    "write 5 fields `minute hour day-of-month month day-of-week` (\"0 3 * * *\" is 03:00 every day), 6 with a `second` field first, or @hourly, @daily, @weekly, @monthly, @yearly"
                        .into(),
                );
                false
            }
        }
    }

    /// `catch_up = "..."` or `concurrency = "..."`: the default when absent,
    /// `None` when wrong.
    fn policy<P: std::str::FromStr + Default>(
        &mut self,
        t: &DeTable<'_>,
        key: &str,
        names: &[&str],
    ) -> Option<P> {
        let Some(v) = self.get(t, key) else {
            return Some(P::default());
        };
        let s = self.string(v, &format!("`{key}`"))?;
        match s.parse::<P>() {
            Ok(p) => Some(p),
            Err(_) => {
                let help = match suggest(&s, names.iter().copied()) {
                    Some(near) => {
                        format!("did you mean `{near}`? `{key}` takes: {}", names.join(", "))
                    }
                    None => format!("`{key}` takes: {}", names.join(", ")),
                };
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("`{s}` is not a `{key}` policy"),
                )
                .help = Some(help);
                None
            }
        }
    }

    /// The `params` of a schedule or trigger: each must be one of the
    /// workflow's parameters, of its type, not a secret written in the
    /// file; every required parameter must be given (a run that nobody
    /// starts has nobody to ask).
    fn run_params(
        &mut self,
        t: &DeTable<'_>,
        span: Span,
        what: &str,
        declared: &IndexMap<String, Param>,
        source: Source,
    ) -> Option<IndexMap<String, Value>> {
        let mut out = IndexMap::new();
        let mut ok = true;
        let given = match self.get(t, "params") {
            Some(pv) => Some((
                span_of(pv),
                self.table(pv, &format!("the `params` of {what}"))?,
            )),
            None => None,
        };
        if let Some((_, pt)) = given {
            for (k, val) in pt.iter() {
                let key: &str = k.get_ref();
                let Some(p) = declared.get(key) else {
                    let names: Vec<&str> = declared.keys().map(String::as_str).collect();
                    let help = match suggest(key, names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None if names.is_empty() => "the workflow declares no parameters".into(),
                        None => format!("its parameters are: {}", names.join(", ")),
                    };
                    self.err(
                        Code::UnknownKey,
                        span_of(k),
                        format!("{what} gives `{key}`, but the workflow has no parameter `{key}`"),
                    )
                    .help = Some(help);
                    ok = false;
                    continue;
                };
                let Some(value) = self.json(val) else {
                    ok = false;
                    continue;
                };
                ok &= self.run_param(key, p, &value, span_of(val), what, source);
                out.insert(key.to_string(), value);
            }
        }
        // After a wrong name, the parameter it meant would be reported missing too.
        let report_missing = ok;
        for (k, p) in declared {
            if report_missing && p.default.is_none() && p.source.is_none() && !out.contains_key(k) {
                let at = given.map_or(span, |(s, _)| s);
                self.err(
                    Code::MissingKey,
                    at,
                    format!(
                        "{what} does not give the required parameter `{k}` ({})",
                        p.ty
                    ),
                )
                .help = Some(format!(
                    "a run that nobody starts has nobody to ask: add `{k} = ...` to its `params`, or give the parameter a `default`"
                ));
                ok = false;
            }
        }
        ok.then_some(out)
    }

    /// Checks one given parameter value; true when it is fine.
    fn run_param(
        &mut self,
        key: &str,
        p: &Param,
        value: &Value,
        at: Span,
        what: &str,
        source: Source,
    ) -> bool {
        // A trigger's string may take the upstream run's outputs.
        let mut refs = false;
        let mut whole_ref = false;
        if source == Source::Trigger
            && let Value::String(text) = value
        {
            match kaon_schedule::pieces(key, text) {
                Ok(pieces) => {
                    refs = pieces.iter().any(|p| matches!(p, Piece::Output(_)));
                    whole_ref = matches!(pieces.as_slice(), [Piece::Output(_)]);
                }
                Err(ScheduleError::InvalidReference {
                    text: bad, offset, ..
                }) => {
                    let map = StrMap::new(self.text, at, text);
                    self.err(
                        Code::InvalidValue,
                        map.map(offset, offset + bad.len()),
                        format!("`{bad}` is not a reference to an output of the upstream run"),
                    )
                    .help = Some(
                        "a trigger's parameters may use `${outputs.NAME}`, an output of the run that fired it; `$${` is a literal `${`"
                            .into(),
                    );
                    return false;
                }
                Err(e) => {
                    self.err(Code::InvalidValue, at, e.to_string());
                    return false;
                }
            }
        }
        if p.secret && !whole_ref {
            self.err(
                Code::Conflict,
                at,
                format!("{what} writes the value of secret parameter `{key}` in the workflow file"),
            )
            .help = Some(format!(
                "drop it here: a secret must come from `from_env = \"{}\"` or `from_file = \"...\"` on the parameter",
                key.to_ascii_uppercase()
            ));
            return false;
        }
        // A whole reference takes the output's type, known only at run time.
        if whole_ref {
            return true;
        }
        let fits = if refs {
            p.ty.accepts_value(&Value::String(String::new()))
        } else {
            p.ty.accepts_value(value)
        };
        if !fits {
            let got = if refs {
                Type::String
            } else {
                Type::of_value(value)
            };
            self.err(
                Code::TypeMismatch,
                at,
                format!("parameter `{key}` is {:#}, but {what} gives {got:#}", p.ty),
            )
            .help = Some(format!("give {:#} value", p.ty));
            return false;
        }
        true
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
