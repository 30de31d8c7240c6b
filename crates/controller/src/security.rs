//! The security part of the metadata image: the cluster's ACLs and its users' SCRAM
//! credentials (Kafka's AccessControlEntryRecord and UserScramCredentialRecord state),
//! and the rules the records that change them must pass. Kept apart from the rest of
//! [`crate::image`], which holds it and delegates to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_auth::acl::{AclBinding, AclSet};
use sluice_auth::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

use crate::image::RejectReason;

/// What is kept of one user's password for one mechanism: enough to check a SCRAM
/// proof, never the password nor the salted password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// ACLs and SCRAM credentials. Both fields default to empty, so that a snapshot written
/// before they existed still loads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityImage {
    #[serde(default)]
    acls: AclSet,
    /// User -> mechanism name (`SCRAM-SHA-256`) -> credential. Keyed by name rather
    /// than by [`ScramMechanism`] so the JSON keys are plain strings; only names
    /// [`ScramMechanism::from_name`] knows get in. A user without credentials has no
    /// entry.
    #[serde(default)]
    scram: BTreeMap<String, BTreeMap<String, StoredScramCredential>>,
}

impl SecurityImage {
    pub fn acls(&self) -> &AclSet {
        &self.acls
    }

    /// The credential `user` has for `mechanism`, as the SCRAM exchange needs it.
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<ScramCredential> {
        let stored = self.scram.get(user)?.get(mechanism.name())?;
        Some(ScramCredential {
            mechanism,
            salt: stored.salt.clone(),
            iterations: stored.iterations,
            stored_key: stored.stored_key.clone(),
            server_key: stored.server_key.clone(),
        })
    }

    /// Every user with a SCRAM credential, in name order, with the mechanisms and
    /// iteration counts it has (what DescribeUserScramCredentials reports).
    pub fn scram_users(&self) -> impl Iterator<Item = (&str, Vec<(ScramMechanism, u32)>)> {
        self.scram.iter().map(|(user, credentials)| {
            let mechanisms = credentials
                .iter()
                .filter_map(|(name, c)| Some((ScramMechanism::from_name(name)?, c.iterations)))
                .collect();
            (user.as_str(), mechanisms)
        })
    }

    /// Adds every binding (those already present are no-ops), or none if any fails
    /// CreateAcls' validation: a record is applied whole or not at all.
    pub(crate) fn create_acls(&mut self, bindings: &[AclBinding]) -> Result<(), RejectReason> {
        for binding in bindings {
            binding.validate().map_err(|e| {
                RejectReason::InvalidAcl(format!(
                    "{:?} {:?} {} ({:?}): {e}",
                    binding.resource_type,
                    binding.pattern_type,
                    binding.resource_name,
                    binding.principal
                ))
            })?;
        }
        for binding in bindings {
            self.acls.add(binding.clone());
        }
        Ok(())
    }

    /// Removes exactly these bindings; absent ones are ignored, since a DeleteAcls
    /// racing another may find some already gone.
    pub(crate) fn remove_acls(&mut self, bindings: &[AclBinding]) {
        for binding in bindings {
            self.acls.remove(binding);
        }
    }

    /// Sets `user`'s credential for `mechanism`, replacing any it had.
    pub(crate) fn upsert_scram(
        &mut self,
        user: &str,
        mechanism: &str,
        credential: StoredScramCredential,
    ) -> Result<(), RejectReason> {
        let m = ScramMechanism::from_name(mechanism)
            .ok_or_else(|| RejectReason::UnsupportedScramMechanism(mechanism.to_string()))?;
        let unacceptable = |why: String| RejectReason::UnacceptableScramCredential {
            user: user.to_string(),
            reason: why,
        };
        if user.is_empty() {
            return Err(unacceptable("the user name is empty".into()));
        }
        if credential.salt.is_empty() {
            return Err(unacceptable("the salt is empty".into()));
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&credential.iterations) {
            return Err(unacceptable(format!(
                "{} iterations is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}",
                credential.iterations
            )));
        }
        // Keys of the wrong length could never verify a proof: refuse them now rather
        // than let the user fail every login.
        let len = m.hash_len();
        if credential.stored_key.len() != len || credential.server_key.len() != len {
            return Err(unacceptable(format!(
                "{mechanism} keys are {len} bytes, got a {}-byte StoredKey and a {}-byte ServerKey",
                credential.stored_key.len(),
                credential.server_key.len()
            )));
        }
        self.scram
            .entry(user.to_string())
            .or_default()
            .insert(m.name().to_string(), credential);
        Ok(())
    }

    /// Removes `user`'s credential for `mechanism`, which must exist.
    pub(crate) fn delete_scram(&mut self, user: &str, mechanism: &str) -> Result<(), RejectReason> {
        let m = ScramMechanism::from_name(mechanism)
            .ok_or_else(|| RejectReason::UnsupportedScramMechanism(mechanism.to_string()))?;
        let unknown = || RejectReason::UnknownScramCredential {
            user: user.to_string(),
            mechanism: mechanism.to_string(),
        };
        let credentials = self.scram.get_mut(user).ok_or_else(unknown)?;
        credentials.remove(m.name()).ok_or_else(unknown)?;
        if credentials.is_empty() {
            self.scram.remove(user);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sluice_auth::acl::{Operation, PatternType, Permission, ResourceType};

    use crate::image::{MetadataImage, RejectReason};
    use crate::types::{MetadataRecord, MetadataResponse};

    use super::*;

    fn binding(name: &str, principal: &str, op: Operation) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: PatternType::Literal,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: Permission::Allow,
        }
    }

    fn create(bindings: &[AclBinding]) -> MetadataRecord {
        MetadataRecord::CreateAcls {
            bindings: bindings.to_vec(),
        }
    }

    fn remove(bindings: &[AclBinding]) -> MetadataRecord {
        MetadataRecord::RemoveAcls {
            bindings: bindings.to_vec(),
        }
    }

    /// An upsert of a credential derived from `password` with 4096 iterations.
    fn upsert(user: &str, mechanism: ScramMechanism, password: &str) -> MetadataRecord {
        let c = ScramCredential::derive(mechanism, password, b"NaCl", 4096).unwrap();
        MetadataRecord::UpsertScramCredential {
            user: user.into(),
            mechanism: mechanism.name().into(),
            salt: c.salt,
            iterations: c.iterations,
            stored_key: c.stored_key,
            server_key: c.server_key,
        }
    }

    fn delete(user: &str, mechanism: &str) -> MetadataRecord {
        MetadataRecord::DeleteScramCredential {
            user: user.into(),
            mechanism: mechanism.into(),
        }
    }

    fn check(image: &mut MetadataImage, steps: &[(MetadataRecord, MetadataResponse)]) {
        for (i, (record, expected)) in steps.iter().enumerate() {
            assert_eq!(&image.apply(record), expected, "record {i}: {record:?}");
        }
    }

    fn applied() -> MetadataResponse {
        MetadataResponse::Applied
    }

    fn rejected(reason: RejectReason) -> MetadataResponse {
        MetadataResponse::Rejected(reason)
    }

    #[test]
    fn acls_are_created_whole_or_not_at_all_and_removed_exactly() {
        let a = binding("orders", "User:alice", Operation::Read);
        let b = binding("orders", "User:bob", Operation::Write);
        let c = binding("logs", "User:alice", Operation::Describe);
        let mut bad = binding("x", "alice", Operation::Read);
        let mut image = MetadataImage::default();
        check(
            &mut image,
            &[
                (create(&[a.clone(), b.clone()]), applied()),
                // A duplicate is a no-op, not an error.
                (create(std::slice::from_ref(&a)), applied()),
            ],
        );
        assert_eq!(image.acls().len(), 2);
        // One invalid binding rejects the whole record: c is not added either.
        let response = image.apply(&create(&[c.clone(), bad.clone()]));
        match response {
            MetadataResponse::Rejected(RejectReason::InvalidAcl(why)) => {
                assert!(why.contains("\"alice\""), "{why}");
            }
            other => panic!("expected InvalidAcl, got {other:?}"),
        }
        assert!(!image.acls().contains(&c));
        bad.principal = "User:alice".into();
        bad.resource_type = ResourceType::Cluster;
        assert!(matches!(
            image.apply(&create(&[bad])),
            MetadataResponse::Rejected(RejectReason::InvalidAcl(_))
        ));
        check(
            &mut image,
            &[
                (create(std::slice::from_ref(&c)), applied()),
                // Removing an absent binding is ignored; the present one goes.
                (
                    remove(&[b.clone(), binding("nope", "User:x", Operation::Read)]),
                    applied(),
                ),
                (remove(std::slice::from_ref(&b)), applied()),
            ],
        );
        let left: Vec<&AclBinding> = image.acls().iter().collect();
        assert_eq!(left, [&c, &a]);
    }

    #[test]
    fn scram_credentials_are_checked_stored_and_deleted() {
        use ScramMechanism::{Sha256, Sha512};
        let mut image = MetadataImage::default();
        check(
            &mut image,
            &[
                (upsert("alice", Sha256, "pw"), applied()),
                (upsert("alice", Sha512, "pw"), applied()),
                (upsert("bob", Sha512, "pw"), applied()),
                // An upsert replaces the credential.
                (upsert("bob", Sha512, "new"), applied()),
            ],
        );
        let expected = ScramCredential::derive(Sha512, "new", b"NaCl", 4096).ok();
        assert_eq!(image.scram_credential("bob", Sha512), expected);
        assert_eq!(image.scram_credential("bob", Sha256), None);
        assert_eq!(image.scram_credential("carol", Sha256), None);
        let users: Vec<(&str, Vec<(ScramMechanism, u32)>)> = image.scram_users().collect();
        assert_eq!(
            users,
            [
                ("alice", vec![(Sha256, 4096), (Sha512, 4096)]),
                ("bob", vec![(Sha512, 4096)]),
            ]
        );

        let with = |f: &dyn Fn(&mut MetadataRecord)| {
            let mut record = upsert("carol", Sha256, "pw");
            f(&mut record);
            record
        };
        let unacceptable =
            |image: &mut MetadataImage, record: MetadataRecord, why: &str| match image
                .apply(&record)
            {
                MetadataResponse::Rejected(RejectReason::UnacceptableScramCredential {
                    reason,
                    ..
                }) => assert!(reason.contains(why), "{reason}"),
                other => panic!("{record:?}: expected UnacceptableScramCredential, got {other:?}"),
            };
        let set_iterations = |n: u32| {
            move |r: &mut MetadataRecord| {
                if let MetadataRecord::UpsertScramCredential { iterations, .. } = r {
                    *iterations = n;
                }
            }
        };
        unacceptable(&mut image, with(&set_iterations(4095)), "4095 iterations");
        unacceptable(&mut image, with(&set_iterations(16385)), "16385 iterations");
        check(&mut image, &[(with(&set_iterations(16384)), applied())]);
        unacceptable(
            &mut image,
            with(&|r| {
                if let MetadataRecord::UpsertScramCredential { user, .. } = r {
                    user.clear();
                }
            }),
            "user name",
        );
        unacceptable(
            &mut image,
            with(&|r| {
                if let MetadataRecord::UpsertScramCredential { salt, .. } = r {
                    salt.clear();
                }
            }),
            "salt",
        );
        // SHA-512-sized keys under the SHA-256 name.
        let mut long_keys = upsert("carol", Sha512, "pw");
        if let MetadataRecord::UpsertScramCredential { mechanism, .. } = &mut long_keys {
            *mechanism = Sha256.name().into();
        }
        unacceptable(&mut image, long_keys, "64-byte StoredKey");
        let mut unknown = upsert("carol", Sha256, "pw");
        if let MetadataRecord::UpsertScramCredential { mechanism, .. } = &mut unknown {
            *mechanism = "SCRAM-SHA-1".into();
        }
        check(
            &mut image,
            &[
                (
                    unknown,
                    rejected(RejectReason::UnsupportedScramMechanism(
                        "SCRAM-SHA-1".into(),
                    )),
                ),
                (delete("alice", "SCRAM-SHA-256"), applied()),
                (
                    delete("alice", "SCRAM-SHA-256"),
                    rejected(RejectReason::UnknownScramCredential {
                        user: "alice".into(),
                        mechanism: "SCRAM-SHA-256".into(),
                    }),
                ),
                (
                    delete("dave", "SCRAM-SHA-512"),
                    rejected(RejectReason::UnknownScramCredential {
                        user: "dave".into(),
                        mechanism: "SCRAM-SHA-512".into(),
                    }),
                ),
                (
                    delete("alice", "PLAIN"),
                    rejected(RejectReason::UnsupportedScramMechanism("PLAIN".into())),
                ),
                (delete("alice", "SCRAM-SHA-512"), applied()),
            ],
        );
        // A user whose last credential went is no longer listed.
        let users: Vec<&str> = image.scram_users().map(|(u, _)| u).collect();
        assert_eq!(users, ["bob", "carol"]);
        assert_eq!(image.scram_credential("alice", Sha512), None);
    }

    #[test]
    fn security_state_survives_a_snapshot_and_old_snapshots_load() {
        let mut image = MetadataImage::default();
        let records = [
            MetadataRecord::RegisterBroker {
                id: 1,
                epoch: 1,
                endpoints: Vec::new(),
                rack: None,
            },
            create(&[
                binding("orders", "User:alice", Operation::Read),
                AclBinding {
                    pattern_type: PatternType::Prefixed,
                    permission: Permission::Deny,
                    ..binding("secret-", "User:*", Operation::All)
                },
            ]),
            upsert("alice", ScramMechanism::Sha256, "pw"),
            delete("alice", "SCRAM-SHA-256"),
            upsert("bob", ScramMechanism::Sha512, "pw"),
            remove(&[binding("orders", "User:alice", Operation::Read)]),
            create(&[binding("orders", "User:bob", Operation::Write)]),
        ];
        for record in &records {
            // Records round-trip through JSON, as the Raft log stores them.
            let json = serde_json::to_vec(record).unwrap();
            let back: MetadataRecord = serde_json::from_slice(&json).unwrap();
            assert_eq!(&back, record);
            assert_eq!(image.apply(&back), applied(), "{record:?}");
        }
        assert_eq!(image.acls().len(), 2);
        let json = serde_json::to_string(&image).unwrap();
        let back: MetadataImage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, image);
        assert_eq!(
            back.scram_credential("bob", ScramMechanism::Sha512),
            image.scram_credential("bob", ScramMechanism::Sha512)
        );
        assert!(back
            .scram_credential("bob", ScramMechanism::Sha512)
            .is_some());

        // A snapshot from before ACLs and SCRAM credentials existed.
        let old = r#"{"brokers":{"1":{"id":1,"epoch":1,"endpoints":[],"rack":null,"fenced":true}},
            "topics":{},"next_producer_id":0,"producer_id_blocks":{}}"#;
        let old: MetadataImage = serde_json::from_str(old).unwrap();
        assert!(old.acls().is_empty());
        assert_eq!(old.scram_users().count(), 0);
        assert_eq!(old.broker(1).map(|b| b.fenced), Some(true));
        let mut expected = MetadataImage::default();
        expected.apply(&records[0]);
        assert_eq!(old, expected);
    }
}
