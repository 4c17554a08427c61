//! Typed op parameters: one struct per op, a declared range for every field, and one
//! parser shared by the CLI (`--param op.key=value`), the UI and the wire protocol.
//!
//! Each params struct derives serde with `#[serde(default, deny_unknown_fields)]` and its
//! `Default` holds the original app's values; [`Params::SPECS`] declares every field's
//! type and range once. Defaults shown by `prism ops` are read from `Default`, so they
//! cannot drift from what runs.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// What kind of value a parameter takes, with its bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// An integer in `min..=max`.
    Int {
        /// The smallest value allowed.
        min: i64,
        /// The largest value allowed.
        max: i64,
    },
    /// An odd integer in `min..=max` (window sizes).
    OddInt {
        /// The smallest value allowed.
        min: i64,
        /// The largest value allowed.
        max: i64,
    },
    /// A finite number in `min..=max`.
    Float {
        /// The smallest value allowed.
        min: f64,
        /// The largest value allowed.
        max: f64,
    },
    /// `true` or `false`.
    Bool,
    /// One of a fixed set of names.
    Choice(&'static [&'static str]),
}

/// One parameter of an op: its key, kind and meaning.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSpec {
    /// The key, as written after `op-id.` on the command line and in JSON.
    pub key: &'static str,
    /// Type and bounds.
    pub kind: Kind,
    /// One line for `prism ops` and the UI.
    pub help: &'static str,
}

/// A parameter value that is out of range, of the wrong type or unknown.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{op}.{key}: {reason}")]
pub struct ParamError {
    /// The op id.
    pub op: String,
    /// The parameter key (empty when the problem spans several).
    pub key: String,
    /// What is wrong, in words a user can act on.
    pub reason: String,
}

impl ParamError {
    /// An error about `op.key`.
    pub fn new(op: &str, key: &str, reason: impl Into<String>) -> Self {
        Self {
            op: op.to_string(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

/// The parameters of one op.
pub trait Params: Serialize + DeserializeOwned + Default + Clone {
    /// Every field, in the order `prism ops` lists them.
    const SPECS: &'static [ParamSpec];

    /// Checks that span several fields (e.g. `low <= high`); ranges are checked already.
    fn check_more(&self, _op: &str) -> Result<(), ParamError> {
        Ok(())
    }

    /// Checks every field against its spec, then the cross-field rules.
    fn validate(&self, op: &str) -> Result<(), ParamError> {
        let value = serde_json::to_value(self)
            .map_err(|e| ParamError::new(op, "", format!("cannot encode params: {e}")))?;
        let map = value.as_object().cloned().unwrap_or_default();
        for spec in Self::SPECS {
            let v = map
                .get(spec.key)
                .ok_or_else(|| ParamError::new(op, spec.key, "missing"))?;
            check_value(op, spec, v)?;
        }
        self.check_more(op)
    }

    /// Builds the params from `key=value` strings over the defaults, validated.
    fn from_pairs<'a>(
        op: &str,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ParamError> {
        let mut map = match serde_json::to_value(Self::default()) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for (key, raw) in pairs {
            let spec = Self::SPECS
                .iter()
                .find(|s| s.key == key)
                .ok_or_else(|| unknown_key::<Self>(op, key))?;
            map.insert(key.to_string(), parse_value(op, spec, raw)?);
        }
        let params: Self = serde_json::from_value(Value::Object(map))
            .map_err(|e| ParamError::new(op, "", e.to_string()))?;
        params.validate(op)?;
        Ok(params)
    }

    /// The schema `prism ops --json` prints: every param with type, range and default.
    fn schema() -> Vec<Value> {
        let defaults = serde_json::to_value(Self::default()).unwrap_or(Value::Null);
        Self::SPECS
            .iter()
            .map(|s| {
                let mut m = Map::new();
                m.insert("key".into(), s.key.into());
                match s.kind {
                    Kind::Int { min, max } => {
                        m.insert("type".into(), "int".into());
                        m.insert("min".into(), min.into());
                        m.insert("max".into(), max.into());
                    }
                    Kind::OddInt { min, max } => {
                        m.insert("type".into(), "odd-int".into());
                        m.insert("min".into(), min.into());
                        m.insert("max".into(), max.into());
                    }
                    Kind::Float { min, max } => {
                        m.insert("type".into(), "float".into());
                        m.insert("min".into(), min.into());
                        m.insert("max".into(), max.into());
                    }
                    Kind::Bool => {
                        m.insert("type".into(), "bool".into());
                    }
                    Kind::Choice(c) => {
                        m.insert("type".into(), "choice".into());
                        m.insert("choices".into(), c.to_vec().into());
                    }
                }
                m.insert(
                    "default".into(),
                    defaults.get(s.key).cloned().unwrap_or(Value::Null),
                );
                m.insert("help".into(), s.help.into());
                Value::Object(m)
            })
            .collect()
    }
}

fn unknown_key<P: Params>(op: &str, key: &str) -> ParamError {
    let known: Vec<&str> = P::SPECS.iter().map(|s| s.key).collect();
    let reason = if known.is_empty() {
        "this op takes no parameters".to_string()
    } else {
        format!("unknown parameter (known: {})", known.join(", "))
    };
    ParamError::new(op, key, reason)
}

fn parse_value(op: &str, spec: &ParamSpec, raw: &str) -> Result<Value, ParamError> {
    let raw = raw.trim();
    let bad = |what: &str| ParamError::new(op, spec.key, format!("{raw:?} is not {what}"));
    let v = match spec.kind {
        Kind::Int { .. } | Kind::OddInt { .. } => {
            Value::from(raw.parse::<i64>().map_err(|_| bad("an integer"))?)
        }
        Kind::Float { .. } => {
            let f = raw.parse::<f64>().map_err(|_| bad("a number"))?;
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| bad("a finite number"))?
        }
        Kind::Bool => match raw {
            "true" | "1" | "yes" | "on" => Value::Bool(true),
            "false" | "0" | "no" | "off" => Value::Bool(false),
            _ => return Err(bad("true or false")),
        },
        Kind::Choice(c) => {
            if !c.contains(&raw) {
                return Err(bad(&format!("one of {}", c.join(", "))));
            }
            Value::from(raw)
        }
    };
    check_value(op, spec, &v)?;
    Ok(v)
}

fn check_value(op: &str, spec: &ParamSpec, v: &Value) -> Result<(), ParamError> {
    let err = |reason: String| Err(ParamError::new(op, spec.key, reason));
    match spec.kind {
        Kind::Int { min, max } | Kind::OddInt { min, max } => {
            let Some(i) = v.as_i64() else {
                return err(format!("{v} is not an integer"));
            };
            if i < min || i > max {
                return err(format!("{i} is outside {min}..={max}"));
            }
            if matches!(spec.kind, Kind::OddInt { .. }) && i % 2 == 0 {
                return err(format!("{i} must be odd"));
            }
        }
        Kind::Float { min, max } => {
            let Some(f) = v.as_f64().filter(|f| f.is_finite()) else {
                return err(format!("{v} is not a finite number"));
            };
            if f < min || f > max {
                return err(format!("{f} is outside {min}..={max}"));
            }
        }
        Kind::Bool => {
            if !v.is_boolean() {
                return err(format!("{v} is not true or false"));
            }
        }
        Kind::Choice(c) => {
            if !v.as_str().is_some_and(|s| c.contains(&s)) {
                return err(format!("{v} is not one of {}", c.join(", ")));
            }
        }
    }
    Ok(())
}

/// Asserts that a params type's specs and serialized fields name the same keys.
#[cfg(test)]
pub(crate) fn assert_specs_match_fields<P: Params>() {
    let v = serde_json::to_value(P::default()).expect("params serialize");
    let mut fields: Vec<&str> = v
        .as_object()
        .expect("params are a struct")
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut specs: Vec<&str> = P::SPECS.iter().map(|s| s.key).collect();
    fields.sort_unstable();
    specs.sort_unstable();
    assert_eq!(fields, specs);
    P::default().validate("test").expect("defaults are valid");
}
