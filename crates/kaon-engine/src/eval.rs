//! Values: conditions, templates rendered to text, parameters coerced to
//! their declared types.

use std::cmp::Ordering;

use kaon_model::expr::{BinOp, Expr, Lit, Part, Ref, Template};
use kaon_model::types::Type;
use serde_json::{Number, Value};

use crate::error::EvalError;

/// Looks up the value of a reference in some context.
pub trait Resolve {
    /// The value, or why there is none.
    fn resolve(&self, r: &Ref) -> Result<Value, EvalError>;
}

/// A literal as a JSON value.
pub fn lit_value(l: &Lit) -> Value {
    match l {
        Lit::Str(s) => Value::String(s.clone()),
        Lit::Int(i) => Value::from(*i),
        Lit::Float(x) => Number::from_f64(*x)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Lit::Bool(b) => Value::Bool(*b),
        Lit::Null => Value::Null,
    }
}

/// Evaluates a condition.
pub fn eval(e: &Expr, ctx: &dyn Resolve) -> Result<Value, EvalError> {
    Ok(match e {
        Expr::Lit { value, .. } => lit_value(value),
        Expr::Ref { r } => ctx.resolve(r)?,
        Expr::Not { operand, .. } => Value::Bool(!truthy(&eval(operand, ctx)?, operand)?),
        Expr::Binary { left, op, right } => match op {
            BinOp::Or => {
                let l = truthy(&eval(left, ctx)?, left)?;
                Value::Bool(l || truthy(&eval(right, ctx)?, right)?)
            }
            BinOp::And => {
                let l = truthy(&eval(left, ctx)?, left)?;
                Value::Bool(l && truthy(&eval(right, ctx)?, right)?)
            }
            _ => {
                let (l, r) = (eval(left, ctx)?, eval(right, ctx)?);
                let ord = compare(&l, &r);
                let b = match op {
                    BinOp::Eq => ord == Some(Ordering::Equal),
                    BinOp::Ne => ord != Some(Ordering::Equal),
                    _ => {
                        let ord = ord.ok_or_else(|| EvalError::Incomparable {
                            expr: Box::new(e.clone()),
                            left: Box::new(l.clone()),
                            right: Box::new(r.clone()),
                        })?;
                        match op {
                            BinOp::Lt => ord == Ordering::Less,
                            BinOp::Le => ord != Ordering::Greater,
                            BinOp::Gt => ord == Ordering::Greater,
                            _ => ord != Ordering::Less,
                        }
                    }
                };
                Value::Bool(b)
            }
        },
    })
}

/// Evaluates a condition to a boolean.
pub fn eval_bool(e: &Expr, ctx: &dyn Resolve) -> Result<bool, EvalError> {
    truthy(&eval(e, ctx)?, e)
}

fn truthy(v: &Value, e: &Expr) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(EvalError::NotABool {
            expr: Box::new(e.clone()),
            value: Box::new(other.clone()),
        }),
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                Some(x.cmp(&y))
            } else {
                x.as_f64()?.partial_cmp(&y.as_f64()?)
            }
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (x, y) if x == y => Some(Ordering::Equal),
        _ => None,
    }
}

/// A value for messages: `"US"`, `3`, `null`, a list of 4 items.
pub fn show(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("a list of {} items", a.len()),
        Value::Object(_) => "an object".into(),
        other => other.to_string(),
    }
}

/// A value as it appears inside text: strings bare, everything else JSON.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Renders a template to text.
pub fn render(t: &Template, ctx: &dyn Resolve) -> Result<String, EvalError> {
    let mut out = String::new();
    for p in &t.parts {
        match p {
            Part::Text(s) => out.push_str(s),
            Part::Ref(r) => out.push_str(&to_text(&ctx.resolve(r)?)),
        }
    }
    Ok(out)
}

/// Renders a template to a value: a lone `${...}` keeps its type.
pub fn render_value(t: &Template, ctx: &dyn Resolve) -> Result<Value, EvalError> {
    match t.as_single_ref() {
        Some(r) => ctx.resolve(r),
        None => render(t, ctx).map(Value::String),
    }
}

/// Follows `.field` segments into a JSON value.
pub fn fields(mut v: Value, fields: &[String], r: &Ref) -> Result<Value, EvalError> {
    for f in fields {
        v = match v {
            Value::Object(mut m) => m.remove(f).ok_or_else(|| EvalError::MissingField {
                reference: r.clone(),
                field: f.clone(),
            })?,
            Value::Array(items) => {
                let i: usize = f.parse().map_err(|_| EvalError::NotAnIndex {
                    reference: r.clone(),
                    index: f.clone(),
                })?;
                let len = items.len();
                items
                    .into_iter()
                    .nth(i)
                    .ok_or_else(|| EvalError::IndexOutOfRange {
                        reference: r.clone(),
                        index: i,
                        len,
                    })?
            }
            other => {
                return Err(EvalError::NoFields {
                    reference: r.clone(),
                    value: Box::new(other),
                    field: f.clone(),
                });
            }
        };
    }
    Ok(v)
}

/// Turns a value given as text (`-p key=value`, a literal template) into the
/// declared type: `"5"` for an int is 5; a list or json is parsed as JSON.
pub fn coerce(ty: &Type, v: Value) -> Result<Value, EvalError> {
    if let (Type::Json, Value::String(s)) = (ty, &v) {
        // JSON given as text: `-p extra='{"a": 1}'`; text that is not JSON
        // stays a string.
        return Ok(serde_json::from_str(s.trim()).unwrap_or(v));
    }
    if ty.accepts_value(&v) {
        return Ok(v);
    }
    let Value::String(s) = &v else {
        return Err(EvalError::TypeMismatch {
            expected: ty.clone(),
            value: Box::new(v),
        });
    };
    let t = s.trim();
    let parsed = match ty {
        Type::Int => t.parse::<i64>().ok().map(Value::from),
        Type::Float => t
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number),
        Type::Bool => match t {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        Type::List(_) | Type::Json => serde_json::from_str(t).ok(),
        Type::String | Type::File | Type::Dir => Some(v.clone()),
    };
    match parsed {
        Some(p) if ty.accepts_value(&p) => Ok(p),
        _ => Err(EvalError::Unparsable {
            expected: ty.clone(),
            text: s.clone(),
        }),
    }
}

/// The parameter values of a run: `given` checked and coerced to the
/// declared types, defaults filled in. Every problem is reported at once.
pub fn bind_params(
    declared: &indexmap::IndexMap<String, kaon_model::spec::Param>,
    given: &serde_json::Map<String, Value>,
) -> Result<serde_json::Map<String, Value>, Vec<String>> {
    let mut out = serde_json::Map::new();
    let mut errs = Vec::new();
    for k in given.keys() {
        if !declared.contains_key(k) {
            let known: Vec<&str> = declared.keys().map(String::as_str).collect();
            let hint = if known.is_empty() {
                " (it declares none)".to_string()
            } else {
                format!(" (it declares {})", known.join(", "))
            };
            errs.push(format!("the workflow has no parameter `{k}`{hint}"));
        }
    }
    for (k, p) in declared {
        match given.get(k) {
            Some(v) => match coerce(&p.ty, v.clone()) {
                Ok(v) => {
                    out.insert(k.clone(), v);
                }
                // The message would quote the value.
                Err(_) if p.secret => errs.push(format!(
                    "secret parameter `{k}`: the value given is not {:#}",
                    p.ty
                )),
                Err(e) => errs.push(format!("parameter `{k}`: {e}")),
            },
            None => match &p.default {
                Some(d) => {
                    out.insert(k.clone(), d.clone());
                }
                None => errs.push(format!(
                    "parameter `{k}` ({}) is required: pass `-p {k}=VALUE`",
                    p.ty
                )),
            },
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}
