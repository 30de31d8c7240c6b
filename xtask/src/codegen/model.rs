//! The resolved message model the emitters work from: schema files turned into
//! structs with typed fields, parsed version ranges and defaults, and checked for
//! the invariants the emitted code relies on.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, ensure, Context, Result};

use super::names;
use super::schema::{FieldSpec, MessageSpec, StructSpec, Versions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
    Header,
    Data,
}

/// One schema file.
#[derive(Debug)]
pub struct Message {
    /// `ProduceRequest`
    pub name: String,
    /// `produce_request`
    pub module: String,
    /// `ProduceRequest.json`
    pub file: String,
    pub kind: Kind,
    pub api_key: Option<i16>,
    pub valid: Versions,
    pub flexible: Versions,
    pub latest_version_unstable: bool,
    pub listeners: Vec<String>,
    /// The top-level struct first, then nested structs in definition order, then
    /// the common structs.
    pub structs: Vec<Struct>,
}

impl Message {
    /// The API name Kafka uses (`ProduceRequest` -> `Produce`).
    pub fn api_name(&self) -> &str {
        self.name
            .strip_suffix("Request")
            .or_else(|| self.name.strip_suffix("Response"))
            .unwrap_or(&self.name)
    }
}

#[derive(Debug)]
pub struct Struct {
    pub name: String,
    pub doc: Option<String>,
    /// The versions in which this struct can be encoded: the message's valid
    /// versions narrowed by the fields that lead to it. Version checks that are
    /// always true within this range are left out of the generated code.
    pub versions: Versions,
    pub fields: Vec<Field>,
}

#[derive(Debug)]
pub struct Field {
    /// The schema name, `ThrottleTimeMs`.
    pub json_name: String,
    /// The Rust name, `throttle_time_ms`.
    pub rust_name: String,
    pub ty: Type,
    pub versions: Versions,
    pub nullable: Versions,
    /// Tag number, for fields that live in the tagged-field section.
    pub tag: Option<u32>,
    pub ignorable: bool,
    pub about: Option<String>,
    /// Field-level override of the message's flexible versions.
    pub flexible: Option<Versions>,
    pub default: DefaultValue,
    /// Whether the Rust type is an `Option`: nullable in some version, or null by default.
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    Bool,
    Int8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Float64,
    String,
    Bytes,
    Records,
    Uuid,
    Struct(String),
    Array(Box<Type>),
}

impl Type {
    fn parse(s: &str) -> Type {
        if let Some(elem) = s.strip_prefix("[]") {
            return Type::Array(Box::new(Type::parse(elem)));
        }
        match s {
            "bool" => Type::Bool,
            "int8" => Type::Int8,
            "int16" => Type::Int16,
            "uint16" => Type::Uint16,
            "int32" => Type::Int32,
            "uint32" => Type::Uint32,
            "int64" => Type::Int64,
            "float64" => Type::Float64,
            "string" => Type::String,
            "bytes" => Type::Bytes,
            "records" => Type::Records,
            "uuid" => Type::Uuid,
            other => Type::Struct(other.to_owned()),
        }
    }

    /// Integer range for integer types.
    pub fn int_range(&self) -> Option<(i64, i64)> {
        Some(match self {
            Type::Int8 => (i8::MIN.into(), i8::MAX.into()),
            Type::Int16 => (i16::MIN.into(), i16::MAX.into()),
            Type::Uint16 => (0, u16::MAX.into()),
            Type::Int32 => (i32::MIN.into(), i32::MAX.into()),
            Type::Uint32 => (0, u32::MAX.into()),
            Type::Int64 => (i64::MIN, i64::MAX),
            _ => return None,
        })
    }

    /// Whether the generator supports null for this type. (Kafka's README lists
    /// uuid too, but no schema uses a nullable uuid, so it is left out.)
    fn can_be_null(&self) -> bool {
        matches!(
            self,
            Type::String | Type::Bytes | Type::Records | Type::Struct(_) | Type::Array(_)
        )
    }
}

/// A field's default value, as the schema states it (or Kafka's implicit one).
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultValue {
    Int(i64),
    Bool(bool),
    Float(f64),
    /// A string default; `""` is the implicit one.
    Str(String),
    /// `"default": "null"` (and records, which Kafka defaults to null).
    Null,
    /// The type's empty value: empty bytes or array, zero uuid, default struct.
    Empty,
}

/// Parses every schema file and resolves it.
pub fn build(specs: Vec<(String, MessageSpec)>) -> Result<Vec<Message>> {
    let mut out = Vec::with_capacity(specs.len());
    for (file, spec) in specs {
        out.push(build_message(&file, spec).with_context(|| format!("in {file}"))?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    let mut seen = HashMap::new();
    for m in &out {
        if let Some(other) = seen.insert(m.module.clone(), &m.file) {
            bail!(
                "{} and {} map to the same module {}",
                m.file,
                other,
                m.module
            );
        }
    }
    Ok(out)
}

/// Names the generated code imports or relies on; a schema struct with one of these
/// names would shadow them.
const RESERVED_TYPE_NAMES: &[&str] = &[
    "Bytes",
    "Writer",
    "Decode",
    "DecodeError",
    "Encode",
    "EncodeError",
    "Option",
    "Result",
    "String",
    "Vec",
    "Box",
    "Default",
    "Self",
    "Some",
    "None",
    "Ok",
    "Err",
];

fn build_message(file: &str, spec: MessageSpec) -> Result<Message> {
    let kind = match spec.kind.as_str() {
        "request" => Kind::Request,
        "response" => Kind::Response,
        "header" => Kind::Header,
        "data" => Kind::Data,
        other => bail!("unknown message type `{other}`"),
    };
    ensure!(
        matches!(kind, Kind::Request | Kind::Response) == spec.api_key.is_some(),
        "requests and responses (only) must have an apiKey"
    );
    let valid = Versions::parse(&spec.valid_versions)?;
    ensure!(!valid.is_empty(), "no valid versions");
    ensure!(
        valid.hi != i16::MAX,
        "validVersions must have an upper bound"
    );
    let flexible = Versions::parse(&spec.flexible_versions)?;
    ensure!(
        flexible.is_empty() || flexible.hi == i16::MAX,
        "flexibleVersions must be open-ended"
    );

    let common: BTreeMap<&str, &StructSpec> = spec
        .common_structs
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();

    // Pass 1: the versions in which each struct is reachable. A common struct used by
    // several fields gets the hull of their ranges.
    let mut reach: HashMap<String, Versions> = HashMap::new();
    collect_reach(&spec.fields, valid, &common, &mut reach, 0)?;

    // Pass 2: build the structs, top-level first, nested in definition order.
    let mut structs = Vec::new();
    let top_doc = format!(
        "The `{}` {} (schema `{}`).",
        spec.name,
        match kind {
            Kind::Request | Kind::Response => "message",
            Kind::Header => "header",
            Kind::Data => "data record",
        },
        file
    );
    build_struct(
        &spec.name,
        Some(top_doc),
        &spec.fields,
        valid,
        flexible,
        &common,
        &reach,
        &mut structs,
    )?;
    for cs in &spec.common_structs {
        let versions = reach
            .get(&cs.name)
            .copied()
            .unwrap_or(valid)
            .intersect(Versions::parse(&cs.versions)?);
        build_struct(
            &cs.name,
            None,
            &cs.fields,
            versions,
            flexible,
            &common,
            &reach,
            &mut structs,
        )?;
    }
    let mut names = HashMap::new();
    for s in &structs {
        ensure!(
            !RESERVED_TYPE_NAMES.contains(&s.name.as_str()),
            "struct name {} would shadow a name the generated code uses",
            s.name
        );
        ensure!(
            names.insert(s.name.as_str(), ()).is_none(),
            "struct {} is defined twice",
            s.name
        );
    }

    Ok(Message {
        module: names::snake_case(&spec.name),
        name: spec.name,
        file: file.to_owned(),
        kind,
        api_key: spec.api_key,
        valid,
        flexible,
        latest_version_unstable: spec.latest_version_unstable,
        listeners: {
            let mut l = spec.listeners;
            l.sort();
            l
        },
        structs,
    })
}

fn struct_name(ty: &Type) -> Option<&str> {
    match ty {
        Type::Struct(n) => Some(n),
        Type::Array(e) => struct_name(e),
        _ => None,
    }
}

fn collect_reach(
    fields: &[FieldSpec],
    ctx: Versions,
    common: &BTreeMap<&str, &StructSpec>,
    reach: &mut HashMap<String, Versions>,
    depth: usize,
) -> Result<()> {
    ensure!(
        depth < 32,
        "structs nest too deeply (recursive common struct?)"
    );
    for f in fields {
        let ty = Type::parse(&f.ty);
        let Some(name) = struct_name(&ty) else {
            continue;
        };
        let child = ctx.intersect(Versions::parse(&f.versions)?);
        let entry = reach.entry(name.to_owned()).or_insert(Versions::NONE);
        *entry = entry.hull(child);
        if let Some(inner) = &f.fields {
            collect_reach(inner, child, common, reach, depth + 1)?;
        } else if let Some(cs) = common.get(name) {
            let child = child.intersect(Versions::parse(&cs.versions)?);
            collect_reach(&cs.fields, child, common, reach, depth + 1)?;
        } else {
            bail!("field {} has unknown type {}", f.name, f.ty);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn build_struct(
    name: &str,
    doc: Option<String>,
    specs: &[FieldSpec],
    versions: Versions,
    msg_flexible: Versions,
    common: &BTreeMap<&str, &StructSpec>,
    reach: &HashMap<String, Versions>,
    out: &mut Vec<Struct>,
) -> Result<()> {
    let mut fields = Vec::with_capacity(specs.len());
    let mut nested = Vec::new();
    for f in specs {
        let field =
            build_field(f, msg_flexible).with_context(|| format!("field {name}.{}", f.name))?;
        if let (Some(inner), Some(sname)) = (&f.fields, struct_name(&field.ty)) {
            nested.push((sname.to_owned(), f.about.clone(), inner));
        } else if f.fields.is_some() {
            bail!(
                "field {}.{} has nested fields but type {}",
                name,
                f.name,
                f.ty
            );
        } else if let Some(sname) = struct_name(&field.ty) {
            ensure!(common.contains_key(sname), "unknown struct type {sname}");
        }
        fields.push(field);
    }
    let mut rust_names = HashMap::new();
    for f in &fields {
        ensure!(
            rust_names.insert(f.rust_name.as_str(), ()).is_none(),
            "two fields of {name} map to {}",
            f.rust_name
        );
    }
    let mut tags: Vec<u32> = fields.iter().filter_map(|f| f.tag).collect();
    tags.sort_unstable();
    ensure!(
        tags.windows(2).all(|w| w[0] != w[1]),
        "duplicate tag in {name}"
    );
    out.push(Struct {
        name: name.to_owned(),
        doc,
        versions,
        fields,
    });
    for (sname, about, inner) in nested {
        let v = reach.get(&sname).copied().unwrap_or(Versions::NONE);
        build_struct(&sname, about, inner, v, msg_flexible, common, reach, out)?;
    }
    Ok(())
}

fn build_field(f: &FieldSpec, msg_flexible: Versions) -> Result<Field> {
    let ty = Type::parse(&f.ty);
    if let Type::Array(elem) = &ty {
        ensure!(
            !matches!(**elem, Type::Array(_)),
            "nested arrays are not supported by Kafka's format"
        );
    }
    let versions = Versions::parse(&f.versions)?;
    let nullable = match &f.nullable_versions {
        Some(v) => Versions::parse(v)?,
        None => Versions::NONE,
    };
    ensure!(
        nullable.is_empty() || ty.can_be_null(),
        "type {} cannot be nullable",
        f.ty
    );
    let tag = match &f.tag {
        None => None,
        Some(serde_json::Value::Number(n)) => Some(n.as_u64().context("bad tag")?),
        Some(serde_json::Value::String(s)) => Some(s.parse::<u64>().context("bad tag")?),
        Some(other) => bail!("bad tag {other}"),
    }
    .map(u32::try_from)
    .transpose()
    .context("tag out of range")?;
    let tagged = match &f.tagged_versions {
        Some(v) => Versions::parse(v)?,
        None => Versions::NONE,
    };
    ensure!(
        tag.is_some() != tagged.is_empty(),
        "tag and taggedVersions must come together"
    );
    if tag.is_some() {
        ensure!(
            tagged.is_subset_of(msg_flexible),
            "tagged versions {tagged} are not all flexible"
        );
        // Kafka allows a field to be mandatory in old versions and tagged in newer
        // ones; no schema does that, so the emitter supports only fully tagged fields.
        ensure!(
            tagged == versions,
            "tagged versions {tagged} differ from versions {versions} (unsupported)"
        );
        ensure!(ty != Type::Records, "records cannot be tagged");
    }
    let flexible = match &f.flexible_versions {
        Some(v) => Some(Versions::parse(v)?),
        None => None,
    };
    let default = parse_default(&ty, f.default.as_ref(), !nullable.is_empty())?;
    if default == DefaultValue::Null {
        ensure!(
            versions.is_subset_of(nullable) || (nullable.is_empty() && ty == Type::Records),
            "a null default requires the field to be nullable in all its versions"
        );
    }
    let optional = !nullable.is_empty() || default == DefaultValue::Null;
    Ok(Field {
        json_name: f.name.clone(),
        rust_name: names::field_name(&f.name),
        ty,
        versions,
        nullable,
        tag,
        ignorable: f.ignorable,
        about: f.about.clone(),
        flexible,
        default,
        optional,
    })
}

fn parse_default(
    ty: &Type,
    raw: Option<&serde_json::Value>,
    nullable: bool,
) -> Result<DefaultValue> {
    use serde_json::Value;
    let text = match raw {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => bail!("unsupported default {other}"),
    };
    if text.as_deref() == Some("null") {
        ensure!(ty.can_be_null(), "type cannot default to null");
        return Ok(DefaultValue::Null);
    }
    Ok(match ty {
        Type::Bool => match text.as_deref() {
            None | Some("false") => DefaultValue::Bool(false),
            Some("true") => DefaultValue::Bool(true),
            Some(t) => bail!("bad bool default {t}"),
        },
        Type::Float64 => match text {
            None => DefaultValue::Float(0.0),
            Some(t) => DefaultValue::Float(t.parse().with_context(|| format!("bad float {t}"))?),
        },
        Type::String => DefaultValue::Str(text.unwrap_or_default()),
        Type::Records if nullable => {
            ensure!(text.is_none(), "records cannot have a default");
            DefaultValue::Null
        }
        t if t.int_range().is_some() => {
            let v = match text {
                None => 0,
                Some(t) => parse_int(&t)?,
            };
            let (lo, hi) = ty.int_range().unwrap_or((i64::MIN, i64::MAX));
            ensure!(lo <= v && v <= hi, "default {v} out of range");
            DefaultValue::Int(v)
        }
        _ => {
            ensure!(
                text.as_deref().is_none_or(str::is_empty),
                "only null can be the default of this type"
            );
            DefaultValue::Empty
        }
    })
}

/// Integer defaults may be decimal, `0x` hex or (per Kafka's README) `0`-prefixed octal.
fn parse_int(t: &str) -> Result<i64> {
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let magnitude =
        if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            i64::from_str_radix(hex, 16)
        } else if body.len() > 1 && body.starts_with('0') {
            i64::from_str_radix(&body[1..], 8)
        } else {
            body.parse::<i64>()
        }
        .with_context(|| format!("bad integer default {t}"))?;
    Ok(if neg { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_defaults() {
        assert_eq!(parse_int("-1").unwrap(), -1);
        assert_eq!(parse_int("0x7fffffff").unwrap(), 0x7fff_ffff);
        assert_eq!(parse_int("-2147483648").unwrap(), -2_147_483_648);
        assert_eq!(parse_int("010").unwrap(), 8);
        assert!(parse_int("x").is_err());
    }
}
