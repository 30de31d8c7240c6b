//! Small process helpers shared by the xtask subcommands.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Runs a command inheriting stdio; fails with the command line if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` with `input` on its standard input, failing on a non-zero exit.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", describe(cmd)))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("`{}` failed with {status}", describe(cmd));
    }
    Ok(())
}

/// Runs a command and returns its stdout (stderr inherited).
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", describe(cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed with {}", describe(cmd), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// `cargo` as invoked by the user (respects `$CARGO` set by cargo itself).
pub fn cargo(root: &Path) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root);
    c
}

/// True when `program` can be started (found on PATH).
pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A Python venv under `target/` holding a requirements file's pins, for the
/// subcommands that drive Python tools (compat's clients, k8s-check's validator).
pub struct Venv<'a> {
    /// Names the venv in messages and its stamp file (`<label>-requirements.txt`).
    pub label: &'a str,
    /// Where the venv lives, e.g. `target/compat-venv`.
    pub dir: PathBuf,
    /// The pins, `pip install -r`'d.
    pub requirements: PathBuf,
    /// Python code that runs when the venv is usable, e.g. `import yaml`.
    pub import_check: &'a str,
}

/// Returns the venv's python, creating the venv or reinstalling the pins as needed:
/// it is reused while it imports `import_check` and the requirements are those it was
/// last installed from (a copy kept in the venv), so only edited pins or a broken venv
/// cost a pip run.
pub fn ensure_venv(spec: &Venv<'_>) -> Result<PathBuf> {
    let Venv {
        label,
        dir: venv,
        requirements,
        import_check,
    } = spec;
    let python = venv.join("bin/python");
    let wanted = fs::read_to_string(requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    // A copy of the requirements installed last: pins edited since mean reinstall.
    let stamp = venv.join(format!("{label}-requirements.txt"));
    let imports = || python_ok(&python, import_check);
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && imports() {
        return Ok(python);
    }
    if !python_ok(&python, "pass") {
        // Missing, or broken (e.g. the base interpreter it points to was replaced).
        let _ = fs::remove_dir_all(venv);
        if !have("python3") {
            bail!("python3 is not installed: {label} needs Python 3 with the venv module");
        }
        run(Command::new("python3").arg("-m").arg("venv").arg(venv)).with_context(|| {
            format!(
                "creating the {label} venv (on Debian's own python3 this needs the python3-venv package)"
            )
        })?;
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-r",
        ])
        .arg(requirements))?;
    if !imports() {
        bail!("the {label} venv does not import its packages after pip install: `{import_check}` failed");
    }
    fs::write(&stamp, wanted)?;
    Ok(python)
}

/// True when `python -c code` runs and succeeds.
pub fn python_ok(python: &Path, code: &str) -> bool {
    Command::new(python)
        .args(["-c", code])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
