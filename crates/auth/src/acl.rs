//! Kafka's ACL model (resource patterns, operations, permissions, bindings and filters)
//! and its authorizer's decision, sans-io: the broker hands [`Authorizer`] the ACLs of
//! its metadata image, the connection's principal and host, and what the request wants
//! to do; the semantics are those of Kafka's `StandardAuthorizer` (KRaft).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::principal::Principal;

/// A literal resource name matching every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// An ACL host matching every client address.
pub const WILDCARD_HOST: &str = "*";
/// An ACL principal matching every principal. Kafka hard-codes the `User` type here
/// (`KafkaPrincipal.USER_TYPE` with name `*`), whatever the type of the principal
/// being authorized.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The only name a CLUSTER resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// Declares one of Kafka's byte-coded ACL enums. Variants are declared in code order,
/// so the derived `Ord` is the order of the codes.
macro_rules! kafka_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Kafka's wire code.
            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code,)+
                }
            }

            /// The value Kafka sends as `code`; codes unknown to this version are
            /// `Unknown`, as in Kafka, so a newer client's request is refused, not misread.
            pub fn from_code(code: i8) -> Self {
                match code {
                    $($code => $name::$variant,)+
                    _ => $name::Unknown,
                }
            }
        }
    };
}

kafka_enum! {
    /// The kind of resource an ACL protects (Kafka's `ResourceType`).
    ResourceType {
        Unknown = 0,
        /// Only in filters: any resource type.
        Any = 1,
        Topic = 2,
        Group = 3,
        Cluster = 4,
        TransactionalId = 5,
        DelegationToken = 6,
        User = 7,
    }
}

kafka_enum! {
    /// How an ACL's resource name is matched (Kafka's `PatternType`).
    PatternType {
        Unknown = 0,
        /// Only in filters: any pattern type, the name compared literally.
        Any = 1,
        /// Only in filters: every pattern that matches the named resource.
        Match = 2,
        /// The resource with exactly this name, or every resource for `*`.
        Literal = 3,
        /// Every resource whose name starts with this one.
        Prefixed = 4,
    }
}

kafka_enum! {
    /// What an ACL allows or denies (Kafka's `AclOperation`).
    Operation {
        Unknown = 0,
        /// Only in filters: any operation.
        Any = 1,
        /// Every operation.
        All = 2,
        Read = 3,
        Write = 4,
        Create = 5,
        Delete = 6,
        Alter = 7,
        Describe = 8,
        ClusterAction = 9,
        DescribeConfigs = 10,
        AlterConfigs = 11,
        IdempotentWrite = 12,
        CreateTokens = 13,
        DescribeTokens = 14,
    }
}

kafka_enum! {
    /// Whether an ACL allows or denies (Kafka's `AclPermissionType`).
    Permission {
        Unknown = 0,
        /// Only in filters: allow or deny.
        Any = 1,
        Deny = 2,
        Allow = 3,
    }
}

impl ResourceType {
    /// Whether this names an actual kind of resource (not `Unknown` nor the filter-only
    /// `Any`).
    pub fn is_concrete(self) -> bool {
        !matches!(self, ResourceType::Unknown | ResourceType::Any)
    }

    /// The operations that apply to resources of this type (Kafka's
    /// `AclEntry.supportedOperations`), which DescribeTopics, DescribeGroups and
    /// Metadata report as authorized operations.
    pub fn supported_operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
            ResourceType::Unknown | ResourceType::Any => &[],
        }
    }
}

impl Operation {
    /// Whether this names an actual operation (`All` included, but not `Unknown` nor
    /// the filter-only `Any`).
    pub fn is_concrete(self) -> bool {
        !matches!(self, Operation::Unknown | Operation::Any)
    }

    /// Whether an ALLOW ACL for `self` grants `requested`. Kafka lets the right to read,
    /// write, delete or alter a resource imply the right to describe it, and the right
    /// to alter configs imply the right to describe them.
    fn implies(self, requested: Operation) -> bool {
        use Operation::*;
        if self == All || self == requested {
            return true;
        }
        match requested {
            Describe => matches!(self, Read | Write | Delete | Alter),
            DescribeConfigs => self == AlterConfigs,
            _ => false,
        }
    }
}

/// Why an ACL binding or filter is refused (Kafka answers INVALID_REQUEST).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("invalid resource type {0:?}")]
    InvalidResourceType(ResourceType),
    #[error("invalid pattern type {0:?}: an ACL's pattern is LITERAL or PREFIXED")]
    InvalidPatternType(PatternType),
    #[error("invalid operation {0:?}")]
    InvalidOperation(Operation),
    #[error("invalid permission type {0:?}: an ACL is ALLOW or DENY")]
    InvalidPermission(Permission),
    #[error("could not parse principal {0:?}: expected Type:name")]
    InvalidPrincipal(String),
    #[error("the resource name must not be empty")]
    EmptyResourceName,
    #[error("the only valid name for the CLUSTER resource is kafka-cluster, not {0:?}")]
    InvalidClusterName(String),
    #[error("the host must not be empty (`*` is any host)")]
    EmptyHost,
    #[error("the filter's {0} is UNKNOWN")]
    UnknownFilterField(&'static str),
}

/// One ACL: `principal` from `host` is allowed or denied `operation` on the resources
/// the pattern matches (Kafka's `AclBinding`). The derived order sorts by resource type,
/// then name, then pattern type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `Type:name`, e.g. `User:alice`, or [`WILDCARD_PRINCIPAL`].
    pub principal: String,
    /// A client IP address as the broker prints it, or [`WILDCARD_HOST`].
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// The checks CreateAcls makes before storing a binding: every field concrete, the
    /// pattern LITERAL or PREFIXED, the principal `Type:name`, and the cluster named
    /// `kafka-cluster`.
    pub fn validate(&self) -> Result<(), AclError> {
        if !self.resource_type.is_concrete() {
            return Err(AclError::InvalidResourceType(self.resource_type));
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return Err(AclError::InvalidPatternType(self.pattern_type));
        }
        if !self.operation.is_concrete() {
            return Err(AclError::InvalidOperation(self.operation));
        }
        if !matches!(self.permission, Permission::Allow | Permission::Deny) {
            return Err(AclError::InvalidPermission(self.permission));
        }
        if Principal::parse(&self.principal).is_none() {
            return Err(AclError::InvalidPrincipal(self.principal.clone()));
        }
        if self.resource_name.is_empty() {
            return Err(AclError::EmptyResourceName);
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(AclError::InvalidClusterName(self.resource_name.clone()));
        }
        if self.host.is_empty() {
            return Err(AclError::EmptyHost);
        }
        Ok(())
    }

    /// Whether this ACL speaks for `principal` connecting from `host`.
    fn applies_to(&self, principal: &Principal, host: &str) -> bool {
        principal_matches(&self.principal, principal) && host_matches(&self.host, host)
    }
}

/// Whether the ACL principal `acl` names `principal`: the same type and name, or the
/// wildcard. Compared field by field so that no string is built per ACL.
fn principal_matches(acl: &str, principal: &Principal) -> bool {
    acl == WILDCARD_PRINCIPAL
        || acl
            .split_once(':')
            .is_some_and(|(kind, name)| kind == principal.kind && name == principal.name)
}

fn host_matches(acl: &str, host: &str) -> bool {
    acl == WILDCARD_HOST || acl == host
}

/// Which ACLs a DescribeAcls or DeleteAcls request means (Kafka's `AclBindingFilter`):
/// `None` fields and `Any` values match everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBindingFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBindingFilter {
    /// The filter matching every ACL.
    pub fn any() -> Self {
        Self {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        }
    }

    /// Whether any field is `Unknown` (a code this version does not know). Kafka refuses
    /// such a filter in DescribeAcls and DeleteAcls rather than guess what it meant.
    pub fn is_unknown(&self) -> bool {
        self.resource_type == ResourceType::Unknown
            || self.pattern_type == PatternType::Unknown
            || self.operation == Operation::Unknown
            || self.permission == Permission::Unknown
    }

    /// The check DescribeAcls and DeleteAcls make: no field is `Unknown`.
    pub fn validate(&self) -> Result<(), AclError> {
        let unknown = if self.resource_type == ResourceType::Unknown {
            "resource type"
        } else if self.pattern_type == PatternType::Unknown {
            "pattern type"
        } else if self.operation == Operation::Unknown {
            "operation"
        } else if self.permission == Permission::Unknown {
            "permission type"
        } else {
            return Ok(());
        };
        Err(AclError::UnknownFilterField(unknown))
    }

    /// Whether `binding` is one this filter means.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_resource(binding)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| *p == binding.principal)
            && self.host.as_ref().is_none_or(|h| *h == binding.host)
            && (self.operation == Operation::Any || self.operation == binding.operation)
            && (self.permission == Permission::Any || self.permission == binding.permission)
    }

    /// Kafka's `ResourcePatternFilter.matches`.
    fn matches_resource(&self, binding: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != binding.resource_type {
            return false;
        }
        let any_pattern = matches!(self.pattern_type, PatternType::Any | PatternType::Match);
        if !any_pattern && self.pattern_type != binding.pattern_type {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern_type != PatternType::Match {
            return *name == binding.resource_name;
        }
        // MATCH names a resource: every pattern that would apply to it.
        match binding.pattern_type {
            PatternType::Literal => {
                *name == binding.resource_name || binding.resource_name == WILDCARD_RESOURCE
            }
            PatternType::Prefixed => name.starts_with(&binding.resource_name),
            _ => false,
        }
    }
}

/// The ACLs of one resource type, by pattern type and resource name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TypeIndex {
    literal: BTreeMap<String, BTreeSet<AclBinding>>,
    prefixed: BTreeMap<String, BTreeSet<AclBinding>>,
}

impl TypeIndex {
    fn patterns(
        &self,
        pattern_type: PatternType,
    ) -> Option<&BTreeMap<String, BTreeSet<AclBinding>>> {
        match pattern_type {
            PatternType::Literal => Some(&self.literal),
            PatternType::Prefixed => Some(&self.prefixed),
            _ => None,
        }
    }

    fn patterns_mut(
        &mut self,
        pattern_type: PatternType,
    ) -> Option<&mut BTreeMap<String, BTreeSet<AclBinding>>> {
        match pattern_type {
            PatternType::Literal => Some(&mut self.literal),
            PatternType::Prefixed => Some(&mut self.prefixed),
            _ => None,
        }
    }

    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.prefixed.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &AclBinding> {
        self.literal
            .values()
            .chain(self.prefixed.values())
            .flatten()
    }

    /// The sets of ACLs whose pattern matches the resource `name`: the literal name, the
    /// literal wildcard, and every prefix of the name. Prefixed patterns are found by
    /// looking each prefix of the name up, so the cost grows with the name's length,
    /// not with the number of ACLs.
    fn matching_sets<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a BTreeSet<AclBinding>> {
        let exact = self.literal.get(name);
        let wildcard = if name == WILDCARD_RESOURCE {
            None
        } else {
            self.literal.get(WILDCARD_RESOURCE)
        };
        let prefixes = (!self.prefixed.is_empty())
            .then(|| {
                name.char_indices()
                    .filter_map(move |(i, c)| name.get(..i + c.len_utf8()))
                    .filter_map(|prefix| self.prefixed.get(prefix))
            })
            .into_iter()
            .flatten();
        exact.into_iter().chain(wildcard).chain(prefixes)
    }
}

/// A set of ACL bindings, indexed for the authorizer: by resource type, then literal
/// names in one map and prefixes in another, so that finding the ACLs of one resource
/// costs a few map lookups however many ACLs the cluster has. Serialized as the plain
/// list of its bindings, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclSet {
    by_type: BTreeMap<ResourceType, TypeIndex>,
    len: usize,
}

impl AclSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `binding`; false if it was already there. A binding whose pattern type is
    /// not LITERAL or PREFIXED can match no resource and is not stored (false): callers
    /// [`AclBinding::validate`] first.
    pub fn add(&mut self, binding: AclBinding) -> bool {
        // Checked before touching the index, which must hold no empty entries (equal
        // sets compare equal).
        if !matches!(
            binding.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return false;
        }
        let index = self.by_type.entry(binding.resource_type).or_default();
        let added = index
            .patterns_mut(binding.pattern_type)
            .map(|patterns| {
                patterns
                    .entry(binding.resource_name.clone())
                    .or_default()
                    .insert(binding)
            })
            .unwrap_or(false);
        if added {
            self.len += 1;
        }
        added
    }

    /// Removes `binding`; false if it was not there.
    pub fn remove(&mut self, binding: &AclBinding) -> bool {
        let Some(index) = self.by_type.get_mut(&binding.resource_type) else {
            return false;
        };
        let Some(patterns) = index.patterns_mut(binding.pattern_type) else {
            return false;
        };
        let Some(set) = patterns.get_mut(&binding.resource_name) else {
            return false;
        };
        if !set.remove(binding) {
            return false;
        }
        // Empty entries are dropped, so that equal sets compare (and serialize) equal.
        if set.is_empty() {
            patterns.remove(&binding.resource_name);
        }
        if index.is_empty() {
            self.by_type.remove(&binding.resource_type);
        }
        self.len -= 1;
        true
    }

    pub fn contains(&self, binding: &AclBinding) -> bool {
        self.by_type
            .get(&binding.resource_type)
            .and_then(|index| index.patterns(binding.pattern_type))
            .and_then(|patterns| patterns.get(&binding.resource_name))
            .is_some_and(|set| set.contains(binding))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every binding, by resource type, then literal before prefixed, then name.
    pub fn iter(&self) -> impl Iterator<Item = &AclBinding> {
        self.by_type.values().flat_map(TypeIndex::iter)
    }

    /// The bindings of one resource type.
    pub fn of_type(&self, resource_type: ResourceType) -> impl Iterator<Item = &AclBinding> {
        self.by_type
            .get(&resource_type)
            .into_iter()
            .flat_map(TypeIndex::iter)
    }

    /// The bindings whose pattern matches the resource `name` of `resource_type`,
    /// whatever their principal, host, operation or permission.
    pub fn for_resource<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclBinding> {
        self.by_type
            .get(&resource_type)
            .into_iter()
            .flat_map(move |index| index.matching_sets(name))
            .flatten()
    }

    /// The bindings `filter` matches, sorted. Uses the index when the filter names a
    /// resource type and name; otherwise scans.
    pub fn matching(&self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        let candidates: Vec<&AclBinding> = match (&filter.resource_name, filter.resource_type) {
            (Some(name), rt) if rt.is_concrete() => match filter.pattern_type {
                PatternType::Match => self.for_resource(rt, name).collect(),
                PatternType::Literal | PatternType::Prefixed | PatternType::Any => {
                    let Some(index) = self.by_type.get(&rt) else {
                        return Vec::new();
                    };
                    let sets = [PatternType::Literal, PatternType::Prefixed]
                        .into_iter()
                        .filter(|p| {
                            filter.pattern_type == PatternType::Any || *p == filter.pattern_type
                        })
                        .filter_map(|p| index.patterns(p).and_then(|m| m.get(name.as_str())));
                    sets.flatten().collect()
                }
                PatternType::Unknown => Vec::new(),
            },
            (_, rt) if rt.is_concrete() => self.of_type(rt).collect(),
            _ => self.iter().collect(),
        };
        let mut out: Vec<AclBinding> = candidates
            .into_iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect();
        out.sort();
        out
    }
}

impl FromIterator<AclBinding> for AclSet {
    fn from_iter<I: IntoIterator<Item = AclBinding>>(iter: I) -> Self {
        let mut set = AclSet::new();
        for binding in iter {
            set.add(binding);
        }
        set
    }
}

impl Serialize for AclSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for AclSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<AclBinding>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// Kafka's authorizer decision (`StandardAuthorizer`), given the cluster's ACLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorizer {
    /// `super.users`: principals (`User:admin`) allowed everything, whatever the ACLs.
    pub super_users: BTreeSet<String>,
    /// `allow.everyone.if.no.acl.found`: whether a resource no ACL matches is open to
    /// everyone (true) or to super users only (false, Kafka's default).
    pub allow_everyone_if_no_acl_found: bool,
}

impl Authorizer {
    pub fn new<S: Into<String>>(
        super_users: impl IntoIterator<Item = S>,
        allow_everyone_if_no_acl_found: bool,
    ) -> Self {
        Self {
            super_users: super_users.into_iter().map(Into::into).collect(),
            allow_everyone_if_no_acl_found,
        }
    }

    /// Parses `super.users`: principals separated by `;` (not `,`, which certificate
    /// DNs contain); blanks around them are ignored.
    pub fn parse_super_users(value: &str) -> BTreeSet<String> {
        value
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn is_super_user(&self, principal: &Principal) -> bool {
        self.super_users.contains(&principal.to_string())
    }

    /// Whether `principal`, connected from `host`, may perform `op` on the resource
    /// `name` of `resource_type`. A super user may do anything. Otherwise the ACLs that
    /// apply are those on the literal name, the literal wildcard and every prefix of the
    /// name: a DENY for this principal (or `User:*`), host (or `*`) and operation (or
    /// ALL) refuses, whatever else allows; else an ALLOW whose operation implies `op`
    /// grants. If no ACL at all matches the resource, for anyone, the answer is
    /// `allow.everyone.if.no.acl.found`; if some do but none grants, it is no (KAFKA-14435).
    pub fn authorize(
        &self,
        acls: &AclSet,
        principal: &Principal,
        host: &str,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.is_super_user(principal) || self.decide(acls, principal, host, op, resource_type, name)
    }

    /// [`Authorizer::authorize`] without the super-user check.
    fn decide(
        &self,
        acls: &AclSet,
        principal: &Principal,
        host: &str,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let mut resource_has_acls = false;
        let mut allowed = false;
        for acl in acls.for_resource(resource_type, name) {
            resource_has_acls = true;
            if !acl.applies_to(principal, host) {
                continue;
            }
            match acl.permission {
                Permission::Deny if acl.operation == op || acl.operation == Operation::All => {
                    return false;
                }
                Permission::Allow if acl.operation.implies(op) => allowed = true,
                _ => {}
            }
        }
        allowed || (!resource_has_acls && self.allow_everyone_if_no_acl_found)
    }

    /// Kafka's authorized-operations bitfield for one resource (bit `1 << code` per
    /// operation): the operations resources of this type support that
    /// [`Authorizer::authorize`] allows.
    pub fn authorized_operations(
        &self,
        acls: &AclSet,
        principal: &Principal,
        host: &str,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        let supported = resource_type.supported_operations();
        let is_super = self.is_super_user(principal);
        supported
            .iter()
            .filter(|op| is_super || self.decide(acls, principal, host, **op, resource_type, name))
            .fold(0, |bits, op| bits | 1 << op.code())
    }

    /// Whether `principal` from `host` may perform `op` on at least some resource of
    /// `resource_type` (Kafka's `authorizeByResourceType`; e.g. an idempotent producer
    /// needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic). Super users may.
    /// Only ACLs for this principal (or `User:*`), host (or `*`) and exactly `op` or ALL
    /// count: a DENY on the literal wildcard refuses; an ALLOW on the literal wildcard
    /// grants; otherwise some other ALLOW must not be covered by a DENY, where a literal
    /// DENY covers the same literal name and a prefixed DENY covers every literal or
    /// prefix starting with it.
    ///
    /// Approximation: `allow.everyone.if.no.acl.found` grants only when there is no ACL
    /// of this resource type at all. Kafka instead authorizes a made-up resource name,
    /// which that setting also grants whenever no ACL matches that name; this never
    /// allows more than Kafka does.
    pub fn authorize_any(
        &self,
        acls: &AclSet,
        principal: &Principal,
        host: &str,
        op: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if self.is_super_user(principal) {
            return true;
        }
        let mut any_of_type = false;
        let mut deny_literal: BTreeSet<&str> = BTreeSet::new();
        let mut deny_prefixed: BTreeSet<&str> = BTreeSet::new();
        let mut allows: Vec<&AclBinding> = Vec::new();
        let mut wildcard_allow = false;
        for acl in acls.of_type(resource_type) {
            any_of_type = true;
            if !acl.applies_to(principal, host)
                || !(acl.operation == op || acl.operation == Operation::All)
            {
                continue;
            }
            let wildcard =
                acl.pattern_type == PatternType::Literal && acl.resource_name == WILDCARD_RESOURCE;
            match (acl.permission, acl.pattern_type) {
                (Permission::Deny, _) if wildcard => return false,
                (Permission::Deny, PatternType::Literal) => {
                    deny_literal.insert(&acl.resource_name);
                }
                (Permission::Deny, PatternType::Prefixed) => {
                    deny_prefixed.insert(&acl.resource_name);
                }
                (Permission::Allow, _) if wildcard => wildcard_allow = true,
                (Permission::Allow, _) => allows.push(acl),
                _ => {}
            }
        }
        if !any_of_type {
            return self.allow_everyone_if_no_acl_found;
        }
        if wildcard_allow {
            return true;
        }
        allows.into_iter().any(|allow| {
            let name = allow.resource_name.as_str();
            let denied_literally =
                allow.pattern_type == PatternType::Literal && deny_literal.contains(name);
            let denied_by_prefix = name
                .char_indices()
                .filter_map(|(i, c)| name.get(..i + c.len_utf8()))
                .any(|prefix| deny_prefixed.contains(prefix));
            !denied_literally && !denied_by_prefix
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        resource_type: ResourceType,
        name: &str,
        pattern_type: PatternType,
        principal: &str,
        host: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.into(),
            pattern_type,
            principal: principal.into(),
            host: host.into(),
            operation,
            permission,
        }
    }

    fn topic(
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        acl(ResourceType::Topic, name, pattern, principal, "*", op, perm)
    }

    fn allow(name: &str, pattern: PatternType, principal: &str, op: Operation) -> AclBinding {
        topic(name, pattern, principal, op, Permission::Allow)
    }

    fn deny(name: &str, pattern: PatternType, principal: &str, op: Operation) -> AclBinding {
        topic(name, pattern, principal, op, Permission::Deny)
    }

    use Operation::*;
    use PatternType::{Literal, Prefixed};

    fn alice() -> Principal {
        Principal::user("alice")
    }

    /// Whether alice, from 10.0.0.1, may `op` topic `name`.
    fn can(auth: &Authorizer, acls: &AclSet, op: Operation, name: &str) -> bool {
        auth.authorize(acls, &alice(), "10.0.0.1", op, ResourceType::Topic, name)
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_are_unknown() {
        for code in 0..=7 {
            assert_eq!(ResourceType::from_code(code).code(), code);
        }
        for code in 0..=4 {
            assert_eq!(PatternType::from_code(code).code(), code);
        }
        for code in 0..=14 {
            assert_eq!(Operation::from_code(code).code(), code);
        }
        for code in 0..=3 {
            assert_eq!(Permission::from_code(code).code(), code);
        }
        assert_eq!(ResourceType::from_code(2), ResourceType::Topic);
        assert_eq!(ResourceType::from_code(8), ResourceType::Unknown);
        assert_eq!(PatternType::from_code(-1), PatternType::Unknown);
        assert_eq!(Operation::from_code(12), IdempotentWrite);
        assert_eq!(Operation::from_code(15), Operation::Unknown);
        assert_eq!(Permission::from_code(3), Permission::Allow);
        assert_eq!(Permission::from_code(4), Permission::Unknown);
        assert!(Read < Write && ResourceType::Topic < ResourceType::Group);
    }

    #[test]
    fn create_validation_refuses_what_kafka_refuses() {
        let good = allow("t", Literal, "User:alice", Read);
        assert_eq!(good.validate(), Ok(()));
        let cluster = acl(
            ResourceType::Cluster,
            CLUSTER_NAME,
            Literal,
            "User:*",
            "*",
            All,
            Permission::Deny,
        );
        assert_eq!(cluster.validate(), Ok(()));
        let with = |f: &dyn Fn(&mut AclBinding)| {
            let mut b = good.clone();
            f(&mut b);
            b.validate()
        };
        assert_eq!(
            with(&|b| b.resource_type = ResourceType::Any),
            Err(AclError::InvalidResourceType(ResourceType::Any))
        );
        assert_eq!(
            with(&|b| b.resource_type = ResourceType::Unknown),
            Err(AclError::InvalidResourceType(ResourceType::Unknown))
        );
        for p in [PatternType::Match, PatternType::Any, PatternType::Unknown] {
            assert_eq!(
                with(&|b| b.pattern_type = p),
                Err(AclError::InvalidPatternType(p))
            );
        }
        for op in [Operation::Any, Operation::Unknown] {
            assert_eq!(
                with(&|b| b.operation = op),
                Err(AclError::InvalidOperation(op))
            );
        }
        for perm in [Permission::Any, Permission::Unknown] {
            assert_eq!(
                with(&|b| b.permission = perm),
                Err(AclError::InvalidPermission(perm))
            );
        }
        for bad in ["alice", "", ":alice", "User:"] {
            assert_eq!(
                with(&|b| b.principal = bad.into()),
                Err(AclError::InvalidPrincipal(bad.into()))
            );
        }
        assert_eq!(
            with(&|b| b.resource_name.clear()),
            Err(AclError::EmptyResourceName)
        );
        assert_eq!(with(&|b| b.host.clear()), Err(AclError::EmptyHost));
        let mut other_cluster = cluster.clone();
        other_cluster.resource_name = "prod".into();
        assert_eq!(
            other_cluster.validate(),
            Err(AclError::InvalidClusterName("prod".into()))
        );
        // Every refusal has a message for the response's error_message.
        assert!(other_cluster
            .validate()
            .unwrap_err()
            .to_string()
            .contains("kafka-cluster"));
    }

    #[test]
    fn literal_prefixed_and_wildcard_acls_match_their_resources() {
        let auth = Authorizer::default();
        let acls: AclSet = [
            allow("orders", Literal, "User:alice", Read),
            allow("logs-", Prefixed, "User:alice", Write),
            allow("*", Literal, "User:alice", Create),
        ]
        .into_iter()
        .collect();
        assert!(can(&auth, &acls, Read, "orders"));
        assert!(
            !can(&auth, &acls, Read, "orders2"),
            "literal is not a prefix"
        );
        assert!(!can(&auth, &acls, Read, "order"));
        assert!(can(&auth, &acls, Write, "logs-app"));
        assert!(can(&auth, &acls, Write, "logs-"));
        assert!(!can(&auth, &acls, Write, "logs"), "shorter than the prefix");
        assert!(!can(&auth, &acls, Write, "orders"));
        // The literal wildcard covers every topic, with or without other ACLs on it.
        assert!(can(&auth, &acls, Create, "orders"));
        assert!(can(&auth, &acls, Create, "anything"));
        // A multi-byte name is cut only at character boundaries.
        let acls: AclSet = [allow("日本", Prefixed, "User:alice", Read)]
            .into_iter()
            .collect();
        assert!(can(&auth, &acls, Read, "日本語"));
        assert!(!can(&auth, &acls, Read, "日"));
    }

    #[test]
    fn deny_beats_allow_from_any_pattern() {
        let auth = Authorizer::new(["User:admin"], true);
        let mut acls: AclSet = [
            allow("*", Literal, "User:alice", All),
            deny("secret-", Prefixed, "User:alice", Read),
            deny("payroll", Literal, "User:*", All),
        ]
        .into_iter()
        .collect();
        assert!(can(&auth, &acls, Read, "public"));
        assert!(!can(&auth, &acls, Read, "secret-keys"));
        // The deny is for READ only.
        assert!(can(&auth, &acls, Write, "secret-keys"));
        // A DENY ALL, for every user, refuses every operation.
        assert!(!can(&auth, &acls, Write, "payroll"));
        assert!(!can(&auth, &acls, Describe, "payroll"));
        // Super users bypass even a deny.
        let admin = Principal::user("admin");
        assert!(auth.authorize(
            &acls,
            &admin,
            "1.2.3.4",
            Read,
            ResourceType::Topic,
            "payroll"
        ));
        // Removing the deny restores access.
        assert!(acls.remove(&deny("payroll", Literal, "User:*", All)));
        assert!(can(&auth, &acls, Write, "payroll"));
    }

    #[test]
    fn read_write_delete_alter_imply_describe_and_alter_configs_implies_describe_configs() {
        let auth = Authorizer::default();
        for op in [Read, Write, Delete, Alter, All] {
            let acls: AclSet = [allow("t", Literal, "User:alice", op)]
                .into_iter()
                .collect();
            assert!(can(&auth, &acls, Describe, "t"), "{op:?}");
        }
        for op in [Create, DescribeConfigs, AlterConfigs] {
            let acls: AclSet = [allow("t", Literal, "User:alice", op)]
                .into_iter()
                .collect();
            assert!(!can(&auth, &acls, Describe, "t"), "{op:?}");
        }
        let acls: AclSet = [allow("t", Literal, "User:alice", AlterConfigs)]
            .into_iter()
            .collect();
        assert!(can(&auth, &acls, DescribeConfigs, "t"));
        // The implication goes one way only.
        let acls: AclSet = [allow("t", Literal, "User:alice", Describe)]
            .into_iter()
            .collect();
        assert!(!can(&auth, &acls, Read, "t"));
        // A DENY implies nothing: denying READ does not deny DESCRIBE.
        let acls: AclSet = [
            allow("t", Literal, "User:alice", All),
            deny("t", Literal, "User:alice", Read),
        ]
        .into_iter()
        .collect();
        assert!(can(&auth, &acls, Describe, "t"));
        assert!(!can(&auth, &acls, Read, "t"));
    }

    #[test]
    fn a_resource_without_acls_follows_allow_everyone_if_no_acl_found() {
        let acls: AclSet = [allow("mine", Literal, "User:bob", Read)]
            .into_iter()
            .collect();
        let closed = Authorizer::default();
        let open = Authorizer::new(Vec::<String>::new(), true);
        assert!(!can(&closed, &AclSet::new(), Read, "t"));
        assert!(can(&open, &AclSet::new(), Read, "t"));
        assert!(!can(&closed, &acls, Read, "other"));
        assert!(can(&open, &acls, Read, "other"));
        // An ACL on the resource for someone else closes it, even with the open setting.
        assert!(!can(&open, &acls, Read, "mine"));
        // ACLs on another resource type change nothing for topics.
        let group_acl = acl(
            ResourceType::Group,
            "mine",
            Literal,
            "User:bob",
            "*",
            Read,
            Permission::Allow,
        );
        let groups: AclSet = [group_acl].into_iter().collect();
        assert!(can(&open, &groups, Read, "mine"));
        // A super user needs no ACL even when closed.
        let closed_admin = Authorizer::new(
            Authorizer::parse_super_users(" User:admin ; User:ops;"),
            false,
        );
        assert_eq!(closed_admin.super_users.len(), 2);
        assert!(closed_admin.authorize(
            &AclSet::new(),
            &Principal::user("ops"),
            "h",
            Alter,
            ResourceType::Cluster,
            CLUSTER_NAME
        ));
    }

    #[test]
    fn wildcard_principal_and_host_and_exact_hosts() {
        let auth = Authorizer::default();
        let acls: AclSet = [
            acl(
                ResourceType::Topic,
                "t",
                Literal,
                "User:*",
                "10.0.0.1",
                Read,
                Permission::Allow,
            ),
            acl(
                ResourceType::Topic,
                "u",
                Literal,
                "User:alice",
                "*",
                Read,
                Permission::Allow,
            ),
            acl(
                ResourceType::Topic,
                "u",
                Literal,
                "User:*",
                "10.9.9.9",
                Read,
                Permission::Deny,
            ),
        ]
        .into_iter()
        .collect();
        let bob = Principal::user("bob");
        let a = |p: &Principal, host: &str, name: &str| {
            auth.authorize(&acls, p, host, Read, ResourceType::Topic, name)
        };
        assert!(a(&alice(), "10.0.0.1", "t"));
        assert!(a(&bob, "10.0.0.1", "t"));
        assert!(!a(&bob, "10.0.0.2", "t"), "host does not match");
        assert!(a(&alice(), "10.0.0.2", "u"));
        assert!(!a(&bob, "10.0.0.2", "u"), "the allow is for alice only");
        assert!(
            !a(&alice(), "10.9.9.9", "u"),
            "everyone is denied from that host"
        );
        // The principal type is part of the match.
        let group_alice = Principal {
            kind: "Group".into(),
            name: "alice".into(),
        };
        assert!(!a(&group_alice, "10.0.0.2", "u"));
    }

    #[test]
    fn authorized_operations_sets_one_bit_per_allowed_operation() {
        let auth = Authorizer::new(["User:admin"], false);
        let acls: AclSet = [
            allow("t", Literal, "User:alice", Read),
            allow("t", Literal, "User:alice", AlterConfigs),
            deny("t", Literal, "User:alice", Write),
        ]
        .into_iter()
        .collect();
        let bits = auth.authorized_operations(&acls, &alice(), "h", ResourceType::Topic, "t");
        let expected = [Read, Describe, DescribeConfigs, AlterConfigs]
            .iter()
            .fold(0, |b, op| b | 1 << op.code());
        assert_eq!(bits, expected);
        assert_eq!(bits, (1 << 3) | (1 << 8) | (1 << 10) | (1 << 11));
        // A super user has every operation the resource type supports.
        let admin = Principal::user("admin");
        let group_bits = auth.authorized_operations(&acls, &admin, "h", ResourceType::Group, "g");
        assert_eq!(group_bits, (1 << 3) | (1 << 8) | (1 << 6));
        let cluster_bits =
            auth.authorized_operations(&acls, &admin, "h", ResourceType::Cluster, CLUSTER_NAME);
        assert_eq!(
            cluster_bits,
            (1 << 5) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 7) | (1 << 8)
        );
        assert_eq!(
            auth.authorized_operations(&acls, &alice(), "h", ResourceType::Topic, "x"),
            0
        );
    }

    #[test]
    fn authorize_any_finds_an_undenied_allow_of_the_type() {
        let auth = Authorizer::new(["User:admin"], false);
        let any =
            |acls: &AclSet, op| auth.authorize_any(acls, &alice(), "h", op, ResourceType::Topic);
        assert!(!any(&AclSet::new(), Write));
        assert!(Authorizer::new(Vec::<String>::new(), true).authorize_any(
            &AclSet::new(),
            &alice(),
            "h",
            Write,
            ResourceType::Topic
        ));
        assert!(auth.authorize_any(
            &AclSet::new(),
            &Principal::user("admin"),
            "h",
            Write,
            ResourceType::Topic
        ));

        let set = |bindings: Vec<AclBinding>| -> AclSet { bindings.into_iter().collect() };
        assert!(any(
            &set(vec![allow("t", Literal, "User:alice", Write)]),
            Write
        ));
        assert!(any(
            &set(vec![allow("t", Literal, "User:alice", All)]),
            Write
        ));
        // Exactly the operation (or ALL): READ does not count for WRITE.
        assert!(!any(
            &set(vec![allow("t", Literal, "User:alice", Read)]),
            Write
        ));
        // Someone else's allow does not count.
        assert!(!any(
            &set(vec![allow("t", Literal, "User:bob", Write)]),
            Write
        ));
        // A literal deny on the same name cancels a literal allow...
        assert!(!any(
            &set(vec![
                allow("t", Literal, "User:alice", Write),
                deny("t", Literal, "User:alice", Write)
            ]),
            Write
        ));
        // ...but not a prefixed allow of the same name, which covers other topics too.
        assert!(any(
            &set(vec![
                allow("t", Prefixed, "User:alice", Write),
                deny("t", Literal, "User:alice", Write)
            ]),
            Write
        ));
        // A prefixed deny covers allows that start with it.
        assert!(!any(
            &set(vec![
                allow("logs-app", Prefixed, "User:alice", Write),
                allow("logs-db", Literal, "User:alice", Write),
                deny("logs-", Prefixed, "User:*", Write)
            ]),
            Write
        ));
        assert!(any(
            &set(vec![
                allow("logs-app", Prefixed, "User:alice", Write),
                allow("metrics", Literal, "User:alice", Write),
                deny("logs-", Prefixed, "User:*", Write)
            ]),
            Write
        ));
        // A wildcard deny refuses all; a wildcard allow grants.
        assert!(!any(
            &set(vec![
                allow("*", Literal, "User:alice", Write),
                deny("*", Literal, "User:alice", All)
            ]),
            Write
        ));
        assert!(any(&set(vec![allow("*", Literal, "User:*", Write)]), Write));
        // With ACLs of the type but none for alice, the open setting does not grant.
        let open = Authorizer::new(Vec::<String>::new(), true);
        assert!(!open.authorize_any(
            &set(vec![allow("t", Literal, "User:bob", Write)]),
            &alice(),
            "h",
            Write,
            ResourceType::Topic
        ));
    }

    #[test]
    fn filters_match_as_kafka_describes() {
        let bindings = [
            allow("orders", Literal, "User:alice", Read),
            allow("*", Literal, "User:bob", Read),
            allow("ord", Prefixed, "User:alice", Write),
            deny("other", Prefixed, "User:alice", Write),
            acl(
                ResourceType::Group,
                "orders",
                Literal,
                "User:alice",
                "*",
                Read,
                Permission::Allow,
            ),
        ];
        let acls: AclSet = bindings.iter().cloned().collect();
        let names = |filter: &AclBindingFilter| -> Vec<(ResourceType, String, PatternType)> {
            let found = acls.matching(filter);
            // The index gives the same answer as checking every binding.
            let mut scanned: Vec<AclBinding> = bindings
                .iter()
                .filter(|b| filter.matches(b))
                .cloned()
                .collect();
            scanned.sort();
            assert_eq!(found, scanned, "{filter:?}");
            found
                .into_iter()
                .map(|b| (b.resource_type, b.resource_name, b.pattern_type))
                .collect()
        };
        let topic_filter = |name: Option<&str>, pattern| AclBindingFilter {
            resource_type: ResourceType::Topic,
            resource_name: name.map(Into::into),
            pattern_type: pattern,
            ..AclBindingFilter::any()
        };
        let t = |name: &str, p| (ResourceType::Topic, name.to_string(), p);

        assert_eq!(names(&AclBindingFilter::any()).len(), 5);
        // MATCH: the literal name, the literal wildcard and the prefixes of the name.
        assert_eq!(
            names(&topic_filter(Some("orders"), PatternType::Match)),
            [t("*", Literal), t("ord", Prefixed), t("orders", Literal)]
        );
        assert_eq!(
            names(&topic_filter(Some("x"), PatternType::Match)),
            [t("*", Literal)]
        );
        // ANY with a name: equal names, whatever the pattern type.
        assert_eq!(
            names(&topic_filter(Some("ord"), PatternType::Any)),
            [t("ord", Prefixed)]
        );
        assert_eq!(
            names(&topic_filter(Some("orders"), PatternType::Any)),
            [t("orders", Literal)]
        );
        // LITERAL and PREFIXED: that pattern type and the exact name.
        assert_eq!(names(&topic_filter(Some("ord"), Literal)), []);
        assert_eq!(
            names(&topic_filter(Some("ord"), Prefixed)),
            [t("ord", Prefixed)]
        );
        assert_eq!(names(&topic_filter(None, Prefixed)).len(), 2);
        // Any resource type, by name.
        let any_type = AclBindingFilter {
            resource_name: Some("orders".into()),
            ..AclBindingFilter::any()
        };
        assert_eq!(
            names(&any_type),
            [
                t("orders", Literal),
                (ResourceType::Group, "orders".into(), Literal)
            ]
        );
        let any_type_match = AclBindingFilter {
            pattern_type: PatternType::Match,
            ..any_type.clone()
        };
        assert_eq!(names(&any_type_match).len(), 4);
        // Entry fields.
        let by_entry = AclBindingFilter {
            principal: Some("User:alice".into()),
            operation: Write,
            permission: Permission::Allow,
            ..AclBindingFilter::any()
        };
        assert_eq!(names(&by_entry), [t("ord", Prefixed)]);
        let by_host = AclBindingFilter {
            host: Some("10.0.0.1".into()),
            ..AclBindingFilter::any()
        };
        assert_eq!(names(&by_host), []);
        let denies = AclBindingFilter {
            permission: Permission::Deny,
            ..AclBindingFilter::any()
        };
        assert_eq!(names(&denies), [t("other", Prefixed)]);

        // Unknown fields make a filter invalid for DescribeAcls and DeleteAcls.
        assert_eq!(AclBindingFilter::any().validate(), Ok(()));
        assert!(!AclBindingFilter::any().is_unknown());
        let unknown_op = AclBindingFilter {
            operation: Operation::Unknown,
            ..AclBindingFilter::any()
        };
        assert!(unknown_op.is_unknown());
        assert_eq!(
            unknown_op.validate(),
            Err(AclError::UnknownFilterField("operation"))
        );
        let unknown_pattern = topic_filter(None, PatternType::Unknown);
        assert_eq!(
            unknown_pattern.validate(),
            Err(AclError::UnknownFilterField("pattern type"))
        );
        assert_eq!(names(&unknown_pattern), []);
    }

    #[test]
    fn acl_sets_add_remove_and_round_trip_through_json() {
        let a = allow("t", Literal, "User:alice", Read);
        let b = allow("t-", Prefixed, "User:bob", Write);
        let c = acl(
            ResourceType::Cluster,
            CLUSTER_NAME,
            Literal,
            "User:ops",
            "*",
            Alter,
            Permission::Allow,
        );
        let mut set = AclSet::new();
        assert!(set.is_empty());
        assert!(set.add(a.clone()));
        assert!(!set.add(a.clone()), "a duplicate is a no-op");
        assert!(set.add(b.clone()));
        assert!(set.add(c.clone()));
        assert_eq!(set.len(), 3);
        assert!(set.contains(&b));
        // A binding that can match nothing is not stored.
        let mut matcher = a.clone();
        matcher.pattern_type = PatternType::Match;
        assert!(!set.add(matcher.clone()));
        assert!(!set.contains(&matcher));
        assert_eq!(set.len(), 3);

        let json = serde_json::to_string(&set).unwrap();
        let back: AclSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set);
        let list: Vec<AclBinding> = serde_json::from_str(&json).unwrap();
        assert_eq!(
            list,
            [a.clone(), b.clone(), c.clone()],
            "a plain list, in order"
        );
        assert_eq!(set.iter().cloned().collect::<Vec<_>>(), list);
        let binding_json = serde_json::to_string(&a).unwrap();
        assert_eq!(
            serde_json::from_str::<AclBinding>(&binding_json).unwrap(),
            a
        );

        assert!(set.remove(&b));
        assert!(!set.remove(&b));
        assert!(!set.remove(&matcher));
        assert_eq!(set.len(), 2);
        assert_eq!(set.of_type(ResourceType::Topic).count(), 1);
        // Removal leaves no empty index entries: the set equals one built without b.
        let rebuilt: AclSet = [a.clone(), c.clone()].into_iter().collect();
        assert_eq!(set, rebuilt);
        assert!(set.remove(&a) && set.remove(&c));
        assert_eq!(set, AclSet::new());
    }

    #[test]
    fn many_acls_are_looked_up_through_the_index() {
        let mut set = AclSet::new();
        for i in 0..5000 {
            set.add(allow(&format!("topic-{i}"), Literal, "User:alice", Read));
            set.add(allow(&format!("team-{i}-"), Prefixed, "User:bob", Write));
        }
        assert_eq!(set.len(), 10_000);
        let found: Vec<&AclBinding> = set
            .for_resource(ResourceType::Topic, "team-42-events")
            .collect();
        assert_eq!(found, [&allow("team-42-", Prefixed, "User:bob", Write)]);
        assert_eq!(
            set.for_resource(ResourceType::Topic, "topic-4999").count(),
            1
        );
        assert_eq!(
            set.for_resource(ResourceType::Group, "topic-4999").count(),
            0
        );
        let auth = Authorizer::default();
        assert!(can(&auth, &set, Read, "topic-7"));
        assert!(!can(&auth, &set, Read, "topic-70000"));
    }
}
