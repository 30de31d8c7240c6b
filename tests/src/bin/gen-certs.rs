//! `gen-certs DIR [--ip-sans] [--san NAME]... [--client CN]...`: writes the test PKI of
//! `sluice_system_tests::certs` to DIR for the Python suites and the compose file.
//!
//! The broker certificate names the DNS names of `certs::DNS_SANS` (localhost, the
//! compose services, the StatefulSet's pods) plus any `--san`; the loopback IP addresses
//! only with `--ip-sans`, because the security suite checks that a client connecting to
//! 127.0.0.1 with host name verification on refuses it. Client certificates
//! (`<cn>.pem`, `<cn>-key.pem`, subject `CN=<cn>,O=Sluice Test`) are issued for the
//! default names below and every `--client`; `untrusted-mallory.pem` comes from the CA
//! nobody trusts.

#![allow(clippy::print_stdout, clippy::print_stderr)] // A CLI tool: reports on stdio.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use sluice_system_tests::certs::{TestPki, DNS_SANS, IP_SANS};

/// Clients every PKI gets: the security suite's `writer` and `nobody`, plus a few
/// names for hand-run experiments.
const DEFAULT_CLIENTS: &[&str] = &["writer", "nobody", "admin", "alice", "bob"];

const USAGE: &str = "usage: gen-certs DIR [--ip-sans] [--san NAME]... [--client CN]...";

fn main() -> Result<()> {
    let mut dir: Option<PathBuf> = None;
    let mut ip_sans = false;
    let mut sans: Vec<String> = DNS_SANS.iter().map(|s| s.to_string()).collect();
    let mut clients: Vec<String> = DEFAULT_CLIENTS.iter().map(|s| s.to_string()).collect();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ip-sans" => ip_sans = true,
            "--san" => sans.push(args.next().context(USAGE)?),
            "--client" => clients.push(args.next().context(USAGE)?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other if other.starts_with('-') => bail!("unknown option {other}\n{USAGE}"),
            other if dir.is_none() => dir = Some(PathBuf::from(other)),
            other => bail!("unexpected argument {other}\n{USAGE}"),
        }
    }
    let dir = dir.context(USAGE)?;
    if ip_sans {
        sans.extend(IP_SANS.iter().map(|s| s.to_string()));
    }
    let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
    let pki = TestPki::generate_with_sans(&dir, &sans)?;
    let mut seen = std::collections::HashSet::new();
    clients.retain(|c| seen.insert(c.clone()));
    for cn in &clients {
        pki.try_client(cn)?;
    }
    pki.try_other_ca_client("mallory")?;
    println!(
        "gen-certs: wrote the test PKI to {} (server names: {}; clients: {})",
        dir.display(),
        sans.join(", "),
        clients.join(", ")
    );
    Ok(())
}
