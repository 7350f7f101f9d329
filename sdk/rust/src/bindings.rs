//! The two `wit_bindgen::generate!` calls of the SDK, one per world, so that
//! plugin crates never write one.
//!
//! Each world's custom section carries its imports only (wit-bindgen's
//! `pub_export_macro`); the exports come with the export macro a plugin
//! invokes. Imports a plugin does not call are dropped when the component
//! is made, but a world compiled in still unifies its WASI versions and
//! types into the component: hence one cargo feature per world.

/// The `transformer` world: `state`, `collections` and `log`.
#[cfg(feature = "transformer")]
pub mod transformer {
    wit_bindgen::generate!({
        path: "wit",
        world: "transformer",
        pub_export_macro: true,
        default_bindings_module: "switchyard_plugin::__bindings::transformer",
        // So that plugins' native tests can compare actions and errors.
        additional_derives: [PartialEq, Eq],
        export_macro_name: "export",
    });
}

/// The `producer` world: `state`, `settings`, `log`, `publish` and
/// `wasi:http`.
#[cfg(feature = "producer")]
pub mod producer {
    wit_bindgen::generate!({
        path: "wit",
        world: "producer",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "switchyard_plugin::__bindings::producer",
        export_macro_name: "export",
    });
}

#[cfg(all(feature = "producer", not(feature = "transformer")))]
pub use producer::switchyard::plugin::{log, state};
/// The `state` and `log` imports, which both worlds have, from whichever
/// world is compiled (the transformer's when both are).
#[cfg(feature = "transformer")]
pub use transformer::switchyard::plugin::{log, state};
