//! The first SCRAM users of a cluster, before anyone can authenticate to create them
//! (Kafka's `kafka-storage format --add-scram`): `sluice add-scram` writes their
//! credentials (salted, never the password) to `bootstrap-scram.json` in the data dir,
//! `--add-scram` does the same at start, and the node writes each to the metadata log
//! once it is part of the cluster, unless the user already has a credential for that
//! mechanism (so a later AlterUserScramCredentials is never undone by a restart).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_auth::scram::{ScramCredential, ScramMechanism};
use sluice_controller::{MetadataRecord, MetadataResponse};
use tracing::{info, warn};

use crate::cluster::Cluster;
use crate::error::BrokerError;

/// The file in the data dir.
pub const FILE: &str = "bootstrap-scram.json";

/// One user's credential as stored in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapCredential {
    pub user: String,
    pub mechanism: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Parses Kafka's `MECHANISM=[name=alice,password=alice-secret(,iterations=8192)]`.
pub fn parse_spec(spec: &str) -> Result<BootstrapCredential, BrokerError> {
    let bad = |why: &str| BrokerError::Config(format!("--add-scram {spec:?}: {why}"));
    let (mechanism, rest) = spec
        .split_once('=')
        .ok_or_else(|| bad("expected MECHANISM=[...]"))?;
    let m = ScramMechanism::from_name(mechanism.trim())
        .ok_or_else(|| bad("the mechanism is SCRAM-SHA-256 or SCRAM-SHA-512"))?;
    let body = rest
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| bad("the attributes go in [...]"))?;
    let (mut name, mut password, mut iterations) = (None, None, 4096u32);
    for attr in body.split(',') {
        let (k, v) = attr
            .split_once('=')
            .ok_or_else(|| bad("attributes are key=value"))?;
        let v = v.trim().trim_matches('"');
        match k.trim() {
            "name" => name = Some(v.to_string()),
            "password" => password = Some(v.to_string()),
            "iterations" => iterations = v.parse().map_err(|_| bad("bad iterations"))?,
            other => return Err(bad(&format!("unknown attribute {other}"))),
        }
    }
    let (Some(user), Some(password)) = (name.filter(|n| !n.is_empty()), password) else {
        return Err(bad("name and password are required"));
    };
    let salt = uuid::Uuid::new_v4().as_bytes().to_vec();
    let c = ScramCredential::derive(m, &password, &salt, iterations)
        .map_err(|e| bad(&e.to_string()))?;
    Ok(BootstrapCredential {
        user,
        mechanism: m.name().to_string(),
        salt: c.salt,
        iterations,
        stored_key: c.stored_key,
        server_key: c.server_key,
    })
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The credentials in the data dir's file (none if there is no file).
pub fn load(data_dir: &Path) -> Result<Vec<BootstrapCredential>, BrokerError> {
    let p = path(data_dir);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| BrokerError::Config(format!("{}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(BrokerError::io(&p, e)),
    }
}

/// Adds `creds` to the file (a user and mechanism given again replaces the earlier
/// entry), written atomically.
pub fn add(data_dir: &Path, creds: &[BootstrapCredential]) -> Result<(), BrokerError> {
    std::fs::create_dir_all(data_dir).map_err(|e| BrokerError::io(data_dir, e))?;
    let mut all = load(data_dir)?;
    for c in creds {
        all.retain(|o| !(o.user == c.user && o.mechanism == c.mechanism));
        all.push(c.clone());
    }
    let p = path(data_dir);
    let tmp = p.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(&all).map_err(|e| BrokerError::Config(e.to_string()))?;
    std::fs::write(&tmp, bytes).map_err(|e| BrokerError::io(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| BrokerError::io(&p, e))
}

/// Writes each file credential the metadata lacks. Runs once the node is unfenced.
pub async fn apply(cluster: &Cluster, data_dir: &Path) -> Result<(), BrokerError> {
    for c in load(data_dir)? {
        let Some(m) = ScramMechanism::from_name(&c.mechanism) else {
            warn!(user = %c.user, mechanism = %c.mechanism, "skipping a bootstrap credential of an unknown mechanism");
            continue;
        };
        if cluster.image().scram_credential(&c.user, m).is_some() {
            continue;
        }
        let record = MetadataRecord::UpsertScramCredential {
            user: c.user.clone(),
            mechanism: c.mechanism.clone(),
            salt: c.salt,
            iterations: c.iterations,
            stored_key: c.stored_key,
            server_key: c.server_key,
        };
        match cluster.write(record).await {
            Ok(MetadataResponse::Rejected(reason)) => {
                warn!(user = %c.user, %reason, "bootstrap SCRAM credential rejected")
            }
            Ok(_) => {
                info!(user = %c.user, mechanism = %c.mechanism, "bootstrap SCRAM credential written")
            }
            Err(e) => {
                return Err(BrokerError::Metadata(format!(
                    "writing the bootstrap SCRAM credential of {}: {}",
                    c.user, e.message
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_file() {
        let c =
            parse_spec("SCRAM-SHA-512=[name=admin,password=admin-secret,iterations=8192]").unwrap();
        assert_eq!(
            (c.user.as_str(), c.mechanism.as_str(), c.iterations),
            ("admin", "SCRAM-SHA-512", 8192)
        );
        let expected =
            ScramCredential::derive(ScramMechanism::Sha512, "admin-secret", &c.salt, 8192).unwrap();
        assert_eq!(c.stored_key, expected.stored_key);
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-256=name=a,password=b",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=10]",
            "SCRAM-SHA-256=[name=a,password=b,colour=red]",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let a = parse_spec("SCRAM-SHA-256=[name=a,password=1]").unwrap();
        let a2 = parse_spec("SCRAM-SHA-256=[name=a,password=2]").unwrap();
        let b = parse_spec("SCRAM-SHA-512=[name=a,password=1]").unwrap();
        add(dir.path(), &[a, b.clone()]).unwrap();
        add(dir.path(), std::slice::from_ref(&a2)).unwrap();
        let all = load(dir.path()).unwrap();
        assert_eq!(all, vec![b, a2]);
    }
}
