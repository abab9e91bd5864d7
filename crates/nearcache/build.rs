//! Build script: records the commit the binary is built from as `NEARCACHE_COMMIT`, for
//! `nearcache_build_info` and `--version`. A build outside a git checkout (a source tarball, a
//! container build without `.git`) says `unknown`, or what the `NEARCACHE_COMMIT` environment
//! variable says. Never fails the build.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The absolute path of `name` inside the git directory.
fn git_path(name: &str) -> Option<String> {
    git(&["rev-parse", "--path-format=absolute", "--git-path", name])
}

fn main() {
    println!("cargo:rerun-if-env-changed=NEARCACHE_COMMIT");
    let commit = std::env::var("NEARCACHE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Rebuilt when HEAD moves: HEAD itself (a checkout) and the branch it points at (a commit).
    // Only files that exist are named: cargo reruns the script at every build for a missing one
    // (a branch kept in packed-refs).
    let mut watched = vec![git_path("HEAD")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git_path(&branch));
    }
    for path in watched.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rustc-env=NEARCACHE_COMMIT={commit}");
}
