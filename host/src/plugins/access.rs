//! What the configuration grants plugins beyond the sandbox: the origins a
//! plugin may send HTTP requests to (`--grant crm-producer=http://crm:8001`)
//! and the settings it may read (`--plugin-setting crm-producer.base-url=...`).
//! Everything not granted is refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio_rustls::rustls::ClientConfig;

/// `scheme://host:port`, the unit of an HTTP grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Parses `http://host[:port]` (a trailing `/` is allowed, a path is not).
    pub fn parse(text: &str) -> Result<Self> {
        let (scheme, rest) = text
            .split_once("://")
            .with_context(|| format!("{text:?} is not an origin like http://host:port"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => bail!("{text:?}: only http and https origins can be granted"),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
            bail!("{text:?} must be scheme://host[:port], without a path or user");
        }
        let (host, port) = match authority.rsplit_once(':') {
            // (An IPv6 literal must be bracketed; its colons are not ports.)
            Some((host, port)) if !port.ends_with(']') => (
                host,
                port.parse()
                    .with_context(|| format!("{text:?} has an invalid port"))?,
            ),
            _ => (authority, default_port),
        };
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether a request to `scheme` and `authority` (`host[:port]`) goes
    /// to this origin.
    pub fn admits(&self, scheme: &str, authority: &str) -> bool {
        let other = match Origin::parse(&format!("{scheme}://{authority}")) {
            Ok(other) => other,
            Err(_) => return false,
        };
        *self == other
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// What one plugin is granted.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub origins: Vec<Origin>,
    pub settings: BTreeMap<String, String>,
    /// How `https://` origins are verified (`None` refuses https).
    pub tls: Option<Arc<ClientConfig>>,
}

/// Grants by plugin name, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Access {
    by_plugin: HashMap<String, Grants>,
    tls: Option<Arc<ClientConfig>>,
}

impl Access {
    /// Reads `<plugin>=<origin>` grants and `<plugin>.<key>=<value>`
    /// settings; a malformed entry is an error naming it.
    pub fn from_config(grants: &[String], settings: &[String]) -> Result<Self> {
        let mut access = Self::default();
        for entry in grants.iter().filter(|e| !e.trim().is_empty()) {
            let (plugin, origin) = entry
                .split_once('=')
                .with_context(|| format!("grant {entry:?} must be <plugin>=<origin>"))?;
            let origin =
                Origin::parse(origin.trim()).with_context(|| format!("in grant {entry:?}"))?;
            access.entry(plugin.trim()).origins.push(origin);
        }
        for entry in settings.iter().filter(|e| !e.trim().is_empty()) {
            let parsed = entry
                .split_once('=')
                .and_then(|(name, value)| Some((name.split_once('.')?, value)));
            let Some(((plugin, key), value)) = parsed else {
                bail!("plugin setting {entry:?} must be <plugin>.<key>=<value>");
            };
            access
                .entry(plugin.trim())
                .settings
                .insert(key.trim().to_owned(), value.trim().to_owned());
        }
        Ok(access)
    }

    /// Lets plugins reach their granted `https://` origins, verified with `tls`.
    pub fn with_tls(mut self, tls: Arc<ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    fn entry(&mut self, plugin: &str) -> &mut Grants {
        self.by_plugin.entry(plugin.to_owned()).or_default()
    }

    /// Each plugin the configuration names, with its settings.
    pub fn settings(&self) -> impl Iterator<Item = (&str, &BTreeMap<String, String>)> {
        self.by_plugin
            .iter()
            .map(|(plugin, grants)| (plugin.as_str(), &grants.settings))
    }

    /// What `plugin` is granted (nothing, if the configuration names it not).
    pub fn for_plugin(&self, plugin: &str) -> Grants {
        let mut grants = self.by_plugin.get(plugin).cloned().unwrap_or_default();
        grants.tls.clone_from(&self.tls);
        grants
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_default_ports_and_compare_exactly() {
        let crm = Origin::parse("http://CRM:8001/").unwrap();
        assert_eq!(crm.to_string(), "http://crm:8001");
        assert!(crm.admits("http", "crm:8001"));
        assert!(!crm.admits("http", "crm:8002"));
        assert!(!crm.admits("https", "crm:8001"));
        assert!(!crm.admits("http", "crm.evil:8001"));
        let plain = Origin::parse("http://inventory").unwrap();
        assert!(plain.admits("http", "inventory"));
        assert!(plain.admits("http", "inventory:80"));
        for bad in [
            "crm:8001",
            "ftp://x",
            "http://x/path",
            "http://u@x",
            "http://x:port",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grants_and_settings_are_per_plugin() {
        let access = Access::from_config(
            &["crm-producer=http://crm:8001".into(), " ".into()],
            &["crm-producer.base-url=http://crm:8001".into()],
        )
        .unwrap();
        let crm = access.for_plugin("crm-producer");
        assert_eq!(crm.origins.len(), 1);
        assert_eq!(crm.settings["base-url"], "http://crm:8001");
        assert!(access.for_plugin("merge").origins.is_empty());
        assert!(Access::from_config(&["http://crm:8001".into()], &[]).is_err());
        assert!(Access::from_config(&[], &["base-url=x".into()]).is_err());
    }
}
