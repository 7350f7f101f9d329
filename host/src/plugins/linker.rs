//! One wasmtime linker per world: what a transformer and a producer can
//! import. A component's world is read from its exports, and it is linked
//! against that world's linker only, so a transformer cannot import a
//! producer's `publish` or `settings`.
//!
//! Both linkers carry the WASI 0.2 interfaces behind the deny-all context
//! of [`super::wasi`], and `wasi:http/outgoing-handler`: a producer's
//! requests go to its granted origins, a transformer's are all refused.

use anyhow::{Context, Result, bail};
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker};

use super::bindings::{self, HostState, Transformer};

/// The worlds of `wit/worlds.wit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginWorld {
    Transformer,
    Producer,
}

impl PluginWorld {
    /// The world's name, as `GET /plugins` and `plugin check` show it.
    pub fn name(self) -> &'static str {
        match self {
            PluginWorld::Transformer => super::TRANSFORMER_WORLD,
            PluginWorld::Producer => super::PRODUCER_WORLD,
        }
    }

    /// The world a component implements, from the functions it exports:
    /// `handle` makes a transformer, `poll` a producer.
    pub fn of(component: &Component, engine: &Engine) -> Result<Self> {
        let exports: Vec<(String, bool)> = component
            .component_type()
            .exports(engine)
            .map(|(name, item)| {
                let func = matches!(item.ty, ComponentItem::ComponentFunc(_));
                (name.to_owned(), func)
            })
            .collect();
        let has = |name: &str| exports.iter().any(|(e, func)| e == name && *func);
        match (has("handle"), has("poll")) {
            (true, false) => Ok(PluginWorld::Transformer),
            (false, true) => Ok(PluginWorld::Producer),
            _ => bail!(
                "does not implement the world switchyard:plugin/transformer@0.1.x or producer@0.1.x: \
                 it exports [{}], a transformer exports describe, handle and view, a producer \
                 describe and poll",
                exports
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The linker of each world.
pub struct WorldLinkers {
    transformer: Linker<HostState>,
    producer: Linker<HostState>,
}

impl WorldLinkers {
    pub fn new(engine: &Engine) -> Result<Self> {
        Ok(Self {
            transformer: transformer(engine)?,
            producer: producer(engine)?,
        })
    }

    pub fn for_world(&self, world: PluginWorld) -> &Linker<HostState> {
        match world {
            PluginWorld::Transformer => &self.transformer,
            PluginWorld::Producer => &self.producer,
        }
    }
}

/// WASI 0.2 and `wasi:http`, shared by both worlds.
fn wasi(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(anyhow::Error::from)
        .context("linking WASI")?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)
        .map_err(anyhow::Error::from)
        .context("linking wasi:http")?;
    Ok(linker)
}

/// `state`, `collections` and `log`.
fn transformer(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = wasi(engine)?;
    Transformer::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// `state`, `settings`, `log` and `publish`.
fn producer(engine: &Engine) -> Result<Linker<HostState>> {
    use bindings::producer::switchyard::plugin::{publish, settings};
    use bindings::switchyard::plugin::{log, state, types};
    let mut linker = wasi(engine)?;
    types::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    state::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    log::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    settings::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    publish::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok(linker)
}
