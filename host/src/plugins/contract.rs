//! The plugin contract shipped inside the binary: the WIT package of `wit/`
//! (its WASI deps included) exactly as the host was built with it
//! (embedded by `build.rs`), written out by `switchyard plugin wit`, so an
//! author outside this repository builds against what the host loads.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Every file of `wit/`: its path below `wit/` (with `/`) and its bytes.
pub const WIT_FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/wit_files.rs"));

/// What [`write_wit`] did.
#[derive(Debug, Default)]
pub struct Written {
    /// The files written, below the folder.
    pub files: Vec<PathBuf>,
    /// `.wit` files already in the folder that are not part of this host's
    /// package: left alone, but a WIT parser reads them too.
    pub foreign: Vec<PathBuf>,
}

/// Writes the WIT package into `dir` (created if missing), replacing the
/// files of the same names.
pub fn write_wit(dir: &Path) -> Result<Written> {
    let mut written = Written::default();
    for (relative, bytes) in WIT_FILES {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the folder {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        written.files.push(PathBuf::from(relative));
    }
    let mut found = Vec::new();
    list_files(dir, dir, &mut found)?;
    written.foreign = found
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "wit") && !written.files.contains(f))
        .collect();
    Ok(written)
}

/// Every file under `dir`, relative to `root`, sorted.
pub fn list_files(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            list_files(root, &path, files)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            files.push(relative.to_owned());
        }
    }
    files.sort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's `wit/`.
    fn repo_wit() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit")
    }

    #[test]
    fn the_written_package_is_the_repository_wit_folder_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("wit");
        let written = write_wit(&out).unwrap();
        assert!(written.foreign.is_empty());
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        list_files(&out, &out, &mut ours).unwrap();
        list_files(&repo_wit(), &repo_wit(), &mut theirs).unwrap();
        assert_eq!(ours, theirs, "files differ: a WIT file is not embedded");
        assert!(ours.iter().any(|f| f.starts_with("deps")), "{ours:?}");
        for file in &theirs {
            let a = std::fs::read(out.join(file)).unwrap();
            let b = std::fs::read(repo_wit().join(file)).unwrap();
            assert!(a == b, "{} differs from the repository's", file.display());
        }
    }

    #[test]
    fn writing_over_an_older_package_replaces_its_files_and_names_strangers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("worlds.wit"), "stale").unwrap();
        std::fs::write(dir.path().join("mine.wit"), "package me:mine;").unwrap();
        let written = write_wit(dir.path()).unwrap();
        let worlds = std::fs::read_to_string(dir.path().join("worlds.wit")).unwrap();
        assert!(worlds.contains("world transformer"));
        assert_eq!(written.foreign, [PathBuf::from("mine.wit")]);
    }
}
