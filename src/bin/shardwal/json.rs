//! A tiny JSON writer for `--json` output: a value tree with correct string
//! escaping and exact integers. Output only; the CLI never parses JSON.

use std::fmt::{self, Write};

/// A JSON value.
#[derive(Debug, Clone)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An unsigned integer, printed exactly.
    U(u64),
    /// A float; non-finite values print as `null`.
    F(f64),
    /// A string.
    S(String),
    /// An array.
    A(Vec<Json>),
    /// An object; keys keep their insertion order.
    O(Vec<(String, Json)>),
}

impl Json {
    /// An empty object.
    pub fn obj() -> Json {
        Json::O(Vec::new())
    }

    /// Add `key: value` to an object (no effect on other values).
    pub fn set(mut self, key: &str, value: impl Into<Json>) -> Json {
        if let Json::O(v) = &mut self {
            v.push((key.to_string(), value.into()));
        }
        self
    }

    /// Add `key: value` to an object in place.
    pub fn push(&mut self, key: &str, value: impl Into<Json>) {
        if let Json::O(v) = self {
            v.push((key.to_string(), value.into()));
        }
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}
impl From<u64> for Json {
    fn from(n: u64) -> Json {
        Json::U(n)
    }
}
impl From<u32> for Json {
    fn from(n: u32) -> Json {
        Json::U(n.into())
    }
}
impl From<usize> for Json {
    fn from(n: usize) -> Json {
        Json::U(n as u64)
    }
}
impl From<f64> for Json {
    fn from(n: f64) -> Json {
        Json::F(n)
    }
}
impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::S(s.to_string())
    }
}
impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::S(s)
    }
}
impl From<&std::path::Path> for Json {
    fn from(p: &std::path::Path) -> Json {
        Json::S(p.display().to_string())
    }
}
impl From<Vec<Json>> for Json {
    fn from(v: Vec<Json>) -> Json {
        Json::A(v)
    }
}
impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(o: Option<T>) -> Json {
        o.map_or(Json::Null, Into::into)
    }
}

/// Source offsets as `[{"source", "offset"}]`.
pub fn offsets(offsets: &[shardwal::SourceOffset]) -> Json {
    offsets
        .iter()
        .map(|o| {
            Json::obj()
                .set("source", o.source.as_str())
                .set("offset", o.offset)
        })
        .collect::<Vec<_>>()
        .into()
}

/// A commit record as `{"epoch", "watermark", "offsets"}`.
pub fn commit(c: &shardwal::CommitRecord) -> Json {
    Json::obj()
        .set("epoch", c.epoch)
        .set("watermark", c.watermark)
        .set("offsets", offsets(&c.offsets))
}

/// Write `s` as a JSON string literal.
pub fn write_str(out: &mut impl Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::U(n) => write!(f, "{n}"),
            Json::F(x) if x.is_finite() => {
                // Enough digits for measurements, no exponent surprises.
                let s = format!("{x:.6}");
                let s = s.trim_end_matches('0').trim_end_matches('.');
                f.write_str(if s.is_empty() || s == "-" { "0" } else { s })
            }
            Json::F(_) => f.write_str("null"),
            Json::S(s) => write_str(f, s),
            Json::A(v) => {
                f.write_char('[')?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_char(']')
            }
            Json::O(v) => {
                f.write_char('{')?;
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write_str(f, k)?;
                    write!(f, ":{x}")?;
                }
                f.write_char('}')
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_orders() {
        let j = Json::obj()
            .set("a", "q\"\\\n\u{1}é")
            .set("n", 18_446_744_073_709_551_615u64)
            .set("f", 1.5f64)
            .set("z", 0.0f64)
            .set("none", Option::<u64>::None)
            .set("v", vec![Json::Bool(true), Json::F(f64::NAN)]);
        assert_eq!(
            j.to_string(),
            r#"{"a":"q\"\\\n\u0001é","n":18446744073709551615,"f":1.5,"z":0,"none":null,"v":[true,null]}"#
        );
    }
}
