//! Records the commit the daemon is built from, for `wxcardd_build_info{commit}`:
//! `WXCARDD_COMMIT` from the environment (a package build), else `git rev-parse` when building
//! from a checkout, else nothing ("unknown" at run time). Re-run when HEAD moves.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=WXCARDD_COMMIT");
    // HEAD, the branch it names and packed-refs: a commit or checkout changes one of them
    // (worktrees keep HEAD in their own git dir and refs in the common one).
    if let (Some(git_dir), Some(common)) = (
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) {
        // Only files that exist: cargo re-runs a build script on every build for a missing one.
        let mut watch = vec![format!("{git_dir}/HEAD"), format!("{common}/packed-refs")];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(format!("{common}/{branch}"));
        }
        for path in watch.iter().filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("WXCARDD_COMMIT")
        .ok()
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]));
    if let Some(commit) = commit
        .filter(|c| !c.is_empty() && c.len() <= 40 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        println!("cargo:rustc-env=WXCARDD_COMMIT={commit}");
    }
}
