//! The commit a checkout is at, read from its `.git` without running git.
//!
//! Why not `git rev-parse`: a package is often built by another user than the one who owns
//! the checkout (root in a build container, `sudo cargo deb` on a developer's clone), and git
//! then refuses the repository ("detected dubious ownership"), so the shipped binary lost its
//! commit. Reading HEAD and the ref it names needs no git and no trust in the repository's
//! config. Used by build.rs and by tests/build_commit.rs (`#[path]`), so the test runs the
//! very code the build does.

use std::path::{Path, PathBuf};

/// The commit a checkout is at and the files whose change can move it.
pub struct GitHead {
    /// The first 12 hex digits of the commit id.
    pub commit: String,
    /// Files and directories to watch (`cargo:rerun-if-changed`), all existing.
    pub watch: Vec<PathBuf>,
}

/// The git directory of the checkout holding `start`: `.git` in it or the nearest parent,
/// a directory or (worktrees, submodules) a file `gitdir: <path>`.
fn git_dir(start: &Path) -> Option<PathBuf> {
    for dir in start.ancestors() {
        let dot_git = dir.join(".git");
        if dot_git.is_dir() {
            return Some(dot_git);
        }
        if dot_git.is_file() {
            let text = std::fs::read_to_string(&dot_git).ok()?;
            return Some(dir.join(text.strip_prefix("gitdir:")?.trim()));
        }
    }
    None
}

/// The id `name` (e.g. `refs/heads/main`) has in a `packed-refs` file.
fn packed(packed_refs: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(packed_refs)
        .ok()?
        .lines()
        .filter(|line| !line.starts_with(['#', '^']))
        .find_map(|line| {
            let (id, refname) = line.split_once(' ')?;
            (refname.trim() == name).then(|| id.to_owned())
        })
}

/// The commit of the checkout holding `start`; `None` outside a git checkout (a source
/// tarball) or when HEAD names a branch with no commit yet.
pub fn head(start: &Path) -> Option<GitHead> {
    let git_dir = git_dir(start)?;
    // A worktree's git dir keeps HEAD; branches and packed-refs are in the common dir.
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(rel) => git_dir.join(rel.trim()),
        Err(_) => git_dir.clone(),
    };
    let packed_refs = common.join("packed-refs");
    let mut watch = vec![git_dir.join("HEAD"), packed_refs.clone()];
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let id = match head.trim().strip_prefix("ref:") {
        None => head.trim().to_owned(),
        Some(name) => {
            let name = name.trim();
            let loose = [git_dir.join(name), common.join(name)]
                .into_iter()
                .find(|p| p.is_file());
            match loose {
                Some(path) => {
                    let id = std::fs::read_to_string(&path).ok()?.trim().to_owned();
                    watch.push(path);
                    id
                }
                None => {
                    // Packed: the next commit writes a loose ref file that does not exist
                    // yet, so its directory is watched (a missing file would re-run the
                    // build script on every build).
                    if let Some(dir) = Path::new(name).parent() {
                        watch.push(common.join(dir));
                    }
                    packed(&packed_refs, name)?
                }
            }
        }
    };
    let is_id = id.len() >= 40 && id.bytes().all(|b| b.is_ascii_hexdigit());
    is_id.then(|| GitHead {
        commit: id[..12].to_ascii_lowercase(),
        watch: watch.into_iter().filter(|p| p.exists()).collect(),
    })
}
