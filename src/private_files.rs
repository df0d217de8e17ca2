//! The data directory and what the daemon writes there are for its own user alone: the SQLite
//! file holds the key that seals personal links and every host token's hash, the API token
//! file grants every power. Directories are made 0700 and files 0600; ones found looser at
//! start are left as the administrator set them, with a warning.

use std::io;
use std::path::Path;

/// Makes `dir` and its missing parents, readable by this user alone.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Makes an empty `file`, readable by this user alone, unless it exists. (SQLite gives its
/// journal files the database file's mode, so they follow.)
pub fn create_file(file: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(file).map(|_| ())
}

/// Whether other users may read or enter `path` (its mode grants the group or others anything).
pub fn is_shared(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Warns when `path` is open to other users.
pub fn warn_if_shared(path: &Path) {
    if is_shared(path) {
        tracing::warn!(path = %path.display(), "readable by other users of this machine; it holds secrets: chmod go= it");
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_private_and_looser_ones_found() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        let file = dir.join("f");
        create_file(&file).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
        assert!(!is_shared(&dir) && !is_shared(&file));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(is_shared(&file));
        create_file(&file).unwrap();
        assert_eq!(mode(&file), 0o644, "an existing file keeps the mode its owner gave it");
    }
}
