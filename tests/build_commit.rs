//! The commit a binary was built from (`wxcardd_build_info{commit}`, `--version`, the support
//! report) comes from build.rs, which reads it from the checkout's `.git` (build/git_head.rs,
//! shared with this test) or takes `WXCARDD_COMMIT`. A package is often built by another user
//! than the one who owns the checkout (root in a build container, `sudo cargo deb`): git
//! itself then refuses the repository ("dubious ownership") and the commit was lost, so the
//! checkout is read without running git. Real repositories made with git in temp dirs.

#[path = "../build/git_head.rs"]
mod git_head;

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "safe.directory=*",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A repository in `dir` with one commit; returns the commit's full id.
fn repo_with_a_commit(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    std::fs::write(dir.join("Cargo.toml"), "[package]\n").unwrap();
    git(dir, &["add", "Cargo.toml"]);
    git(dir, &["commit", "-q", "-m", "one"]);
    git(dir, &["rev-parse", "HEAD"])
}

fn commit_of(dir: &Path) -> Option<String> {
    git_head::head(dir).map(|h| h.commit)
}

#[test]
fn the_commit_is_read_from_a_branch_a_packed_ref_a_detached_head_and_a_worktree() {
    let tmp = tempfile::tempdir().unwrap();
    let main = tmp.path().join("main");
    let first = repo_with_a_commit(&main);
    // From the checkout and from a package directory inside it.
    std::fs::create_dir_all(main.join("sub/pkg")).unwrap();
    assert_eq!(commit_of(&main).as_deref(), Some(&first[..12]));
    assert_eq!(
        commit_of(&main.join("sub/pkg")).as_deref(),
        Some(&first[..12])
    );

    // The branch only in packed-refs (after `git gc` or `pack-refs`).
    git(&main, &["pack-refs", "--all"]);
    assert!(!main.join(".git/refs/heads/main").exists());
    let packed = git_head::head(&main).unwrap();
    assert_eq!(packed.commit, first[..12]);
    // The next commit writes refs/heads/main anew: its directory is watched, so the build
    // script runs again then (a stale commit would be a wrong one).
    assert!(
        packed.watch.contains(&main.join(".git/refs/heads")),
        "{:?}",
        packed.watch
    );

    // A second commit, then a detached HEAD on the first.
    std::fs::write(main.join("b"), "b").unwrap();
    git(&main, &["add", "b"]);
    git(&main, &["commit", "-q", "-m", "two"]);
    let second = git(&main, &["rev-parse", "HEAD"]);
    let loose = git_head::head(&main).unwrap();
    assert_eq!(loose.commit, second[..12]);
    assert!(loose.watch.contains(&main.join(".git/refs/heads/main")));
    assert!(loose.watch.contains(&main.join(".git/HEAD")));
    git(&main, &["checkout", "-q", "--detach", &first]);
    assert_eq!(commit_of(&main).as_deref(), Some(&first[..12]));

    // A worktree (a `.git` file naming its git dir) on its own branch.
    let wt = tmp.path().join("wt");
    git(
        &main,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "side",
            wt.to_str().unwrap(),
            &second,
        ],
    );
    assert!(wt.join(".git").is_file());
    assert_eq!(commit_of(&wt).as_deref(), Some(&second[..12]));

    // A copy without `.git` (a source tarball): no commit; WXCARDD_COMMIT must say it.
    let copy = tmp.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(main.join("Cargo.toml"), copy.join("Cargo.toml")).unwrap();
    assert_eq!(commit_of(&copy), None);
}

/// A checkout owned by another user, as when a package is built by root (or a build
/// container's user) from a developer's clone: git refuses it, the commit is still read.
#[test]
fn a_checkout_owned_by_another_user_still_gives_its_commit() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test changes a checkout's owner: run it as root (as .ci/run does)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let main = tmp.path().join("main");
    let first = repo_with_a_commit(&main);
    let nobody = nix::unistd::Uid::from_raw(65534);
    for entry in walk(&main) {
        nix::unistd::chown(
            &entry,
            Some(nobody),
            Some(nix::unistd::Gid::from_raw(65534)),
        )
        .unwrap();
    }
    assert_eq!(commit_of(&main).as_deref(), Some(&first[..12]));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The binaries built here say the commit of this checkout in `--version` (the .deb's are
/// checked the same way by .ci/check-system-files).
#[test]
fn the_binaries_name_the_commit_of_this_checkout() {
    let expected = match std::env::var("WXCARDD_COMMIT") {
        Ok(set) if !set.is_empty() => set,
        _ => git_head::head(Path::new(env!("CARGO_MANIFEST_DIR")))
            .map(|h| h.commit)
            .unwrap_or_else(|| "unknown".into()),
    };
    for (bin, name) in [
        (env!("CARGO_BIN_EXE_wxcardd"), "wxcardd"),
        (env!("CARGO_BIN_EXE_wxcardctl"), "wxcardctl"),
    ] {
        let out = Command::new(bin).arg("--version").output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{name} {} (commit {expected})", env!("CARGO_PKG_VERSION"))
        );
    }
}
