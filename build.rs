//! Records the commit the daemon is built from, for `wxcardd_build_info{commit}` and the
//! support report: `WXCARDD_COMMIT` from the environment (a package build), else `git
//! rev-parse` when building from a checkout, else nothing ("unknown" at run time).

fn main() {
    println!("cargo:rerun-if-env-changed=WXCARDD_COMMIT");
    let commit = std::env::var("WXCARDD_COMMIT").ok().or_else(|| {
        let out = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    if let Some(commit) = commit
        .filter(|c| !c.is_empty() && c.len() <= 40 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        println!("cargo:rustc-env=WXCARDD_COMMIT={commit}");
    }
}
