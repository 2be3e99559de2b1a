//! Typed decoding of composed YAML nodes through serde.
//!
//! Scalar typing is driven by the type asked for, not guessed up front:
//! - A string field takes any scalar's text as written: `no`, `on`, `123`, `true` and `~` are
//!   all strings there (Kubernetes users write `enabled: no` in label maps and mean a string).
//! - Numbers and booleans need a *plain* (unquoted) scalar: `"80"` where an integer is
//!   expected is a type error, as it is for Kubernetes, whose API types are JSON. Integers are
//!   YAML 1.2 core: decimal with an optional sign, `0x…` and `0o…`. A float field also takes
//!   an integer, and only finite values. Booleans are `true`/`false` (also `True`, `TRUE`…);
//!   YAML 1.1's `yes`/`no`/`on`/`off` are not booleans.
//! - Where the type accepts anything (`deserialize_any`: number-or-string values, flattened
//!   maps), a plain scalar is resolved by the YAML 1.2 core schema (null, bool, int, float,
//!   else string); quoted and block scalars are always strings.
//! - Null (a plain empty, `~` or `null`) is `None` for an option and an empty sequence or
//!   mapping where one is expected (`ingress:` with nothing after it).
//!
//! Errors carry the path below the decoded node (`ingress[0].destination.ports[1]`) and the
//! line of the offending node; the path is assembled on the way out of a failure, so decoding
//! that succeeds pays nothing for it.

use std::fmt;

use serde::de::{self, DeserializeSeed, Expected, Unexpected, Visitor};

use super::yaml::{Entries, Items, Node, NodeValue, is_null_text};

/// Decode `node` into `T`.
pub fn decode<'de, T: de::Deserialize<'de>>(node: Node<'de>) -> Result<T, DecodeError> {
    T::deserialize(node)
}

/// A value that did not decode, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Steps from the decoded node down to the failing one, innermost *first* (errors are
    /// built at the failure and gain outer steps as they travel up).
    steps: Vec<PathStep>,
    line: Option<usize>,
    message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathStep {
    Key(String),
    Index(usize),
}

impl DecodeError {
    fn new(message: String) -> DecodeError {
        DecodeError {
            steps: Vec::new(),
            line: None,
            message,
        }
    }

    /// Line of the offending node, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Field path of the failure below `base` (which may be empty): `spec.ingress[0].action`.
    /// Keys that are not simple words are written in brackets: `labels["a.b/c"]`.
    pub fn path(&self, base: &str) -> String {
        let mut path = base.to_owned();
        for step in self.steps.iter().rev() {
            match step {
                PathStep::Index(i) => path.push_str(&format!("[{i}]")),
                PathStep::Key(key) if is_simple_key(key) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                PathStep::Key(key) => path.push_str(&format!("[{key:?}]")),
            }
        }
        path
    }

    fn at_line(mut self, line: usize) -> DecodeError {
        self.line.get_or_insert(line);
        self
    }

    fn within(mut self, step: PathStep, line: usize) -> DecodeError {
        self.steps.push(step);
        self.at_line(line)
    }
}

fn is_simple_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path("");
        if !path.is_empty() {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> DecodeError {
        DecodeError::new(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected, exp: &dyn Expected) -> DecodeError {
        DecodeError::new(format!(
            "expected {exp}, found {}",
            describe_unexpected(unexp)
        ))
    }

    fn invalid_value(unexp: Unexpected, exp: &dyn Expected) -> DecodeError {
        DecodeError::new(format!(
            "invalid value {}: expected {exp}",
            describe_unexpected(unexp)
        ))
    }

    fn invalid_length(len: usize, exp: &dyn Expected) -> DecodeError {
        DecodeError::new(format!("expected {exp}, found {len} elements"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> DecodeError {
        DecodeError::new(format!(
            "unknown variant {variant:?}; {}",
            one_of(expected, "variants")
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> DecodeError {
        DecodeError::new(format!(
            "unknown field {field:?}; {}",
            one_of(expected, "fields")
        ))
    }

    fn missing_field(field: &'static str) -> DecodeError {
        let mut e = DecodeError::new("required field is missing".to_owned());
        e.steps.push(PathStep::Key(field.to_owned()));
        e
    }

    fn duplicate_field(field: &'static str) -> DecodeError {
        DecodeError::new(format!("field {field:?} is given twice"))
    }
}

fn one_of(expected: &[&str], what: &str) -> String {
    if expected.is_empty() {
        format!("no {what} are allowed here")
    } else {
        format!("expected one of {}", expected.join(", "))
    }
}

fn describe_unexpected(unexp: Unexpected) -> String {
    match unexp {
        Unexpected::Bool(b) => format!("the boolean {b}"),
        Unexpected::Unsigned(n) => format!("the number {n}"),
        Unexpected::Signed(n) => format!("the number {n}"),
        Unexpected::Float(n) => format!("the number {n}"),
        Unexpected::Char(c) => format!("the string {:?}", c.to_string()),
        Unexpected::Str(s) => format!("the string {s:?}"),
        Unexpected::Bytes(_) => "bytes".to_owned(),
        Unexpected::Unit => "null".to_owned(),
        Unexpected::Option => "an optional value".to_owned(),
        Unexpected::NewtypeStruct | Unexpected::NewtypeVariant => "a wrapped value".to_owned(),
        Unexpected::Seq | Unexpected::TupleVariant => "a sequence".to_owned(),
        Unexpected::Map | Unexpected::StructVariant => "a mapping".to_owned(),
        Unexpected::Enum | Unexpected::UnitVariant => "an enum variant".to_owned(),
        Unexpected::Other(other) => other.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Plain scalar resolution (YAML 1.2 core schema)

/// What a plain scalar means under the YAML 1.2 core schema.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plain {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer above `i64::MAX` that fits a `u64`.
    UInt(u64),
    /// An integer too large for any integer type.
    BigInt,
    Float(f64),
    Str,
}

fn resolve_plain(text: &str) -> Plain {
    if is_null_text(text) {
        return Plain::Null;
    }
    match text {
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        _ => {}
    }
    if let Some(int) = resolve_int(text) {
        return int;
    }
    resolve_float(text).map_or(Plain::Str, Plain::Float)
}

fn resolve_int(text: &str) -> Option<Plain> {
    let radix_digits = |prefix: &str, radix: u32| {
        text.strip_prefix(prefix)
            .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_digit(radix)))
            .map(|d| u64::from_str_radix(d, radix).map_or(Plain::BigInt, unsigned))
    };
    if let Some(plain) = radix_digits("0x", 16).or_else(|| radix_digits("0o", 8)) {
        return Some(plain);
    }
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(if negative {
        text.parse::<i64>().map_or(Plain::BigInt, Plain::Int)
    } else {
        digits.parse::<u64>().map_or(Plain::BigInt, unsigned)
    })
}

fn unsigned(n: u64) -> Plain {
    i64::try_from(n).map_or(Plain::UInt(n), Plain::Int)
}

fn resolve_float(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let negative = text.starts_with('-');
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, frac)) => {
            all_digits(whole) && all_digits(frac) && !(whole.is_empty() && frac.is_empty())
        }
        None => !mantissa.is_empty() && all_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
        !digits.is_empty() && all_digits(digits)
    });
    if !(mantissa_ok && exponent_ok) {
        return None;
    }
    text.parse::<f64>().ok()
}

// ---------------------------------------------------------------------------------------------
// The deserializer

impl<'de> Node<'de> {
    /// The resolved meaning of a plain scalar; `None` for anything else.
    fn plain(self) -> Option<Plain> {
        match self.value() {
            NodeValue::Scalar { text, plain: true } => Some(resolve_plain(text)),
            _ => None,
        }
    }

    /// Gives an error from below this node this node's line, unless it has a line already.
    fn locate(self) -> impl Fn(DecodeError) -> DecodeError {
        let line = self.line();
        move |e: DecodeError| e.at_line(line)
    }

    fn mismatch(self, expected: &str) -> DecodeError {
        DecodeError::new(format!("expected {expected}, found {}", self.describe()))
            .at_line(self.line())
    }

    fn integer<T: TryFrom<i64> + TryFrom<u64>>(self) -> Result<T, DecodeError> {
        let out_of_range = || {
            DecodeError::new(format!(
                "{} is out of range for this field ({})",
                self.describe(),
                std::any::type_name::<T>()
            ))
            .at_line(self.line())
        };
        match self.plain() {
            Some(Plain::Int(n)) => T::try_from(n).map_err(|_| out_of_range()),
            Some(Plain::UInt(n)) => T::try_from(n).map_err(|_| out_of_range()),
            Some(Plain::BigInt) => Err(out_of_range()),
            _ => Err(self.mismatch("an integer")),
        }
    }

    fn float(self) -> Result<f64, DecodeError> {
        let value = match self.plain() {
            Some(Plain::Int(n)) => n as f64,
            Some(Plain::UInt(n)) => n as f64,
            Some(Plain::Float(f)) => f,
            Some(Plain::BigInt) => match self.as_scalar().map(str::parse::<f64>) {
                Some(Ok(f)) => f,
                _ => return Err(self.mismatch("a number")),
            },
            _ => return Err(self.mismatch("a number")),
        };
        if value.is_finite() {
            Ok(value)
        } else {
            Err(self.mismatch("a finite number"))
        }
    }
}

macro_rules! deserialize_integer {
    ($($method:ident => $visit:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
                let n: $ty = self.integer()?;
                visitor.$visit(n).map_err(self.locate())
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Node<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let result = match self.value() {
            NodeValue::Map(entries) => visitor.visit_map(MapReader::new(Some(entries))),
            NodeValue::Seq(items) => visitor.visit_seq(SeqReader::new(Some(items))),
            NodeValue::Scalar { text, plain: false } => visitor.visit_borrowed_str(text),
            NodeValue::Scalar { text, plain: true } => match resolve_plain(text) {
                Plain::Null => visitor.visit_unit(),
                Plain::Bool(b) => visitor.visit_bool(b),
                Plain::Int(n) => visitor.visit_i64(n),
                Plain::UInt(n) => visitor.visit_u64(n),
                Plain::Float(f) => visitor.visit_f64(f),
                Plain::BigInt | Plain::Str => visitor.visit_borrowed_str(text),
            },
        };
        result.map_err(self.locate())
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.plain() {
            Some(Plain::Bool(b)) => visitor.visit_bool(b).map_err(self.locate()),
            _ => Err(self.mismatch("true or false")),
        }
    }

    deserialize_integer! {
        deserialize_i8 => visit_i8(i8),
        deserialize_i16 => visit_i16(i16),
        deserialize_i32 => visit_i32(i32),
        deserialize_i64 => visit_i64(i64),
        deserialize_u8 => visit_u8(u8),
        deserialize_u16 => visit_u16(u16),
        deserialize_u32 => visit_u32(u32),
        deserialize_u64 => visit_u64(u64),
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let value = self.float()?;
        visitor.visit_f64(value).map_err(self.locate())
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let mut chars = self.as_scalar().unwrap_or_default().chars();
        match (self.as_scalar(), chars.next(), chars.next()) {
            (Some(_), Some(c), None) => visitor.visit_char(c).map_err(self.locate()),
            _ => Err(self.mismatch("a single character")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.as_scalar() {
            Some(text) => visitor.visit_borrowed_str(text).map_err(self.locate()),
            None => Err(self.mismatch("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.as_scalar() {
            Some(text) => visitor
                .visit_borrowed_bytes(text.as_bytes())
                .map_err(self.locate()),
            None => Err(self.mismatch("a string")),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let result = if self.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        };
        result.map_err(self.locate())
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        if self.is_null() {
            visitor.visit_unit().map_err(self.locate())
        } else {
            Err(self.mismatch("null"))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self).map_err(self.locate())
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let reader = match self.value() {
            NodeValue::Seq(items) => SeqReader::new(Some(items)),
            _ if self.is_null() => SeqReader::new(None),
            _ => return Err(self.mismatch("a sequence")),
        };
        visitor.visit_seq(reader).map_err(self.locate())
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let reader = match self.value() {
            NodeValue::Map(entries) => MapReader::new(Some(entries)),
            _ if self.is_null() => MapReader::new(None),
            _ => return Err(self.mismatch("a mapping")),
        };
        visitor.visit_map(reader).map_err(self.locate())
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let result = match self.value() {
            NodeValue::Scalar { text, .. } => {
                visitor.visit_enum(de::value::BorrowedStrDeserializer::<DecodeError>::new(text))
            }
            NodeValue::Map(mut entries) if entries.len() == 1 => match entries.next() {
                Some((key, value)) => visitor.visit_enum(MapVariant { key, value }),
                None => Err(self.mismatch("a variant name or a mapping with one entry")),
            },
            _ => Err(self.mismatch("a variant name or a mapping with one entry")),
        };
        result.map_err(self.locate())
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }
}

fn key_step(key: Node<'_>) -> PathStep {
    PathStep::Key(key.as_scalar().unwrap_or("?").to_owned())
}

struct SeqReader<'de> {
    items: Option<Items<'de>>,
    index: usize,
}

impl<'de> SeqReader<'de> {
    fn new(items: Option<Items<'de>>) -> SeqReader<'de> {
        SeqReader { items, index: 0 }
    }
}

impl<'de> de::SeqAccess<'de> for SeqReader<'de> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        let Some(item) = self.items.as_mut().and_then(Iterator::next) else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        seed.deserialize(item)
            .map(Some)
            .map_err(|e| e.within(PathStep::Index(index), item.line()))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.as_ref().map_or(0, ExactSizeIterator::len))
    }
}

struct MapReader<'de> {
    entries: Option<Entries<'de>>,
    /// The entry whose key was just read and whose value comes next.
    current: Option<(Node<'de>, Node<'de>)>,
}

impl<'de> MapReader<'de> {
    fn new(entries: Option<Entries<'de>>) -> MapReader<'de> {
        MapReader {
            entries,
            current: None,
        }
    }
}

impl<'de> de::MapAccess<'de> for MapReader<'de> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        let Some((key, value)) = self.entries.as_mut().and_then(Iterator::next) else {
            return Ok(None);
        };
        self.current = Some((key, value));
        seed.deserialize(key)
            .map(Some)
            .map_err(|e| e.within(key_step(key), key.line()))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let Some((key, value)) = self.current.take() else {
            return Err(de::Error::custom("a mapping value was read before its key"));
        };
        seed.deserialize(value)
            .map_err(|e| e.within(key_step(key), key.line()))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.as_ref().map_or(0, ExactSizeIterator::len))
    }
}

/// An enum written as a mapping with one entry: `{Variant: value}`.
struct MapVariant<'de> {
    key: Node<'de>,
    value: Node<'de>,
}

impl<'de> de::EnumAccess<'de> for MapVariant<'de> {
    type Error = DecodeError;
    type Variant = Node<'de>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Node<'de>), DecodeError> {
        let variant = seed.deserialize(self.key)?;
        Ok((variant, self.value))
    }
}

impl<'de> de::VariantAccess<'de> for Node<'de> {
    type Error = DecodeError;

    fn unit_variant(self) -> Result<(), DecodeError> {
        if self.is_null() {
            Ok(())
        } else {
            Err(self.mismatch("nothing after a unit variant"))
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, DecodeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::Limits;
    use crate::model::resources::{
        EntityRule, FailsafeList, FelixConfigurationSpec, GlobalNetworkPolicySpec, Labels,
        PortValue, ProtocolValue, Rule,
    };
    use crate::model::yaml::{Document, compose};

    fn document(text: &str) -> Document {
        compose(text, &Limits::default()).remove(0).unwrap()
    }

    fn decode_text<T: for<'de> de::Deserialize<'de>>(text: &str) -> Result<T, DecodeError> {
        decode(document(text).root())
    }

    #[test]
    fn string_fields_take_any_scalar_as_written() {
        let labels: Labels = decode_text(concat!(
            "a: no\nb: yes\nc: on\nd: 123\ne: true\nf: 0x1F\ng: 1.50\n",
            "h: '007'\ni:\nj: ~\nk: |\n  line\n",
        ))
        .unwrap();
        let expected = [
            ("a", "no"),
            ("b", "yes"),
            ("c", "on"),
            ("d", "123"),
            ("e", "true"),
            ("f", "0x1F"),
            ("g", "1.50"),
            ("h", "007"),
            ("i", ""),
            ("j", "~"),
            ("k", "line\n"),
        ];
        let expected: Labels = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(labels, expected);

        let metadata: crate::model::Metadata =
            decode_text("name: 123\nnamespace: no\nannotations: {a: true, b: 1.5}\n").unwrap();
        assert_eq!(metadata.name.as_deref(), Some("123"));
        assert_eq!(metadata.namespace.as_deref(), Some("no"));
        assert_eq!(metadata.annotations["a"], "true");
        assert_eq!(metadata.annotations["b"], "1.5");
        let spec: GlobalNetworkPolicySpec = decode_text("tier: on\ntypes: [yes, 1]\n").unwrap();
        assert_eq!(spec.tier.as_deref(), Some("on"));
        assert_eq!(spec.types, ["yes", "1"]);
    }

    #[test]
    fn numbers_and_booleans_follow_the_yaml_1_2_core_schema() {
        #[derive(Debug, serde::Deserialize)]
        struct Typed {
            int: Option<i64>,
            small: Option<u16>,
            float: Option<f64>,
            flag: Option<bool>,
        }
        let ok = [
            ("int: 42", Some(42), None, None, None),
            ("int: -7", Some(-7), None, None, None),
            ("int: 0x1f", Some(31), None, None, None),
            ("int: 0o17", Some(15), None, None, None),
            ("int: 010", Some(10), None, None, None),
            ("small: 65535", None, Some(65535), None, None),
            ("float: 10", None, None, Some(10.0), None),
            ("float: 10.5", None, None, Some(10.5), None),
            ("float: -1e3", None, None, Some(-1000.0), None),
            ("float: .5", None, None, Some(0.5), None),
            ("flag: true", None, None, None, Some(true)),
            ("flag: FALSE", None, None, None, Some(false)),
            ("flag: ~", None, None, None, None),
            ("int:", None, None, None, None),
        ];
        for (text, int, small, float, flag) in ok {
            let t: Typed = decode_text(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (t.int, t.small, t.float, t.flag),
                (int, small, float, flag),
                "{text}"
            );
        }
        let bad = [
            ("int: '42'", "expected an integer, found the string \"42\""),
            ("int: 4.2", "expected an integer, found the number 4.2"),
            ("int: 99999999999999999999", "out of range"),
            ("small: 65536", "out of range"),
            ("small: -1", "out of range"),
            ("float: .inf", "expected a finite number"),
            ("float: ten", "expected a number, found the string \"ten\""),
            (
                "flag: yes",
                "expected true or false, found the string \"yes\"",
            ),
            (
                "flag: 'true'",
                "expected true or false, found the string \"true\"",
            ),
            ("int: [1]", "expected an integer, found a sequence"),
        ];
        for (text, message) in bad {
            let e = decode_text::<Typed>(text).unwrap_err();
            assert!(e.message().contains(message), "{text}: {e}");
            assert_eq!(e.line(), Some(1), "{text}");
        }
    }

    #[test]
    fn ports_mix_numbers_ranges_and_names() {
        let rule: EntityRule =
            decode_text("ports: [80, \"8080:8090\", http, '443', 0x50]\nnotPorts: [-1]\n").unwrap();
        assert_eq!(
            rule.ports,
            vec![
                PortValue::Number(80),
                PortValue::Text("8080:8090".into()),
                PortValue::Text("http".into()),
                PortValue::Text("443".into()),
                PortValue::Number(80),
            ]
        );
        assert_eq!(rule.not_ports, vec![PortValue::Number(-1)]);
        let e = decode_text::<EntityRule>("ports:\n  - 80\n  - {a: 1}\n").unwrap_err();
        assert_eq!(e.path("spec"), "spec.ports[1]");
        assert_eq!(e.line(), Some(3));
        assert!(e.message().contains("found a mapping"), "{e}");
    }

    #[test]
    fn null_lists_and_maps_are_empty() {
        let spec: GlobalNetworkPolicySpec =
            decode_text("ingress:\negress: ~\ntypes: null\nselector:\n").unwrap();
        assert!(spec.ingress.is_empty() && spec.egress.is_empty() && spec.types.is_empty());
        assert_eq!(spec.selector, None);
        let empty_quoted: GlobalNetworkPolicySpec = decode_text("selector: ''\n").unwrap();
        assert_eq!(empty_quoted.selector.as_deref(), Some(""));
        let empty_spec: GlobalNetworkPolicySpec = decode(document("---\n").root()).unwrap();
        assert_eq!(empty_spec, GlobalNetworkPolicySpec::default());
    }

    #[test]
    fn a_global_network_policy_decodes_into_its_shape() {
        let spec: GlobalNetworkPolicySpec = decode_text(concat!(
            "tier: security\n",
            "order: 10\n",
            "selector: >-\n  role == 'db'\n",
            "types: [Ingress]\n",
            "ingress:\n",
            "  - action: Allow\n",
            "    protocol: TCP\n",
            "    source:\n",
            "      nets: [192.0.2.0/24]\n",
            "      selector: |\n        app == 'web'\n",
            "    destination:\n",
            "      ports: [5432]\n",
            "  - action: Deny\n",
            "    protocol: 17\n",
            "    http: {methods: [GET]}\n",
            "doNotTrack: false\n",
            "preDNAT: true\n",
        ))
        .unwrap();
        assert_eq!(spec.tier.as_deref(), Some("security"));
        assert_eq!(spec.order, Some(10.0));
        assert_eq!(spec.selector.as_deref(), Some("role == 'db'"));
        assert_eq!(spec.types, ["Ingress"]);
        assert!(spec.pre_dnat && !spec.do_not_track);
        let first = &spec.ingress[0];
        assert_eq!(first.action, "Allow");
        assert_eq!(first.protocol, Some(ProtocolValue::Text("TCP".into())));
        assert_eq!(first.source.nets, ["192.0.2.0/24"]);
        assert_eq!(first.source.selector.as_deref(), Some("app == 'web'\n"));
        assert_eq!(first.destination.ports, [PortValue::Number(5432)]);
        assert!(first.http.is_none());
        let second = &spec.ingress[1];
        assert_eq!(second.protocol, Some(ProtocolValue::Number(17)));
        assert!(second.http.is_some());
    }

    #[test]
    fn errors_name_the_field_path_and_line() {
        let text = concat!(
            "ingress:\n",               // 1
            "  - action: Allow\n",      // 2
            "    destination:\n",       // 3
            "      ports: [80, 443]\n", // 4
            "      nots: [1.2.3.4]\n",  // 5
        );
        let e = decode_text::<GlobalNetworkPolicySpec>(text).unwrap_err();
        assert_eq!(e.path("spec"), "spec.ingress[0].destination.nots");
        assert_eq!(e.line(), Some(5));
        assert!(
            e.message()
                .starts_with("unknown field \"nots\"; expected one of nets, notNets"),
            "{e}"
        );

        let cases: [(&str, &str, usize, &str); 6] = [
            (
                "ingress: {action: Allow}\n",
                "spec.ingress",
                1,
                "expected a sequence, found a mapping",
            ),
            (
                "ingress:\n  - protocol: TCP\n",
                "spec.ingress[0].action",
                2,
                "required field is missing",
            ),
            (
                "ingress:\n  - action: [Allow]\n",
                "spec.ingress[0].action",
                2,
                "expected a string, found a sequence",
            ),
            (
                "order: high\n",
                "spec.order",
                1,
                "expected a number, found the string \"high\"",
            ),
            (
                "ingress:\n- action: Allow\n  source:\n    nets: 10.0.0.0/8\n",
                "spec.ingress[0].source.nets",
                4,
                "expected a sequence, found the string \"10.0.0.0/8\"",
            ),
            (
                "ingress:\n- action: Allow\n  protocol: {tcp: 1}\n",
                "spec.ingress[0].protocol",
                3,
                "expected a protocol name or number, found a mapping",
            ),
        ];
        for (text, path, line, message) in cases {
            let e = decode_text::<GlobalNetworkPolicySpec>(text).unwrap_err();
            assert_eq!(
                (e.path("spec").as_str(), e.line(), e.message()),
                (path, Some(line), message),
                "{text}"
            );
        }
    }

    #[test]
    fn keys_with_dots_are_bracketed_in_paths() {
        let e = decode_text::<BTreeMap<String, Labels>>("labels:\n  a.b/c: [x]\n").unwrap_err();
        assert_eq!(e.path("metadata"), "metadata.labels[\"a.b/c\"]");
        assert_eq!(e.line(), Some(2));
    }

    #[test]
    fn flattened_felix_configuration_keeps_other_fields() {
        let spec: FelixConfigurationSpec = decode_text(concat!(
            "failsafeInboundHostPorts:\n",
            "  - {protocol: tcp, port: 22}\n",
            "failsafeOutboundHostPorts: none\n",
            "prometheusMetricsEnabled: true\n",
            "prometheusMetricsPort: 9091\n",
            "bpfEnabled: false\n",
            "logFilePath: none\n",
            "routeTableRanges: [{min: 1, max: 250}]\n",
        ))
        .unwrap();
        let FailsafeList::Ports(inbound) = spec.failsafe_inbound_host_ports.unwrap() else {
            panic!("inbound ports expected");
        };
        assert_eq!((inbound[0].protocol.as_str(), inbound[0].port), ("tcp", 22));
        assert_eq!(spec.failsafe_outbound_host_ports, Some(FailsafeList::None));
        assert_eq!(spec.prometheus_metrics_enabled, Some(true));
        assert_eq!(spec.prometheus_metrics_port, Some(9091));
        let others: Vec<&str> = spec.other.keys().map(String::as_str).collect();
        assert_eq!(others, ["bpfEnabled", "logFilePath", "routeTableRanges"]);
    }

    #[test]
    fn aliases_and_merges_decode_like_written_out_values() {
        let spec: GlobalNetworkPolicySpec = decode_text(concat!(
            "ingress:\n",
            "  - &allow {action: Allow, protocol: TCP, destination: {ports: [80]}}\n",
            "  - <<: *allow\n",
            "    protocol: UDP\n",
        ))
        .unwrap();
        assert_eq!(spec.ingress[1].destination, spec.ingress[0].destination);
        assert_eq!(
            spec.ingress[1].protocol,
            Some(ProtocolValue::Text("UDP".into()))
        );
        assert_eq!(spec.ingress[1].action, "Allow");
    }

    #[test]
    fn enums_decode_from_names_and_single_entry_maps() {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        enum Shape {
            Empty,
            Wrapped(u8),
            Pair { a: u8 },
        }
        let shapes: Vec<Shape> = decode_text("[Empty, {Wrapped: 3}, {Pair: {a: 1}}]").unwrap();
        assert_eq!(
            shapes,
            [Shape::Empty, Shape::Wrapped(3), Shape::Pair { a: 1 }]
        );
        let e = decode_text::<Vec<Shape>>("[Round]").unwrap_err();
        assert!(e.message().contains("unknown variant \"Round\""), "{e}");
    }

    #[test]
    fn rules_reject_unknown_fields() {
        let e = decode_text::<Rule>("action: Allow\nicmpType: 8\n").unwrap_err();
        assert_eq!((e.path(""), e.line()), ("icmpType".to_owned(), Some(2)));
    }

    #[test]
    fn plain_resolution_table() {
        let cases = [
            ("", Plain::Null),
            ("~", Plain::Null),
            ("NULL", Plain::Null),
            ("True", Plain::Bool(true)),
            ("yes", Plain::Str),
            ("+12", Plain::Int(12)),
            ("-0", Plain::Int(0)),
            ("18446744073709551615", Plain::UInt(u64::MAX)),
            ("18446744073709551616", Plain::BigInt),
            ("0xFF", Plain::Int(255)),
            ("0x", Plain::Str),
            ("0o8", Plain::Str),
            ("1.", Plain::Float(1.0)),
            ("1e2", Plain::Float(100.0)),
            ("1e", Plain::Str),
            (".", Plain::Str),
            ("-.inf", Plain::Float(f64::NEG_INFINITY)),
            ("inf", Plain::Str),
            ("NaN", Plain::Str),
            ("1_000", Plain::Str),
            ("8080:8090", Plain::Str),
        ];
        for (text, expected) in cases {
            assert_eq!(resolve_plain(text), expected, "{text:?}");
        }
        assert!(matches!(resolve_plain(".nan"), Plain::Float(f) if f.is_nan()));
    }
}
