//! `cargo xtask codegen`: generates the Kafka message codec of `sluice-protocol`
//! (`crates/protocol/src/messages/` and `crates/protocol/src/api.rs`) from Apache
//! Kafka's JSON message schemas.
//!
//! Pipeline: `schema` parses the JSON, `model` resolves it into typed structs and
//! checks it, `emit_message` / `emit_api` print Rust, and this module formats the
//! output with rustfmt and writes only files whose content changed (so an unchanged
//! regeneration does not trigger a rebuild). `--check` compares instead of writing.

mod cond;
mod emit_api;
mod emit_message;
mod model;
mod names;
mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

/// Generated files, relative to `crates/protocol/src`.
type Files = BTreeMap<PathBuf, String>;

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut check = false;
    let mut spec_dir = None;
    for arg in args {
        match arg.as_str() {
            "--check" => check = true,
            a if a.starts_with('-') => bail!("unknown codegen option `{a}`"),
            a => {
                ensure!(spec_dir.is_none(), "more than one spec directory given");
                spec_dir = Some(PathBuf::from(a));
            }
        }
    }
    let spec_dir = spec_dir.unwrap_or_else(|| root.join("../shared/kafka-specs/message"));

    let mut specs = load_specs(&spec_dir)?;
    // The coordinator-record schemas (keys and values of `__consumer_offsets` and
    // `__transaction_state`) sit beside the message schemas and are generated the same
    // way, so the coordinators write records in Kafka's own format.
    if let Some(records) = spec_dir.parent().map(|p| p.join("coordinator-records")) {
        if records.is_dir() {
            specs.extend(load_specs(&records)?);
        }
    }
    let count = specs.len();
    let messages = model::build(specs)?;
    let files = emit_all(&messages)?;
    let files = rustfmt(root, files)?;

    let src = root.join("crates/protocol/src");
    let stale = stale_files(&src, &files)?;
    let mut changed = Vec::new();
    for (rel, text) in &files {
        let path = src.join(rel);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() != Some(text.as_str()) {
            changed.push(rel.clone());
        }
    }
    if check {
        if changed.is_empty() && stale.is_empty() {
            println!("codegen: {} generated files are up to date", files.len());
            return Ok(());
        }
        for rel in &changed {
            println!("out of date: crates/protocol/src/{}", rel.display());
        }
        for path in &stale {
            println!("stale: {}", path.display());
        }
        bail!("generated code is out of date; run `cargo xtask codegen`");
    }
    for rel in &changed {
        let path = src.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &files[rel])
            .with_context(|| format!("writing {}", path.display()))?;
    }
    for path in &stale {
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    println!(
        "codegen: {count} schemas -> {} files ({} changed, {} removed)",
        files.len(),
        changed.len(),
        stale.len()
    );
    Ok(())
}

fn load_specs(dir: &Path) -> Result<Vec<(String, schema::MessageSpec)>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading spec directory {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    paths.sort();
    ensure!(!paths.is_empty(), "no *.json schemas in {}", dir.display());
    paths
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .context("non-UTF-8 file name")?
                .to_owned();
            Ok((name, schema::load(p)?))
        })
        .collect()
}

fn emit_all(messages: &[model::Message]) -> Result<Files> {
    let unstable = emit_api::unstable_flags(messages)?;
    let mut files = Files::new();
    for m in messages {
        let text = emit_message::emit(m, unstable.get(&m.name).copied().unwrap_or(false))
            .with_context(|| format!("emitting {}", m.name))?;
        files.insert(PathBuf::from(format!("messages/{}.rs", m.module)), text);
    }
    files.insert(
        PathBuf::from("messages/mod.rs"),
        emit_api::emit_mod(messages)?,
    );
    files.insert(PathBuf::from("api.rs"), emit_api::emit_api(messages)?);
    Ok(files)
}

/// Formats the generated files with rustfmt. They are written to a scratch tree
/// under `target/` first: inside the workspace, so a `rustfmt.toml` at the root
/// applies exactly as it does to `cargo fmt`.
fn rustfmt(root: &Path, files: Files) -> Result<Files> {
    let scratch = root.join("target/xtask-codegen/src");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    for (rel, text) in &files {
        let path = scratch.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, text)?;
    }
    // rustfmt follows `mod` declarations, so the two roots cover every file.
    let status = Command::new(std::env::var("RUSTFMT").unwrap_or_else(|_| "rustfmt".into()))
        .arg("--edition")
        .arg("2021")
        .arg(scratch.join("api.rs"))
        .arg(scratch.join("messages/mod.rs"))
        .status()
        .context("running rustfmt (is it installed? `rustup component add rustfmt`)")?;
    ensure!(status.success(), "rustfmt failed on the generated code");
    files
        .into_keys()
        .map(|rel| {
            let text = std::fs::read_to_string(scratch.join(&rel))?;
            Ok((rel, text))
        })
        .collect()
}

/// Generated module files that no schema produces any more.
fn stale_files(src: &Path, files: &Files) -> Result<Vec<PathBuf>> {
    let dir = src.join("messages");
    let mut stale = Vec::new();
    if !dir.exists() {
        return Ok(stale);
    }
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            let rel = Path::new("messages").join(path.file_name().unwrap_or_default());
            if !files.contains_key(&rel) {
                stale.push(path);
            }
        }
    }
    stale.sort();
    Ok(stale)
}
