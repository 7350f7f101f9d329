//! What `switchyard plugin new` writes into a project besides its
//! templates: the guest SDKs (`sdk/rust`, crate `switchyard-plugin`;
//! `sdk/python`; `sdk/js` with its pinned toolchain's package files) and
//! the WIT package (`wit/`, WASI deps included), as this binary was built
//! with them, so that a project outside this repository builds against
//! exactly the contract the host loads.
//!
//! The lists are checked against the folders by this module's tests: a new
//! file in `sdk/` or `wit/` must be added here.

/// `sdk/rust`, by path within it (its `wit/` is [`WIT`]).
pub const SDK_RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../sdk/rust/Cargo.toml")),
    ("README.md", include_str!("../../../sdk/rust/README.md")),
    (
        "src/actions.rs",
        include_str!("../../../sdk/rust/src/actions.rs"),
    ),
    (
        "src/bindings.rs",
        include_str!("../../../sdk/rust/src/bindings.rs"),
    ),
    (
        "src/collections.rs",
        include_str!("../../../sdk/rust/src/collections.rs"),
    ),
    ("src/http.rs", include_str!("../../../sdk/rust/src/http.rs")),
    ("src/lib.rs", include_str!("../../../sdk/rust/src/lib.rs")),
    ("src/log.rs", include_str!("../../../sdk/rust/src/log.rs")),
    (
        "src/producer.rs",
        include_str!("../../../sdk/rust/src/producer.rs"),
    ),
    (
        "src/settings.rs",
        include_str!("../../../sdk/rust/src/settings.rs"),
    ),
    (
        "src/state.rs",
        include_str!("../../../sdk/rust/src/state.rs"),
    ),
    (
        "src/tests.rs",
        include_str!("../../../sdk/rust/src/tests.rs"),
    ),
    (
        "src/transformer.rs",
        include_str!("../../../sdk/rust/src/transformer.rs"),
    ),
];

/// `sdk/python`, by path within it (the `switchyard_plugin` package).
pub const SDK_PYTHON: &[(&str, &str)] = &[
    (".gitignore", include_str!("../../../sdk/python/.gitignore")),
    (
        "switchyard_plugin/__init__.py",
        include_str!("../../../sdk/python/switchyard_plugin/__init__.py"),
    ),
];

/// `sdk/js`, by path within it: the library and the toolchain's pins.
pub const SDK_JS: &[(&str, &str)] = &[
    (
        "switchyard-plugin.js",
        include_str!("../../../sdk/js/switchyard-plugin.js"),
    ),
    (
        "toolchain/package.json",
        include_str!("../../../sdk/js/toolchain/package.json"),
    ),
    (
        "toolchain/package-lock.json",
        include_str!("../../../sdk/js/toolchain/package-lock.json"),
    ),
];

/// `wit/`, by path within it.
pub const WIT: &[(&str, &str)] = &[
    (
        "collections.wit",
        include_str!("../../../wit/collections.wit"),
    ),
    ("log.wit", include_str!("../../../wit/log.wit")),
    ("publish.wit", include_str!("../../../wit/publish.wit")),
    ("settings.wit", include_str!("../../../wit/settings.wit")),
    ("state.wit", include_str!("../../../wit/state.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("worlds.wit", include_str!("../../../wit/worlds.wit")),
    (
        "deps/cli/cli.wit",
        include_str!("../../../wit/deps/cli/cli.wit"),
    ),
    (
        "deps/clocks/clocks.wit",
        include_str!("../../../wit/deps/clocks/clocks.wit"),
    ),
    (
        "deps/filesystem/filesystem.wit",
        include_str!("../../../wit/deps/filesystem/filesystem.wit"),
    ),
    (
        "deps/http/http.wit",
        include_str!("../../../wit/deps/http/http.wit"),
    ),
    (
        "deps/io/io.wit",
        include_str!("../../../wit/deps/io/io.wit"),
    ),
    (
        "deps/random/random.wit",
        include_str!("../../../wit/deps/random/random.wit"),
    ),
    (
        "deps/sockets/sockets.wit",
        include_str!("../../../wit/deps/sockets/sockets.wit"),
    ),
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every file under `dir` (relative, with `/`), skipping `skip`.
    fn files(root: &Path, dir: &Path, skip: &[&str], out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if skip.contains(&relative.as_str()) {
                continue;
            }
            if path.is_dir() {
                files(root, &path, skip, out);
            } else {
                out.push(relative);
            }
        }
    }

    fn listed(list: &[(&str, &str)]) -> Vec<String> {
        let mut names: Vec<String> = list.iter().map(|(p, _)| p.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn every_file_of_the_sdks_and_the_wit_is_bundled() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let sdk = repo.join("sdk/rust");
        let mut found = Vec::new();
        files(&sdk, &sdk, &["wit", "target", "Cargo.lock"], &mut found);
        found.sort();
        assert_eq!(found, listed(super::SDK_RUST), "update bundle::SDK_RUST");
        let sdk = repo.join("sdk/python");
        let mut found = Vec::new();
        files(&sdk, &sdk, &["switchyard_plugin/__pycache__"], &mut found);
        found.sort();
        assert_eq!(
            found,
            listed(super::SDK_PYTHON),
            "update bundle::SDK_PYTHON"
        );
        let sdk = repo.join("sdk/js");
        let mut found = Vec::new();
        // The SDK's own test reads the repository's conformance transcript:
        // it stays here, not in a user's project.
        files(
            &sdk,
            &sdk,
            &["toolchain/node_modules", "switchyard-plugin.test.mjs"],
            &mut found,
        );
        found.sort();
        assert_eq!(found, listed(super::SDK_JS), "update bundle::SDK_JS");
        let wit = repo.join("wit");
        let mut found = Vec::new();
        files(&wit, &wit, &[], &mut found);
        found.sort();
        assert_eq!(found, listed(super::WIT), "update bundle::WIT");
    }
}
