//! The files a deploy of a directory publishes: every regular file under it,
//! and whatever its symbolic links point to. A link whose target is inside
//! the directory adds nothing to search (the walk reaches every file and
//! directory inside under its own name, and never enters a link, so a cycle
//! cannot hang it); a link whose target is outside is reported, since the
//! deploy would publish what it points to, which the scan cannot vouch for.

use std::path::{Path, PathBuf};

/// A file to search.
pub(super) struct File {
    /// Where to read it.
    pub(super) path: PathBuf,
    /// Its path relative to the root, `/`-separated.
    pub(super) shown: String,
}

/// A symbolic link under the root whose target is outside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OutsideLink {
    /// The link, as [`File::shown`].
    pub(super) link: String,
    /// Where it points (canonical path).
    pub(super) target: PathBuf,
}

/// What [`walk`] found, each list sorted by path.
pub(super) struct Walk {
    pub(super) files: Vec<File>,
    pub(super) outside: Vec<OutsideLink>,
}

/// Walks `root`.
pub(super) fn walk(root: &Path) -> std::io::Result<Walk> {
    let root = root.canonicalize()?;
    let mut walk = Walk { files: Vec::new(), outside: Vec::new() };
    let mut dirs: Vec<(PathBuf, String)> = vec![(root.clone(), String::new())];
    while let Some((dir, shown_dir)) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let shown = if shown_dir.is_empty() { name } else { format!("{shown_dir}/{name}") };
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push((path, shown));
            } else if kind.is_file() {
                walk.files.push(File { path, shown });
            } else if kind.is_symlink() {
                // A dangling link publishes nothing.
                if let Ok(target) = path.canonicalize()
                    && !target.starts_with(&root)
                {
                    walk.outside.push(OutsideLink { link: shown, target });
                }
            }
        }
    }
    walk.files.sort_by(|a, b| a.shown.cmp(&b.shown));
    walk.outside.sort_by(|a, b| a.link.cmp(&b.link));
    Ok(walk)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn every_file_is_walked_once_links_outside_are_reported_and_cycles_end() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = tmp.path().join("dist");
        std::fs::create_dir_all(root.join("assets/deep")).unwrap();
        std::fs::write(root.join("index.html"), "x").unwrap();
        std::fs::write(root.join("assets/deep/app.js"), "x").unwrap();
        std::fs::write(outside.path().join(".env"), "x").unwrap();
        symlink(root.join("assets"), root.join("static")).unwrap(); // a second name for a directory
        symlink(&root, root.join("assets/loop")).unwrap(); // a cycle
        symlink(root.join("index.html"), root.join("home.html")).unwrap();
        symlink(outside.path().join(".env"), root.join("env.txt")).unwrap();
        symlink(outside.path(), root.join("assets/up")).unwrap();
        symlink(root.join("missing"), root.join("dangling")).unwrap();

        let walk = walk(&root).unwrap();
        let files: Vec<&str> = walk.files.iter().map(|f| f.shown.as_str()).collect();
        assert_eq!(files, ["assets/deep/app.js", "index.html"]);
        let outside_links: Vec<(&str, PathBuf)> =
            walk.outside.iter().map(|l| (l.link.as_str(), l.target.clone())).collect();
        let out = outside.path().canonicalize().unwrap();
        assert_eq!(outside_links, [("assets/up", out.clone()), ("env.txt", out.join(".env"))]);
    }

    #[test]
    fn a_root_reached_through_a_link_is_walked() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        std::fs::write(tmp.path().join("real/a.txt"), "x").unwrap();
        symlink(tmp.path().join("real"), tmp.path().join("dist")).unwrap();
        let walk = walk(&tmp.path().join("dist")).unwrap();
        assert_eq!(walk.files.iter().map(|f| f.shown.as_str()).collect::<Vec<_>>(), ["a.txt"]);
    }
}
