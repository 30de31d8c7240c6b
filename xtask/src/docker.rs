//! `cargo xtask docker`: builds the container image `sluice:latest` from
//! `deploy/Dockerfile` without pulling anything (this machine and CI have no registry).
//!
//! It reuses the release build every other step uses (`target/release/sluice`, built
//! here if missing) rather than a static build, which would compile the workspace a
//! second time: the image is FROM scratch plus that binary with its debug info stripped,
//! the glibc libraries `ldd` lists for it, and passwd/group entries for the numeric user
//! 65532. Prints the image's size.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{cargo, output, run};

/// The tag the compose file and the Kubernetes manifests run.
pub const IMAGE: &str = "sluice:latest";
/// The user the image runs as (no name needed: numeric, as Kubernetes' runAsNonRoot
/// checks).
const UID: u32 = 65532;

pub fn run_docker(root: &Path, args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("docker: unexpected argument `{a}` (usage: cargo xtask docker)");
    }
    build_image(root)?;
    Ok(())
}

/// Builds the image and returns its size in bytes.
pub fn build_image(root: &Path) -> Result<u64> {
    run(cargo(root).args([
        "build",
        "--release",
        "-p",
        "sluice-broker",
        "--bin",
        "sluice",
    ]))?;
    let context = root.join("target/docker/context");
    stage(&root.join("target/release/sluice"), &context)?;
    run(Command::new("docker").args([
        "build",
        "--quiet",
        "-t",
        IMAGE,
        "-f",
        &root.join("deploy/Dockerfile").display().to_string(),
        &context.display().to_string(),
    ]))?;
    let size: u64 =
        output(Command::new("docker").args(["image", "inspect", "--format", "{{.Size}}", IMAGE]))?
            .trim()
            .parse()
            .context("docker image inspect: size")?;
    eprintln!(
        "xtask docker: built {IMAGE}, {:.1} MB",
        size as f64 / 1_000_000.0
    );
    Ok(size)
}

/// Lays out the build context: `rootfs/` (binary, libraries, /etc files) and an empty
/// `data/` that becomes /var/lib/sluice, owned by the image's user.
fn stage(binary: &Path, context: &Path) -> Result<()> {
    if context.exists() {
        std::fs::remove_dir_all(context).with_context(|| context.display().to_string())?;
    }
    let rootfs = context.join("rootfs");
    std::fs::create_dir_all(context.join("data"))?;
    std::fs::create_dir_all(rootfs.join("etc"))?;
    std::fs::create_dir_all(rootfs.join("tmp"))?;
    // The release profile keeps line tables for backtraces; the image does without.
    run(Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(rootfs.join("sluice")))?;
    for lib in shared_libraries(binary)? {
        let inside = rootfs.join(lib.strip_prefix("/").unwrap_or(&lib));
        if let Some(dir) = inside.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Copy what a symlink points to, under the name the loader looks for.
        std::fs::copy(&lib, &inside).with_context(|| lib.display().to_string())?;
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        format!("root:x:0:0:root:/:/sbin/nologin\nsluice:x:{UID}:{UID}:sluice:/var/lib/sluice:/sbin/nologin\n"),
    )?;
    std::fs::write(
        rootfs.join("etc/group"),
        format!("root:x:0:\nsluice:x:{UID}:\n"),
    )?;
    // glibc resolves host names (peers, voters) through NSS: files first, then DNS
    // (both built into libc.so.6 since glibc 2.34).
    std::fs::write(rootfs.join("etc/nsswitch.conf"), "hosts: files dns\n")?;
    Ok(())
}

/// The absolute paths of the shared objects `binary` loads, the dynamic loader included,
/// as `ldd` reports them.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let listing = output(Command::new("ldd").arg(binary))?;
    let mut libs = Vec::new();
    for line in listing.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    if !libs
        .iter()
        .any(|l| l.to_string_lossy().contains("ld-linux"))
    {
        bail!(
            "ldd {} named no dynamic loader:\n{listing}",
            binary.display()
        );
    }
    Ok(libs)
}
