//! The collection as it ships (.ci/build-dist): module binaries for managed nodes with glibc
//! 2.17 or newer, linked against nothing but libc, small enough to copy for every task.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dbcadence_e2e::*;

fn module_binaries(collection: &Path) -> Vec<PathBuf> {
    let mut binaries: Vec<PathBuf> = std::fs::read_dir(collection.join("plugins/modules"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_none())
        .collect();
    binaries.sort();
    binaries
}

#[test]
fn shipped_modules_need_only_libc_from_glibc_2_17_and_stay_under_6_mib() {
    let dir = tempfile::tempdir().unwrap();
    let collection = unpack_dist_collection(dir.path());
    assert!(collection.join("MANIFEST.json").exists());
    assert!(collection.join("plugins/inventory/fleet.py").exists());
    let binaries = module_binaries(&collection);
    assert_eq!(binaries.len(), 10, "{binaries:?}");
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
        let size = std::fs::metadata(binary).unwrap().len();
        assert!(size <= 6 * 1024 * 1024, "{name}: {size} bytes");
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
    // A shipped binary speaks the module protocol: bad input is one JSON failure.
    let args = dir.path().join("args.json");
    std::fs::write(&args, r#"{"no_such_option": 1}"#).unwrap();
    let out = duct::cmd!(collection.join("plugins/modules/db_change"), &args)
        .unchecked()
        .read()
        .unwrap();
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["failed"], true, "{out}");
}
