//! The collection as it ships (.ci/build-dist): one multi-call binary for every module, for
//! managed nodes with glibc 2.17 or newer, linked against nothing but libc, small enough to
//! copy to a host once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dbcadence_e2e::*;

/// The modules the collection documents (one `.yml` sidecar each).
fn documented_modules() -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(workspace_root().join("ansible/plugins/modules"))
            .unwrap()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".yml")
                    .map(str::to_string)
            })
            .collect();
    names.sort();
    names
}

#[test]
fn the_shipped_multi_call_binary_needs_only_libc_from_glibc_2_17_and_answers_as_each_module() {
    let dir = tempfile::tempdir().unwrap();
    let collection =
        install_dist_collection(dir.path()).join("ansible_collections/dbcadence/maintenance");
    assert!(collection.join("MANIFEST.json").exists());
    assert!(collection.join("plugins/inventory/fleet.py").exists());
    assert!(
        collection
            .join("plugins/plugin_utils/binary_module.py")
            .exists()
    );
    assert!(collection.join("plugins/action/db_backup.py").exists());
    // Every module is a link to the one binary, and nothing else in plugins/modules runs.
    let multi_call = collection.join("bin/dbcadence-modules");
    let modules = documented_modules();
    assert_eq!(modules.len(), 10, "{modules:?}");
    for name in &modules {
        let link = collection.join("plugins/modules").join(name);
        assert!(link.is_symlink(), "{name} is not a link");
        assert_eq!(
            link.canonicalize().unwrap(),
            multi_call.canonicalize().unwrap(),
            "{name}"
        );
    }
    let binaries: Vec<PathBuf> = vec![multi_call.clone()];
    // All modules in one binary: far smaller than the ten binaries it replaces (5-6 MB each).
    // The S3 client (object_store, reqwest, hyper) took it from 8.6 to 11.2 MB.
    let size = std::fs::metadata(&multi_call).unwrap().len();
    assert!(size <= 12 * 1024 * 1024, "dbcadence-modules: {size} bytes");
    let libc_only: BTreeSet<&str> = [
        "libc.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "libm.so.6",
        "ld-linux-x86-64.so.2",
    ]
    .into();
    for binary in &binaries {
        let name = binary.file_name().unwrap().to_string_lossy();
        let dynamic = duct::cmd!("readelf", "-d", binary).read().unwrap();
        let needed: Vec<String> = dynamic
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| {
                l.split('[')
                    .nth(1)
                    .map(|s| s.trim_end_matches(']').to_string())
            })
            .collect();
        assert!(
            needed.iter().all(|n| libc_only.contains(n.as_str())),
            "{name} needs {needed:?}"
        );
        let ldd = duct::cmd!("ldd", binary).read().unwrap();
        assert!(!ldd.contains("not found"), "{name}: {ldd}");
        assert!(
            !ldd.contains("libssl") && !ldd.contains("libgcc_s"),
            "{name}: {ldd}"
        );
        let symbols = duct::cmd!("objdump", "-T", binary).read().unwrap();
        let newest = symbols
            .split("GLIBC_")
            .skip(1)
            .filter_map(|s| {
                let version: String = s
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
                Some((parts.next()?, parts.next().unwrap_or(0)))
            })
            .max()
            .unwrap();
        assert!(
            newest <= (2, 17),
            "{name} needs GLIBC_{}.{}",
            newest.0,
            newest.1
        );
    }
    // Each link answers as its module (by the name it runs as), and the binary itself as the
    // module Ansible names in the arguments: bad input is one JSON failure from that module.
    let args = dir.path().join("args.json");
    std::fs::write(&args, r#"{"no_such_option": 1}"#).unwrap();
    let run = |program: PathBuf, args: &Path| -> serde_json::Value {
        let out = duct::cmd!(program, args).unchecked().read().unwrap();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let change = run(collection.join("plugins/modules/db_change"), &args);
    assert_eq!(change["failed"], true, "{change}");
    assert!(change["msg"].as_str().unwrap().contains("jira"), "{change}");
    let named = dir.path().join("named.json");
    std::fs::write(
        &named,
        r#"{"no_such_option": 1, "_ansible_module_name": "dbcadence.maintenance.db_backup"}"#,
    )
    .unwrap();
    let backup = run(multi_call.clone(), &named);
    assert!(
        backup["msg"].as_str().unwrap().contains("backup_dir"),
        "{backup}"
    );
    let unknown = run(multi_call, &args);
    assert!(
        unknown["msg"]
            .as_str()
            .unwrap()
            .contains("holds the modules db_audit, db_backup"),
        "{unknown}"
    );
}
