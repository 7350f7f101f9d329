//! The `Transformer` trait a transformer implements, the macro that
//! exports it, and how it describes itself.

use crate::{Action, Event, HandleError, PluginInfo, ViewPage};

/// A plugin of the `transformer` world: it handles the events its
/// subscriptions match. Export it with [`crate::export_transformer!`].
pub trait Transformer {
    /// Name, version, subscriptions and views (see [`PluginInfo::new`]).
    /// Called once when the plugin is loaded; must not depend on state.
    fn describe() -> PluginInfo;

    /// Handles one event: the actions it causes (none is fine), or
    /// [`crate::reject`] for a bad event, [`crate::retry`] for a transient
    /// failure. A panic counts as a rejection.
    fn handle(event: Event) -> Result<Vec<Action>, HandleError>;

    /// Serves one page of view `name` (one of those `describe` names).
    /// Views read [`crate::collections`] and must not write state. By
    /// default the plugin has no views.
    fn view(name: String, after: Option<String>, limit: u32) -> Result<ViewPage, String> {
        let _ = (after, limit);
        Err(format!("no view {name}: this plugin serves no views"))
    }
}

/// Exports a [`Transformer`] as the component's `transformer` world:
/// `switchyard_plugin::export_transformer!(MyPlugin);`, once per crate.
#[macro_export]
macro_rules! export_transformer {
    ($plugin:ty) => {
        #[doc(hidden)]
        type __SwitchyardTransformer = $plugin;

        // The generated export glue is `unsafe`.
        #[doc(hidden)]
        #[allow(unsafe_code)]
        mod __switchyard_transformer {

            pub struct Exported;

            impl $crate::__bindings::transformer::Guest for Exported {
                fn describe() -> $crate::PluginInfo {
                    <super::__SwitchyardTransformer as $crate::Transformer>::describe()
                }

                fn handle(
                    event: $crate::Event,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::Action>,
                    $crate::HandleError,
                > {
                    <super::__SwitchyardTransformer as $crate::Transformer>::handle(event)
                }

                fn view(
                    name: ::std::string::String,
                    after: ::core::option::Option<::std::string::String>,
                    limit: u32,
                ) -> ::core::result::Result<$crate::ViewPage, ::std::string::String> {
                    <super::__SwitchyardTransformer as $crate::Transformer>::view(name, after, limit)
                }
            }

            $crate::__bindings::transformer::export!(
                Exported with_types_in $crate::__bindings::transformer
            );
        }
    };
}

impl PluginInfo {
    /// A transformer named `name` (lowercase letters, digits and `-`) at
    /// `version`, subscribed to the AMQP binding keys `subscriptions`, with
    /// no views.
    pub fn new(name: &str, version: &str, subscriptions: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            subscriptions: subscriptions.iter().map(|s| (*s).to_owned()).collect(),
            views: Vec::new(),
        }
    }

    /// The same, serving the read-side views `views`.
    pub fn with_views(mut self, views: &[&str]) -> Self {
        self.views = views.iter().map(|s| (*s).to_owned()).collect();
        self
    }
}
