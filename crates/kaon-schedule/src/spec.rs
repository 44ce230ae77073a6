//! Schedules and triggers as a workflow file declares them and the server
//! stores them (as JSON).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cron::{Cron, DEFAULT_TIMEZONE};
use crate::error::ScheduleError;
use crate::plan::{CatchUp, Concurrency, DEFAULT_CATCH_UP_LIMIT};

/// `[[workflow.schedule]]`: run the workflow when a cron expression fires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Unique among the workflow's schedules and triggers
    /// (`schedule-1`, `schedule-2`, ... when the file names none).
    pub name: String,
    /// The cron expression (see [`Cron`]).
    pub cron: String,
    /// The IANA time zone the expression is read in.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Values for the workflow's parameters.
    #[serde(default)]
    pub params: IndexMap<String, Value>,
    /// What to do with missed ticks.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// With [`CatchUp::All`], how many missed ticks fire at most (the newest).
    #[serde(default = "default_catch_up_limit")]
    pub catch_up_limit: u32,
    /// What to do when the previous run is still going.
    #[serde(default)]
    pub concurrency: Concurrency,
}

impl ScheduleSpec {
    /// The expression read in its time zone.
    pub fn parse_cron(&self) -> Result<Cron, ScheduleError> {
        Cron::parse(&self.cron, &self.timezone)
    }
}

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_string()
}

fn default_catch_up_limit() -> u32 {
    DEFAULT_CATCH_UP_LIMIT
}

/// `[[workflow.trigger]]`: run the workflow when another workflow's run
/// succeeds, with parameters taken from that run's outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TriggerSpec {
    /// Unique among the workflow's schedules and triggers
    /// (`trigger-1`, `trigger-2`, ... when the file names none).
    pub name: String,
    /// The name of the upstream workflow whose successful runs fire it.
    pub on_success: String,
    /// Values for the workflow's parameters; see [`TriggerSpec::bind`].
    #[serde(default)]
    pub params: IndexMap<String, Value>,
    /// What to do when the previous run is still going.
    #[serde(default)]
    pub concurrency: Concurrency,
}

impl TriggerSpec {
    /// The parameters of a triggered run, given the upstream run's outputs.
    ///
    /// A string value that is exactly `${outputs.NAME}` becomes the
    /// upstream output's JSON value, whatever its type. A
    /// `${outputs.NAME}` inside a longer string is replaced by the output
    /// as text (a string's content; any other value's JSON). `$${` is a
    /// literal `${`. Other values (numbers, lists, tables) pass unchanged,
    /// and so does anything inside a list or a table.
    ///
    /// Fails with [`ScheduleError::MissingOutput`] naming the first output
    /// the upstream run does not have, and
    /// [`ScheduleError::InvalidReference`] for a `${...}` that is not
    /// `${outputs.NAME}`.
    pub fn bind(
        &self,
        upstream_outputs: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ScheduleError> {
        let mut out = Map::new();
        for (param, value) in &self.params {
            let bound = match value {
                Value::String(text) => bind_text(param, text, upstream_outputs)?,
                other => other.clone(),
            };
            out.insert(param.clone(), bound);
        }
        Ok(out)
    }
}

/// A piece of a trigger parameter's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Literal text (`$${` already turned into `${`).
    Text(String),
    /// `${outputs.NAME}`: the upstream output `NAME`.
    Output(&'a str),
}

/// Splits a trigger parameter's text into literal text and
/// `${outputs.NAME}` references; `param` names it in errors.
///
/// Fails with [`ScheduleError::InvalidReference`], with the byte offset of
/// the `${`, for a `${...}` that is not `${outputs.NAME}` (an unclosed one,
/// `${params.x}`, `${outputs.}`).
pub fn pieces<'a>(param: &str, text: &'a str) -> Result<Vec<Piece<'a>>, ScheduleError> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        let (before, from) = rest.split_at(i);
        lit.push_str(before);
        if let Some(after) = from.strip_prefix("$${") {
            lit.push_str("${");
            rest = after;
        } else if let Some(after) = from.strip_prefix("${") {
            let offset = text.len() - from.len();
            let bad = |end: usize| ScheduleError::InvalidReference {
                param: param.to_string(),
                text: from[..end].to_string(),
                offset,
            };
            let Some(close) = after.find('}') else {
                return Err(bad(from.len()));
            };
            let inner = &after[..close];
            match inner.strip_prefix("outputs.") {
                Some(name) if is_ident(name) => {
                    if !lit.is_empty() {
                        out.push(Piece::Text(std::mem::take(&mut lit)));
                    }
                    out.push(Piece::Output(name));
                }
                _ => return Err(bad(close + 3)),
            }
            rest = &after[close + 1..];
        } else {
            lit.push('$');
            rest = &from[1..];
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() || out.is_empty() {
        out.push(Piece::Text(lit));
    }
    Ok(out)
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn bind_text(
    param: &str,
    text: &str,
    outputs: &Map<String, Value>,
) -> Result<Value, ScheduleError> {
    let pieces = pieces(param, text)?;
    let lookup = |name: &str| {
        outputs
            .get(name)
            .ok_or_else(|| ScheduleError::MissingOutput {
                param: param.to_string(),
                output: name.to_string(),
                available: outputs.keys().cloned().collect(),
            })
    };
    if let [Piece::Output(name)] = pieces.as_slice() {
        return lookup(name).cloned();
    }
    let mut s = String::new();
    for p in &pieces {
        match p {
            Piece::Text(t) => s.push_str(t),
            Piece::Output(name) => match lookup(name)? {
                Value::String(v) => s.push_str(v),
                v => s.push_str(&v.to_string()),
            },
        }
    }
    Ok(Value::String(s))
}

#[cfg(test)]
mod tests;
