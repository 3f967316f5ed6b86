//! Records the commit the daemon is built from, for `wxcardd_build_info{commit}`, `--version`
//! and the support report: `WXCARDD_COMMIT` from the environment (a package built from a
//! source tarball, which has no `.git`), else the checkout's HEAD read from `.git` without
//! running git (build/git_head.rs says why), else "unknown", with a warning. Re-run when HEAD
//! moves.

#[path = "build/git_head.rs"]
mod git_head;

fn main() {
    println!("cargo:rerun-if-env-changed=WXCARDD_COMMIT");
    let manifest_dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let head = git_head::head(&manifest_dir);
    for path in head.iter().flat_map(|h| &h.watch) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let valid =
        |c: &String| !c.is_empty() && c.len() <= 40 && c.bytes().all(|b| b.is_ascii_alphanumeric());
    let commit = std::env::var("WXCARDD_COMMIT")
        .ok()
        .filter(valid)
        .or_else(|| head.map(|h| h.commit));
    let commit = commit.unwrap_or_else(|| {
        println!(
            "cargo:warning=no commit for wxcardd_build_info: not a git checkout and \
             WXCARDD_COMMIT is not set"
        );
        "unknown".to_owned()
    });
    println!("cargo:rustc-env=WXCARDD_COMMIT={commit}");
}
