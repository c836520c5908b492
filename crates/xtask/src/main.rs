//! Project chores, run as `cargo xtask <task>`:
//!
//! - `docs [--check]`: (re)generate `ansible/plugins/modules/<module>.yml` from each module
//!   binary's `--doc` output; `--check` fails when a committed sidecar is stale.
//! - `collection`: copy the built module binaries into the collection and link the collection
//!   under `target/collections/ansible_collections/dbcadence/maintenance` for
//!   ANSIBLE_COLLECTIONS_PATH.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Module binaries: every `src/bin/db_*.rs` of dbcadence-modules.
fn modules() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("crates/modules/src/bin"))
        .expect("crates/modules/src/bin")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".rs")
                .map(str::to_string)
        })
        .filter(|n| n.starts_with("db_"))
        .collect();
    names.sort();
    names
}

fn build_modules() -> Result<(), String> {
    duct::cmd!(
        "cargo",
        "build",
        "--quiet",
        "-p",
        "dbcadence-modules",
        "--bins"
    )
    .dir(root())
    .run()
    .map(|_| ())
    .map_err(|e| format!("cargo build failed: {e}"))
}

/// Writes `text` to `path` if it differs, or (with `check`) notes the file as stale.
fn write_generated(
    path: &std::path::Path,
    text: &str,
    check: bool,
    stale: &mut Vec<String>,
) -> Result<(), String> {
    if std::fs::read_to_string(path).unwrap_or_default() == text {
        return Ok(());
    }
    if check {
        stale.push(path.display().to_string());
        return Ok(());
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn docs(check: bool) -> Result<(), String> {
    build_modules()?;
    let mut stale = Vec::new();
    let fragments_dir = root().join("ansible/plugins/doc_fragments");
    std::fs::create_dir_all(&fragments_dir).map_err(|e| e.to_string())?;
    for name in modules() {
        let binary = target_dir().join("debug").join(&name);
        let text = duct::cmd!(&binary, "--doc")
            .read()
            .map_err(|e| format!("{} --doc: {e}", binary.display()))?
            + "\n";
        let sidecar = root()
            .join("ansible/plugins/modules")
            .join(format!("{name}.yml"));
        write_generated(&sidecar, &text, check, &mut stale)?;
        // The doc fragments it extends: the same for every module that names them.
        let fragments = duct::cmd!(&binary, "--doc-fragments")
            .read()
            .map_err(|e| format!("{} --doc-fragments: {e}", binary.display()))?;
        let fragments: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&fragments).map_err(|e| e.to_string())?;
        for (file, text) in fragments {
            write_generated(&fragments_dir.join(file), &text, check, &mut stale)?;
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "stale module docs (run `cargo xtask docs`): {}",
            stale.join(", ")
        ))
    }
}

fn collection() -> Result<(), String> {
    build_modules()?;
    let modules_dir = root().join("ansible/plugins/modules");
    for name in modules() {
        let from = target_dir().join("debug").join(&name);
        let to = modules_dir.join(&name);
        std::fs::copy(&from, &to)
            .map_err(|e| format!("copy {} to {}: {e}", from.display(), to.display()))?;
    }
    let namespace = target_dir().join("collections/ansible_collections/dbcadence");
    std::fs::create_dir_all(&namespace).map_err(|e| e.to_string())?;
    let link = namespace.join("maintenance");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(root().join("ansible"), &link)
        .map_err(|e| format!("link {}: {e}", link.display()))?;
    println!("{}", target_dir().join("collections").display());
    Ok(())
}

mod synth;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("docs") => docs(args.iter().any(|a| a == "--check")),
        Some("collection") => collection(),
        Some("synth-ledger") => synth::synth_ledger(&args[1..]),
        _ => Err(
            "usage: cargo xtask docs [--check] | collection | synth-ledger --out FILE [--records N] [--databases N]"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
