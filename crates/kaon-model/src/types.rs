//! Types of parameters and step outputs.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

/// The type of a parameter, an output, or a loop variable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// Text.
    String,
    /// A 64-bit integer.
    Int,
    /// A 64-bit float (an int is accepted where a float is expected).
    Float,
    /// `true` / `false`.
    Bool,
    /// Any JSON value; checked at run time only.
    Json,
    /// A file the step writes; stored as an artifact.
    File,
    /// A directory the step writes; stored as an artifact manifest.
    Dir,
    /// A list of one item type.
    List(Box<Type>),
}

impl Type {
    /// True when a value of type `other` may be used where `self` is expected.
    pub fn accepts(&self, other: &Type) -> bool {
        match (self, other) {
            (Type::Json, _) | (_, Type::Json) => true,
            (Type::Float, Type::Int) => true,
            // Paths are text wherever text is expected.
            (Type::String, Type::File | Type::Dir) => true,
            (Type::List(a), Type::List(b)) => a.accepts(b),
            (a, b) => a == b,
        }
    }

    /// True when a JSON value fits the type.
    pub fn accepts_value(&self, v: &Value) -> bool {
        match (self, v) {
            (Type::Json, _) => true,
            (Type::String | Type::File | Type::Dir, Value::String(_)) => true,
            (Type::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (Type::Float, Value::Number(_)) => true,
            (Type::Bool, Value::Bool(_)) => true,
            (Type::List(t), Value::Array(items)) => items.iter().all(|i| t.accepts_value(i)),
            _ => false,
        }
    }

    /// The type of a JSON value, as precise as it can tell.
    pub fn of_value(v: &Value) -> Type {
        match v {
            Value::String(_) => Type::String,
            Value::Bool(_) => Type::Bool,
            Value::Number(n) if n.is_i64() || n.is_u64() => Type::Int,
            Value::Number(_) => Type::Float,
            Value::Array(items) => {
                let mut item = items.first().map_or(Type::Json, Type::of_value);
                for i in items.iter().skip(1) {
                    let t = Type::of_value(i);
                    if item.accepts(&t) {
                        continue;
                    }
                    item = if t.accepts(&item) { t } else { Type::Json };
                }
                Type::List(Box::new(item))
            }
            Value::Null | Value::Object(_) => Type::Json,
        }
    }

    /// True for the types that are only meaningful as step outputs.
    pub fn is_artifact(&self) -> bool {
        matches!(self, Type::File | Type::Dir)
    }

    /// True for numbers.
    pub fn is_numeric(&self) -> bool {
        matches!(self, Type::Int | Type::Float)
    }
}

/// `{}` prints the type's name; `{:#}` prints it with its article, for
/// messages ("an int", "a list<string>").
impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            let article = if matches!(self, Type::Int) { "an" } else { "a" };
            write!(f, "{article} ")?;
        }
        match self {
            Type::String => f.write_str("string"),
            Type::Int => f.write_str("int"),
            Type::Float => f.write_str("float"),
            Type::Bool => f.write_str("bool"),
            Type::Json => f.write_str("json"),
            Type::File => f.write_str("file"),
            Type::Dir => f.write_str("dir"),
            Type::List(t) => {
                f.write_str("list<")?;
                t.fmt_plain(f)?;
                f.write_str(">")
            }
        }
    }
}

impl Type {
    fn fmt_plain(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for Type {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How deep a declared type may nest `list<...>`.
pub const MAX_LIST_DEPTH: usize = 32;

/// The names [`Type`] parses from, for messages.
pub const TYPE_NAMES: &str = "string, int, float, bool, json, file, dir, list<T>";

impl FromStr for Type {
    type Err = String;

    /// Parses without recursing, and refuses lists nested deeper than
    /// [`MAX_LIST_DEPTH`] (everything that walks a type recurses).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut s = s.trim();
        let mut lists = 0;
        let base = loop {
            break match s {
                "string" | "str" => Type::String,
                "int" | "integer" => Type::Int,
                "float" | "number" => Type::Float,
                "bool" | "boolean" => Type::Bool,
                "json" => Type::Json,
                "file" => Type::File,
                "dir" | "directory" => Type::Dir,
                _ => {
                    let Some(inner) = s.strip_prefix("list<").and_then(|r| r.strip_suffix('>'))
                    else {
                        return Err(format!("`{s}` is not a type; types are {TYPE_NAMES}"));
                    };
                    lists += 1;
                    if lists > MAX_LIST_DEPTH {
                        return Err(format!(
                            "lists nest deeper than {MAX_LIST_DEPTH} levels; use `json` for deeper values"
                        ));
                    }
                    s = inner.trim();
                    continue;
                }
            };
        };
        Ok((0..lists).fold(base, |t, _| Type::List(Box::new(t))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_and_print() {
        for s in ["string", "int", "list<list<float>>", "json", "dir"] {
            assert_eq!(s.parse::<Type>().expect(s).to_string(), s);
        }
        assert!("list<strin>".parse::<Type>().is_err());
        assert!("map".parse::<Type>().is_err());
        assert_eq!(
            " list< list<int> > ".parse::<Type>(),
            Ok(Type::List(Box::new(Type::List(Box::new(Type::Int)))))
        );
    }

    #[test]
    fn deep_lists_are_an_error_not_a_crash() {
        let deep = |n: usize| format!("{}int{}", "list<".repeat(n), ">".repeat(n));
        assert!(deep(MAX_LIST_DEPTH).parse::<Type>().is_ok());
        let e = deep(100_000).parse::<Type>().expect_err("too deep");
        assert!(e.contains("nest deeper than 32"), "{e}");
    }

    #[test]
    fn values_and_assignability() {
        assert!(Type::Float.accepts(&Type::Int));
        assert!(!Type::Int.accepts(&Type::Float));
        assert!(Type::List(Box::new(Type::String)).accepts_value(&json!(["a", "b"])));
        assert!(!Type::List(Box::new(Type::String)).accepts_value(&json!(["a", 1])));
        assert_eq!(
            Type::of_value(&json!([1, 2.5])),
            Type::List(Box::new(Type::Float))
        );
        assert_eq!(
            Type::of_value(&json!([1, "x"])),
            Type::List(Box::new(Type::Json))
        );
    }
}
