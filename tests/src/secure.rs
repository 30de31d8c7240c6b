//! A node locked down as a Kafka user would: a SASL_PLAINTEXT listener with SCRAM and
//! PLAIN, the ACL authorizer, `User:admin` as the super user (its SCRAM credential
//! bootstrapped with `--add-scram`), and PLAIN users `alice`, `bob` and `carol` for
//! ACL tests. Plus helpers to log in and to create ACLs as the admin.

use std::path::PathBuf;

use sluice_protocol::api::ApiKey;
use sluice_protocol::messages::create_acls_request::AclCreation;
use sluice_protocol::messages::{CreateAclsRequest, CreateAclsResponse};

use crate::raw::RawClient;
use crate::Sluice;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-secret";
/// PLAIN users (name, password) in the users file of [`SecuredNode`].
pub const USERS: &[(&str, &str)] = &[
    ("alice", "alice-secret"),
    ("bob", "bob-secret"),
    ("carol", "carol-secret"),
];

/// A secured node and the temp dir holding its users file.
pub struct SecuredNode {
    pub node: Sluice,
    _files: tempfile::TempDir,
}

impl SecuredNode {
    /// Starts a node with the settings above plus `extra` flags.
    pub fn start(extra: &[&str]) -> SecuredNode {
        let files = tempfile::tempdir().expect("tempdir");
        let users: PathBuf = files.path().join("plain-users");
        let text: String = USERS.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
        std::fs::write(&users, text).expect("users file");
        let scram = format!("SCRAM-SHA-256=[name={ADMIN},password={ADMIN_PASSWORD}]");
        let users = users.display().to_string();
        let mut args = vec![
            "--listeners",
            "SASL_PLAINTEXT://127.0.0.1:0",
            "--sasl-enabled-mechanisms",
            "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
            "--sasl-plain-users-file",
            &users,
            "--add-scram",
            &scram,
            "--authorizer",
            "standard",
            "--super-users",
            "User:admin",
        ];
        args.extend_from_slice(extra);
        let node = Sluice::start(&args);
        SecuredNode {
            node,
            _files: files,
        }
    }

    pub fn addr(&self) -> &str {
        &self.node.addr
    }

    /// A connection authenticated as the super user (SCRAM-SHA-256).
    pub fn admin(&self) -> RawClient {
        let mut c = RawClient::connect(self.addr());
        assert_eq!(
            c.sasl_scram("SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD),
            0,
            "admin login"
        );
        c
    }

    /// A connection authenticated as one of [`USERS`] (PLAIN).
    pub fn login(&self, user: &str) -> RawClient {
        let password = USERS
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, p)| *p)
            .expect("a known user");
        let mut c = RawClient::connect(self.addr());
        assert_eq!(c.sasl_plain(user, password), 0, "{user} login");
        c
    }
}

/// One ACL to create: Kafka's codes (resource type, pattern type, operation and
/// permission as in `sluice_auth::acl`).
pub fn acl(
    resource_type: i8,
    name: &str,
    pattern_type: i8,
    principal: &str,
    operation: i8,
    permission: i8,
) -> AclCreation {
    AclCreation {
        resource_type,
        resource_name: name.to_string(),
        resource_pattern_type: pattern_type,
        principal: principal.to_string(),
        host: "*".to_string(),
        operation,
        permission_type: permission,
    }
}

/// Creates `acls` with CreateAcls v3, asserting each succeeded.
pub fn create_acls(admin: &mut RawClient, acls: Vec<AclCreation>) {
    let resp: CreateAclsResponse = admin.call(
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest { creations: acls },
    );
    for r in &resp.results {
        assert_eq!(r.error_code, 0, "CreateAcls: {:?}", r.error_message);
    }
}
