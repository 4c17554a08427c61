//! Typed op parameters, parsed once at the edge: a params value that exists is valid.
//!
//! Every parameter has a type that holds only the values the op accepts: an enum for a
//! choice (`choice!`: colour modes, element shapes), a range newtype for a number
//! (`ranged!`), `bool`, or a hand-written type such as the Sobel apertures. Each of them
//! implements [`ParamValue`]: what the catalogue says about it ([`Kind`]) and how a JSON
//! value becomes it. `params!` declares an op's params struct from one table (field,
//! type, default, key, help), and derives from it everything else: `Default`, serde (the
//! same JSON as a plain struct), and [`Params`] (the catalogue entry and the parser).
//!
//! Raw values reach the ops through one door, [`Params::from_values`]: `--param op.k=v`
//! strings are first read as JSON values of their [`Kind`] ([`Params::from_pairs`]), and
//! JSON from the UI, the wire protocol and saved settings is read as it is (serde goes
//! through `from_values` too). Defaults are constants checked when the crate compiles;
//! `prism ops` prints them from the same constants, so they cannot drift from what runs.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// What kind of value a parameter takes, with its bounds: what `prism ops` and the UI's
/// forms show.
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

/// Why an op could not be built: an unknown op or parameter, or a value of the wrong type,
/// out of range or not among the choices (the reason then says which values are allowed).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    /// The op id (empty when not known, e.g. JSON that names no op).
    pub op: String,
    /// The parameter key (empty when the problem is not one parameter's).
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

impl fmt::Display for ParamError {
    /// `op.key: reason`, leaving out the parts that are not known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.op.is_empty(), self.key.is_empty()) {
            (false, false) => write!(f, "{}.{}: {}", self.op, self.key, self.reason),
            (false, true) => write!(f, "{}: {}", self.op, self.reason),
            (true, false) => write!(f, "{}: {}", self.key, self.reason),
            (true, true) => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for ParamError {}

/// Why a value is not one a parameter takes, e.g. `12 is outside 1..=7`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// A type a parameter can have: its kind in the catalogue, and how a JSON value becomes
/// one (the only way in, so every value of the type is one the op accepts).
pub trait ParamValue: Copy + Serialize {
    /// What the catalogue says about it.
    const KIND: Kind;

    /// The value `v` stands for, or why it stands for none.
    fn from_json(v: &Value) -> Result<Self, InvalidValue>;
}

impl ParamValue for bool {
    const KIND: Kind = Kind::Bool;

    fn from_json(v: &Value) -> Result<Self, InvalidValue> {
        v.as_bool()
            .ok_or_else(|| InvalidValue(format!("{v} is not true or false")))
    }
}

/// The parameters of one op, as the `params!` macro (in this module) declares them.
pub trait Params: Serialize + DeserializeOwned + Default + Clone {
    /// Every field, in the order `prism ops` lists them.
    const SPECS: &'static [ParamSpec];

    /// Builds the params of `op` from JSON values by key, defaults standing in for missing
    /// keys: the one place raw values become typed. An unknown key, a value the field's
    /// type refuses, or a combination the op refuses is an error naming `op` and the key.
    fn from_values(op: &str, values: &Map<String, Value>) -> Result<Self, ParamError>;

    /// Builds the params from `key=value` strings (the CLI's `--param`) over the defaults.
    fn from_pairs<'a>(
        op: &str,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ParamError> {
        let mut values = Map::new();
        for (key, raw) in pairs {
            let spec = Self::SPECS
                .iter()
                .find(|s| s.key == key)
                .ok_or_else(|| unknown_key(op, key, Self::SPECS))?;
            values.insert(key.to_string(), parse_raw(op, spec, raw)?);
        }
        Self::from_values(op, &values)
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

fn unknown_key(op: &str, key: &str, specs: &[ParamSpec]) -> ParamError {
    let known: Vec<&str> = specs.iter().map(|s| s.key).collect();
    let reason = if known.is_empty() {
        "this op takes no parameters".to_string()
    } else {
        format!("unknown parameter (known: {})", known.join(", "))
    };
    ParamError::new(op, key, reason)
}

/// Reads a command-line string as the JSON value it stands for in `spec`'s kind; whether
/// the value is allowed is the field type's to say.
fn parse_raw(op: &str, spec: &ParamSpec, raw: &str) -> Result<Value, ParamError> {
    let raw = raw.trim();
    let bad = |what: &str| ParamError::new(op, spec.key, format!("{raw:?} is not {what}"));
    Ok(match spec.kind {
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
        Kind::Choice(_) => Value::from(raw),
    })
}

// What the macros' expansions call. Public for them only: use `ParamValue` and `Params`.

/// Fails on a key `specs` does not declare.
#[doc(hidden)]
pub fn reject_unknown(
    op: &str,
    values: &Map<String, Value>,
    specs: &[ParamSpec],
) -> Result<(), ParamError> {
    match values.keys().find(|k| !specs.iter().any(|s| s.key == *k)) {
        Some(k) => Err(unknown_key(op, k, specs)),
        None => Ok(()),
    }
}

/// The value of `key` in `values` as a `T`, or `default` when it is missing.
#[doc(hidden)]
pub fn field<T: ParamValue>(
    op: &str,
    key: &str,
    values: &Map<String, Value>,
    default: T,
) -> Result<T, ParamError> {
    match values.get(key) {
        None => Ok(default),
        Some(v) => T::from_json(v).map_err(|e| ParamError::new(op, key, e.0)),
    }
}

/// `v` if it is in `min..=max` (and odd when `odd`).
#[doc(hidden)]
pub fn check_int<T: Copy + Into<i64>>(
    v: T,
    min: i64,
    max: i64,
    odd: bool,
) -> Result<T, InvalidValue> {
    let i: i64 = v.into();
    if i < min || i > max {
        return Err(InvalidValue(format!("{i} is outside {min}..={max}")));
    }
    if odd && i % 2 == 0 {
        return Err(InvalidValue(format!("{i} must be odd")));
    }
    Ok(v)
}

/// The integer `v` holds, as a `T`, if it is in `min..=max` (and odd when `odd`).
#[doc(hidden)]
pub fn int_from_json<T: Copy + Into<i64> + TryFrom<i64>>(
    v: &Value,
    min: i64,
    max: i64,
    odd: bool,
) -> Result<T, InvalidValue> {
    let i = v
        .as_i64()
        .ok_or_else(|| InvalidValue(format!("{v} is not an integer")))?;
    check_int(i, min, max, odd)?;
    // In range, so it fits any type whose own bounds hold the range.
    T::try_from(i).map_err(|_| InvalidValue(format!("{i} is outside {min}..={max}")))
}

/// A floating-point type a ranged parameter can be stored as.
#[doc(hidden)]
pub trait Float: Copy + Into<f64> + fmt::Display {
    /// The nearest value of this type.
    fn from_f64(f: f64) -> Self;
}

impl Float for f64 {
    fn from_f64(f: f64) -> Self {
        f
    }
}

impl Float for f32 {
    fn from_f64(f: f64) -> Self {
        f as f32
    }
}

/// `v` if it is finite and in `min..=max`.
#[doc(hidden)]
pub fn check_float<T: Float>(v: T, min: f64, max: f64) -> Result<T, InvalidValue> {
    let f: f64 = v.into();
    if !f.is_finite() {
        return Err(InvalidValue(format!("{v} is not a finite number")));
    }
    if !(min..=max).contains(&f) {
        return Err(InvalidValue(format!("{v} is outside {min}..={max}")));
    }
    Ok(v)
}

/// The number `v` holds, as a `T` (rounded as serde would store it), if in `min..=max`.
#[doc(hidden)]
pub fn float_from_json<T: Float>(v: &Value, min: f64, max: f64) -> Result<T, InvalidValue> {
    let f = v
        .as_f64()
        .filter(|f| f.is_finite())
        .ok_or_else(|| InvalidValue(format!("{v} is not a finite number")))?;
    check_float(T::from_f64(f), min, max)
}

/// The position of the name `v` holds in `names`.
#[doc(hidden)]
pub fn choice_from_json(v: &Value, names: &[&str]) -> Result<usize, InvalidValue> {
    v.as_str()
        .and_then(|s| names.iter().position(|n| *n == s))
        .ok_or_else(|| InvalidValue(format!("{v} is not one of {}", names.join(", "))))
}

/// Declares a number type whose values are the ones a parameter allows:
/// `int MIN..=MAX`, `odd MIN..=MAX` (window sizes) or `float MIN..=MAX`.
///
/// ```ignore
/// ranged! {
///     /// Side of the compared patch.
///     pub struct TemplateSize(u32): odd 1..=15;
/// }
/// ```
///
/// The type gets `MIN`, `MAX`, a checked `new`, `get`, serde as the bare number, and
/// [`ParamValue`]. Inside its module, `of(v)` makes one in a constant, checked when the
/// crate compiles (for defaults).
macro_rules! ranged {
    ($(#[$meta:meta])* $vis:vis struct $name:ident($ty:ty): int $min:literal..=$max:literal;) => {
        $crate::ops::params::ranged!(@int $(#[$meta])* $vis $name $ty, $min, $max, false, Int);
    };
    ($(#[$meta:meta])* $vis:vis struct $name:ident($ty:ty): odd $min:literal..=$max:literal;) => {
        $crate::ops::params::ranged!(@int $(#[$meta])* $vis $name $ty, $min, $max, true, OddInt);
    };
    ($(#[$meta:meta])* $vis:vis struct $name:ident($ty:ty): float $min:literal..=$max:literal;) => {
        $crate::ops::params::ranged!(@common $(#[$meta])* $vis $name $ty, $min, $max);

        impl $name {
            /// `v`, or why it is not allowed.
            pub fn new(v: $ty) -> Result<Self, $crate::ops::params::InvalidValue> {
                $crate::ops::params::check_float(v, $min, $max).map(Self)
            }

            /// `v`, checked when the crate compiles (for defaults and constants).
            #[allow(dead_code)]
            const fn of(v: $ty) -> Self {
                assert!(v >= $min && v <= $max, "value out of range");
                Self(v)
            }
        }

        impl $crate::ops::params::ParamValue for $name {
            const KIND: $crate::ops::params::Kind =
                $crate::ops::params::Kind::Float { min: $min, max: $max };

            fn from_json(
                v: &::serde_json::Value,
            ) -> Result<Self, $crate::ops::params::InvalidValue> {
                $crate::ops::params::float_from_json(v, $min, $max).map(Self)
            }
        }
    };
    (@int $(#[$meta:meta])* $vis:vis $name:ident $ty:ty, $min:literal, $max:literal, $odd:literal, $kind:ident) => {
        $crate::ops::params::ranged!(@common $(#[$meta])* $vis $name $ty, $min, $max);

        impl $name {
            /// `v`, or why it is not allowed.
            pub fn new(v: $ty) -> Result<Self, $crate::ops::params::InvalidValue> {
                $crate::ops::params::check_int(v, $min, $max, $odd).map(Self)
            }

            /// `v`, checked when the crate compiles (for defaults and constants).
            // `v >= 0` is always true of an unsigned type with a range from 0.
            #[allow(dead_code, unused_comparisons)]
            const fn of(v: $ty) -> Self {
                assert!(v >= $min && v <= $max, "value out of range");
                assert!(!$odd || v % 2 != 0, "value must be odd");
                Self(v)
            }
        }

        impl $crate::ops::params::ParamValue for $name {
            const KIND: $crate::ops::params::Kind =
                $crate::ops::params::Kind::$kind { min: $min, max: $max };

            fn from_json(
                v: &::serde_json::Value,
            ) -> Result<Self, $crate::ops::params::InvalidValue> {
                $crate::ops::params::int_from_json(v, $min, $max, $odd).map(Self)
            }
        }
    };
    (@common $(#[$meta:meta])* $vis:vis $name:ident $ty:ty, $min:literal, $max:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
        $vis struct $name($ty);

        impl $name {
            /// The smallest value allowed.
            pub const MIN: $ty = $min;
            /// The largest value allowed.
            pub const MAX: $ty = $max;

            /// The value.
            pub const fn get(self) -> $ty {
                self.0
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                ::serde::Serialize::serialize(&self.0, s)
            }
        }
    };
}
pub(crate) use ranged;

/// Declares an enum a choice parameter takes, each variant with its name:
///
/// ```ignore
/// choice! {
///     /// A structuring element shape.
///     pub enum Shape {
///         /// All ones.
///         Rect = "rect",
///         /// The inscribed ellipse.
///         Ellipse = "ellipse",
///     }
/// }
/// ```
///
/// The enum gets `ALL`, `NAMES`, `name()`, serde as its name, and [`ParamValue`] (an
/// unknown name is an error listing the names).
macro_rules! choice {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $label:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            /// Every value, in the order the catalogue lists them.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];
            /// Their names, in the same order.
            pub const NAMES: &'static [&'static str] = &[$($label),*];

            /// The name used on the command line, in JSON and in the catalogue.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)*
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl $crate::ops::params::ParamValue for $name {
            const KIND: $crate::ops::params::Kind = $crate::ops::params::Kind::Choice(Self::NAMES);

            fn from_json(
                v: &::serde_json::Value,
            ) -> Result<Self, $crate::ops::params::InvalidValue> {
                $crate::ops::params::choice_from_json(v, Self::NAMES).map(|i| Self::ALL[i])
            }
        }
    };
}
pub(crate) use choice;

/// Declares an op's params struct from one table: each field with its type (a
/// [`ParamValue`]), its default (a constant, checked when the crate compiles), its key
/// and its help line; then, optionally, a check of rules between fields.
///
/// ```ignore
/// params! {
///     /// Parameters of `erosion` and `dilation`.
///     pub struct MorphParams {
///         /// The element's shape.
///         pub shape: Shape = Shape::Rect => "shape", "structuring element shape";
///         /// Width and height of the element.
///         pub size: ElementSize = ElementSize::of(5) => "size", "element size in pixels";
///     }
///     // check = MorphParams::check;   fn check(&self, op: &str) -> Result<(), ParamError>
/// }
/// ```
///
/// The struct gets `Clone, Copy, Debug, PartialEq`, a `DEFAULT` constant and `Default`,
/// serde (the JSON of a plain struct with those keys; reading goes through
/// [`Params::from_values`]), and [`Params`].
macro_rules! params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $fvis:vis $field:ident: $ty:ty = $default:expr => $key:literal, $help:literal;
            )*
        }
        $(check = $check:path;)?
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty, )*
        }

        impl $name {
            /// The defaults: the original app's values.
            pub const DEFAULT: Self = Self { $( $field: $default, )* };
        }

        impl Default for $name {
            fn default() -> Self {
                Self::DEFAULT
            }
        }

        impl $crate::ops::params::Params for $name {
            const SPECS: &'static [$crate::ops::params::ParamSpec] = &[$(
                $crate::ops::params::ParamSpec {
                    key: $key,
                    kind: <$ty as $crate::ops::params::ParamValue>::KIND,
                    help: $help,
                },
            )*];

            fn from_values(
                op: &str,
                values: &::serde_json::Map<String, ::serde_json::Value>,
            ) -> Result<Self, $crate::ops::params::ParamError> {
                $crate::ops::params::reject_unknown(op, values, Self::SPECS)?;
                let p = Self {
                    $( $field: $crate::ops::params::field(op, $key, values, Self::DEFAULT.$field)?, )*
                };
                $( $check(&p, op)?; )?
                Ok(p)
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ::serde::ser::SerializeStruct;
                // Not mutated by params without fields.
                #[allow(unused_mut)]
                let mut st = s.serialize_struct(
                    stringify!($name),
                    <Self as $crate::ops::params::Params>::SPECS.len(),
                )?;
                $( st.serialize_field($key, &self.$field)?; )*
                st.end()
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            /// Reads the params alone, without their op: errors name the key only.
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let values: ::serde_json::Map<String, ::serde_json::Value> =
                    ::serde::Deserialize::deserialize(d)?;
                <Self as $crate::ops::params::Params>::from_values("", &values)
                    .map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use params;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    ranged! {
        /// A test range.
        struct Small(u32): int 2..=9;
    }
    ranged! {
        /// A test window.
        struct Window(i64): odd -3..=15;
    }
    ranged! {
        /// A test fraction stored as f32.
        struct Fraction(f32): float -0.5..=1.0;
    }
    choice! {
        /// A test choice.
        enum Colour {
            /// Red.
            Red = "red",
            /// Light blue.
            LightBlue = "light-blue",
        }
    }
    params! {
        /// Test params.
        struct Demo {
            /// A number.
            small: Small = Small::of(3) => "small", "a small number";
            /// A window.
            window: Window = Window::of(5) => "window", "a window";
            /// A fraction.
            fraction: Fraction = Fraction::of(0.25) => "fraction", "a fraction";
            /// A choice.
            colour: Colour = Colour::Red => "colour", "a colour";
            /// A flag.
            flag: bool = false => "flag", "a flag";
        }
        check = Demo::check;
    }

    impl Demo {
        fn check(&self, op: &str) -> Result<(), ParamError> {
            if self.flag && self.colour == Colour::Red {
                return Err(ParamError::new(op, "flag", "not with red"));
            }
            Ok(())
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Result<Demo, ParamError> {
        Demo::from_pairs("demo", p.iter().copied())
    }

    fn reason(p: &[(&str, &str)]) -> String {
        let e = pairs(p).unwrap_err();
        assert_eq!(e.op, "demo");
        e.reason
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        assert_eq!(pairs(&[]).unwrap(), Demo::default());
        let d = pairs(&[("small", "9"), ("colour", "light-blue"), ("flag", "on")]).unwrap();
        assert_eq!(d.small.get(), 9);
        assert_eq!(d.colour, Colour::LightBlue);
        assert!(d.flag);
        assert_eq!(d.window, Window::of(5));
    }

    #[test]
    fn ranges_are_refused_outside_their_bounds() {
        assert_eq!(reason(&[("small", "1")]), "1 is outside 2..=9");
        assert_eq!(reason(&[("small", "10")]), "10 is outside 2..=9");
        assert_eq!(reason(&[("small", "-1")]), "-1 is outside 2..=9");
        assert_eq!(reason(&[("small", "1e3")]), "\"1e3\" is not an integer");
        assert_eq!(reason(&[("window", "4")]), "4 must be odd");
        assert_eq!(reason(&[("window", "-5")]), "-5 is outside -3..=15");
        assert_eq!(pairs(&[("window", "-3")]).unwrap().window.get(), -3);
        assert_eq!(reason(&[("fraction", "1.5")]), "1.5 is outside -0.5..=1");
        assert_eq!(
            reason(&[("fraction", "nan")]),
            "\"nan\" is not a finite number"
        );
        assert_eq!(reason(&[("fraction", "x")]), "\"x\" is not a number");
        assert_eq!(pairs(&[("fraction", "-0.5")]).unwrap().fraction.get(), -0.5);
        assert_eq!((Small::MIN, Small::MAX), (2, 9));
        assert_eq!((Window::MIN, Window::MAX), (-3, 15));
        assert_eq!((Fraction::MIN, Fraction::MAX), (-0.5, 1.0));
        assert!(Small::new(1).is_err() && Small::new(2).is_ok());
        assert!(Window::new(2).is_err() && Window::new(-1).is_ok());
        assert!(Fraction::new(f32::NAN).is_err() && Fraction::new(f32::INFINITY).is_err());
    }

    #[test]
    fn an_unknown_choice_lists_the_allowed_names() {
        let e = pairs(&[("colour", "green")]).unwrap_err();
        assert_eq!(e.key, "colour");
        assert_eq!(e.reason, "\"green\" is not one of red, light-blue");
        assert_eq!(
            e.to_string(),
            "demo.colour: \"green\" is not one of red, light-blue"
        );
        assert_eq!(Colour::NAMES, ["red", "light-blue"]);
        assert_eq!(Colour::LightBlue.name(), "light-blue");
    }

    #[test]
    fn bools_take_the_cli_spellings_and_json_booleans_only() {
        for (raw, want) in [("true", true), ("1", true), ("no", false), ("off", false)] {
            assert_eq!(
                pairs(&[("flag", raw), ("colour", "light-blue")])
                    .unwrap()
                    .flag,
                want
            );
        }
        assert_eq!(
            reason(&[("flag", "maybe")]),
            "\"maybe\" is not true or false"
        );
        let e = Demo::from_values("demo", json!({"flag": 1}).as_object().unwrap()).unwrap_err();
        assert_eq!(e.reason, "1 is not true or false");
    }

    #[test]
    fn unknown_keys_and_cross_field_rules_are_errors() {
        let e = pairs(&[("nope", "1")]).unwrap_err();
        assert_eq!(e.key, "nope");
        assert!(e.reason.contains("known: small, window"), "{e}");
        let e = Demo::from_values("demo", json!({"nope": 1}).as_object().unwrap()).unwrap_err();
        assert_eq!(e.key, "nope");
        assert_eq!(reason(&[("flag", "true")]), "not with red");
    }

    #[test]
    fn json_is_read_by_the_same_types() {
        let values = json!({"small": 4, "window": 7, "fraction": 1, "colour": "red"});
        let d = Demo::from_values("demo", values.as_object().unwrap()).unwrap();
        assert_eq!(
            (d.small.get(), d.window.get(), d.fraction.get()),
            (4, 7, 1.0)
        );
        for (bad, why) in [
            (json!({"small": 4.5}), "4.5 is not an integer"),
            (json!({"small": "4"}), "\"4\" is not an integer"),
            (
                json!({"small": 4_294_967_300u64}),
                "4294967300 is outside 2..=9",
            ),
            (json!({"fraction": null}), "null is not a finite number"),
            (json!({"colour": 1}), "1 is not one of red, light-blue"),
        ] {
            let e = Demo::from_values("demo", bad.as_object().unwrap()).unwrap_err();
            assert_eq!(e.reason, why, "{bad}");
        }
    }

    #[test]
    fn serde_writes_a_plain_struct_and_reads_through_the_types() {
        let d = Demo::default();
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(
            text,
            r#"{"small":3,"window":5,"fraction":0.25,"colour":"red","flag":false}"#
        );
        assert_eq!(serde_json::from_str::<Demo>(&text).unwrap(), d);
        assert_eq!(serde_json::from_str::<Demo>("{}").unwrap(), d);
        let e = serde_json::from_str::<Demo>(r#"{"colour":"blue"}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("colour: \"blue\" is not one of red, light-blue"),
            "{e}"
        );
    }

    #[test]
    fn specs_and_schema_come_from_the_types() {
        let kinds: Vec<Kind> = Demo::SPECS.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Int { min: 2, max: 9 },
                Kind::OddInt { min: -3, max: 15 },
                Kind::Float {
                    min: -0.5,
                    max: 1.0
                },
                Kind::Choice(&["red", "light-blue"]),
                Kind::Bool,
            ]
        );
        let schema = Demo::schema();
        assert_eq!(
            schema[2],
            json!({"key": "fraction", "type": "float", "min": -0.5, "max": 1.0,
                   "default": 0.25, "help": "a fraction"})
        );
        assert_eq!(schema[3]["choices"], json!(["red", "light-blue"]));
    }

    #[test]
    fn errors_print_the_parts_they_know() {
        assert_eq!(ParamError::new("a", "b", "c").to_string(), "a.b: c");
        assert_eq!(ParamError::new("a", "", "c").to_string(), "a: c");
        assert_eq!(ParamError::new("", "b", "c").to_string(), "b: c");
        assert_eq!(ParamError::new("", "", "c").to_string(), "c");
    }
}
