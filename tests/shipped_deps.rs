//! The crates the shipped `wxcardd` must not link (issue 12's 6 MB binary).
//!
//! The .deb builds `--no-default-features`; a feature switched back on in Cargo.toml (or a
//! dependency's default features) silently brings these back, and nothing else would notice
//! but the next size measurement. `cargo tree` on the normal (not dev, not build) dependency
//! graph of that build is the check: offline and locked, so it reads only Cargo.lock and the
//! local registry cache.

use std::process::Command;

/// Crates that must stay out of the shipped build, and why (bytes from BENCHMARKS.md, issue 12
/// "5. Size").
const FORBIDDEN: &[(&str, &str)] = &[(
    "webpki-roots",
    "ureq's `rustls` feature: Mozilla's CA list, never used (the platform's roots and \
         api.ca_file); use `rustls-no-provider`",
)];

fn shipped_tree() -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "--manifest-path",
            manifest,
            "-p",
            "wxcardd",
            "--no-default-features",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_shipped_build_links_none_of_the_forbidden_crates() {
    let tree = shipped_tree();
    // The check itself must see the graph: crates every build has.
    for present in ["ureq ", "rustls ", "tokio "] {
        assert!(
            tree.lines().any(|l| l.starts_with(present)),
            "{present} missing from cargo tree's output:\n{tree}"
        );
    }
    let found: Vec<String> = FORBIDDEN
        .iter()
        .filter(|(name, _)| {
            tree.lines()
                .any(|l| l.split_whitespace().next() == Some(name))
        })
        .map(|(name, why)| format!("{name}: {why}"))
        .collect();
    assert!(found.is_empty(), "in the shipped build: {found:#?}");
}
