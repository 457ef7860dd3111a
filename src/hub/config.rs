//! The hub's configuration file (TOML): where the store lives, how to reach Graph and the
//! CRM, the contact settings (SPEC C3, C6, C8, C10) and mailbox ↔ CRM user overrides (A1).
//! Secrets may come from the environment instead of the file. Every value has a default but
//! the endpoints and credentials; an unknown key is an error naming it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::engine::matching::InitialMatch;
use crate::engine::Guard;

/// What `synchub sync --config FILE` reads.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub store: StoreConfig,
    pub graph: GraphSection,
    pub crm: CrmSection,
    #[serde(default)]
    pub contacts: ContactSettings,
    /// Calendar sync (SPEC K1–K12).
    #[serde(default)]
    pub calendar: crate::calendar::CalendarSettings,
    /// The scheduler (SPEC A2–A4).
    #[serde(default)]
    pub schedule: super::scheduler::Schedule,
    /// The HTTP API (`synchub serve`).
    #[serde(default)]
    pub api: ApiSection,
    /// Mailbox (address, UPN or Graph id) → CRM user id, where matching by address is not
    /// right (SPEC A1).
    #[serde(default)]
    pub users: BTreeMap<String, String>,
}

/// The HTTP API: where it listens and its tokens (SHA-256 digests, never the tokens).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub tokens: Vec<crate::api::TokenConfig>,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection { listen: default_listen(), tokens: Vec::new() }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

/// Where sled keeps the store.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "default_store")]
    pub path: PathBuf,
    /// MiB of users' contact state kept in memory between runs (0: none); users who do not
    /// fit are loaded from the store again at their next run with changes.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { path: default_store(), cache_mib: default_cache_mib() }
    }
}

fn default_cache_mib() -> usize {
    super::DEFAULT_CACHE_MIB
}

fn default_store() -> PathBuf {
    PathBuf::from("synchub-data/store")
}

/// Microsoft Graph.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSection {
    #[serde(default = "default_authority")]
    pub authority: String,
    pub tenant: String,
    pub client_id: String,
    /// Or `SYNCHUB_GRAPH_CLIENT_SECRET`.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Or a file holding it (e.g. a mounted secret).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default = "default_graph_base")]
    pub base: String,
    /// `Prefer: odata.maxpagesize`.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

fn default_authority() -> String {
    synchub_connectors::graph::auth::DEFAULT_AUTHORITY.to_string()
}

fn default_graph_base() -> String {
    "https://graph.microsoft.com/v1.0".to_string()
}

fn default_page_size() -> u32 {
    500
}

/// The CRM.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmSection {
    pub base: String,
    /// Or `SYNCHUB_CRM_TOKEN`.
    #[serde(default)]
    pub token: Option<String>,
    /// Or a file holding it.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// What happens to a contact renamed to a different person (SPEC C10, X4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReusePolicy {
    /// The old person leaves the user's CRM list; the new one is a new CRM contact.
    #[default]
    Split,
    /// The CRM contact follows the Outlook item (the original product).
    Follow,
}

/// The contact settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactSettings {
    #[serde(default)]
    pub initial_match: InitialMatch,
    #[serde(default)]
    pub reuse_policy: ReusePolicy,
    /// Whether Outlook notes travel (SPEC C8).
    #[serde(default = "yes")]
    pub sync_notes: bool,
    /// Users (CRM user id or mailbox address) whose contact sync is off (SPEC C6).
    #[serde(default)]
    pub disabled_users: Vec<String>,
    /// The mass-change guard's thresholds (SPEC X5).
    #[serde(default)]
    pub guard: Guard,
}

impl Default for ContactSettings {
    fn default() -> Self {
        ContactSettings {
            initial_match: InitialMatch::Identity,
            reuse_policy: ReusePolicy::Split,
            sync_notes: true,
            disabled_users: Vec::new(),
            guard: Guard::default(),
        }
    }
}

fn yes() -> bool {
    true
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Missing(String),
}

/// A documented example configuration (`synchub default-config`).
pub const EXAMPLE: &str = r#"# synchub configuration. Unknown keys are refused by name; every key but the
# endpoints and credentials has the default shown.

[store]
path = "synchub-data/store"            # sled, made if missing; one process at a time
cache_mib = 300                        # users' state kept in memory between runs (0: none)

[graph]                                # Microsoft Graph (an Entra app registration)
authority = "https://login.microsoftonline.com"
tenant = "contoso.onmicrosoft.com"
client_id = "00000000-0000-0000-0000-000000000000"
# client_secret = "..."                # or client_secret_file = "/run/secrets/graph", or SYNCHUB_GRAPH_CLIENT_SECRET
base = "https://graph.microsoft.com/v1.0"
page_size = 500

[crm]
base = "https://crm.firm.example"
# token = "..."                        # or token_file = "/run/secrets/crm", or SYNCHUB_CRM_TOKEN

[contacts]
initial_match = "identity"             # or "none" (SPEC C3)
reuse_policy = "split"                 # or "follow" (SPEC C10)
sync_notes = true                      # SPEC C8
disabled_users = []                    # CRM user ids or addresses whose contact sync is off (SPEC C6)
guard = { max_changes = 10, max_percent = 10 }   # the mass-change guard (SPEC X5)

[calendar]
enabled = false                        # SPEC K1: once on in the store, it stays on
category = "CRM"                       # the Outlook category that flags a meeting (K2)
held_window_days = 7                   # K10
horizon_days = 365

[schedule]
interval_secs = 300
concurrency = 4
retries = 3
backoff_secs = 5
max_wait_secs = 300

[api]
listen = "127.0.0.1:8080"
# [[api.tokens]]                       # tokens as SHA-256 hex digests: printf %s "$TOKEN" | sha256sum
# sha256 = "..."
# role = "admin"                       # "admin", "service", or "user" with user = "<CRM user id>"

[users]                                # mailbox -> CRM user id, where the addresses differ
# "j.doe@firm.example" = "u-1017"
"#;

impl Config {
    /// Read and check `path`; secrets missing from the file are taken from the
    /// environment (`SYNCHUB_GRAPH_CLIENT_SECRET`, `SYNCHUB_CRM_TOKEN`).
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.into(), message },
            other => other,
        })
    }

    /// Parse a configuration's text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: PathBuf::new(), message: e.to_string() })?;
        let read = |name: &str, path: &PathBuf| -> Result<String, ConfigError> {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Missing(format!("{name} `{}` cannot be read: {e}", path.display())))?;
            Ok(text.trim().to_string())
        };
        if config.graph.client_secret.is_none() {
            config.graph.client_secret = match &config.graph.client_secret_file {
                Some(path) => Some(read("graph.client_secret_file", path)?),
                None => std::env::var("SYNCHUB_GRAPH_CLIENT_SECRET").ok(),
            };
        }
        if config.crm.token.is_none() {
            config.crm.token = match &config.crm.token_file {
                Some(path) => Some(read("crm.token_file", path)?),
                None => std::env::var("SYNCHUB_CRM_TOKEN").ok(),
            };
        }
        if config.graph.client_secret.is_none() {
            return Err(ConfigError::Missing(
                "graph.client_secret is not set (in the file, graph.client_secret_file or SYNCHUB_GRAPH_CLIENT_SECRET)"
                    .into(),
            ));
        }
        if config.crm.token.is_none() {
            return Err(ConfigError::Missing(
                "crm.token is not set (in the file, crm.token_file or SYNCHUB_CRM_TOKEN)".into(),
            ));
        }
        config.calendar.validate().map_err(|message| ConfigError::Parse { path: PathBuf::new(), message })?;
        if config.api.listen.parse::<std::net::SocketAddr>().is_err() {
            let message =
                format!("api.listen `{}` is not an address and port (e.g. 127.0.0.1:8080)", config.api.listen);
            return Err(ConfigError::Parse { path: PathBuf::new(), message });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[graph]
tenant = "firm"
client_id = "app"
client_secret = "s"
[crm]
base = "http://crm"
token = "t"
"#;

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.contacts.initial_match, InitialMatch::Identity);
        assert_eq!(c.contacts.reuse_policy, ReusePolicy::Split);
        assert!(c.contacts.sync_notes);
        assert_eq!(c.graph.base, "https://graph.microsoft.com/v1.0");
        assert_eq!(c.store.path, PathBuf::from("synchub-data/store"));
        assert!(!c.calendar.enabled, "calendar sync is off by default (SPEC K1)");
        assert_eq!(c.calendar.category, "CRM");
        assert_eq!(c.calendar.held_window_days, 7);
    }

    #[test]
    fn the_example_configuration_reads_and_secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let (g, c) = (dir.path().join("g"), dir.path().join("c"));
        std::fs::write(&g, "graph-secret\n").unwrap();
        std::fs::write(&c, "crm-token").unwrap();
        let text = EXAMPLE
            .replace("# client_secret = \"...\"", &format!("client_secret_file = {:?}", g.display().to_string()))
            .replace("# token = \"...\"", &format!("token_file = {:?}", c.display().to_string()));
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.graph.client_secret.as_deref(), Some("graph-secret"));
        assert_eq!(config.crm.token.as_deref(), Some("crm-token"));
        assert_eq!(config.schedule.interval_secs, 300);
        let missing = text.replace(&g.display().to_string(), "/nonexistent/secret");
        assert!(Config::parse(&missing).unwrap_err().to_string().contains("graph.client_secret_file"));
    }

    #[test]
    fn calendar_values_are_checked_by_name() {
        let bad = format!("{MINIMAL}[calendar]\nheld_window_days = -1\n");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("calendar.held_window_days"), "{e}");
        let bad = format!("{MINIMAL}[calendar]\ncategory = \" \"\n");
        assert!(Config::parse(&bad).unwrap_err().to_string().contains("calendar.category"));
        let typo = format!("{MINIMAL}[calendar]\nenable = true\n");
        assert!(Config::parse(&typo).unwrap_err().to_string().contains("enable"));
    }

    #[test]
    fn bad_files_are_named_errors() {
        let typo = MINIMAL.replace("[crm]", "[contacts]\ninitial_mach = \"none\"\n[crm]");
        let e = Config::parse(&typo).unwrap_err().to_string();
        assert!(e.contains("initial_mach"), "{e}");
        let bad = MINIMAL.replace("[crm]", "[contacts]\nreuse_policy = \"merge\"\n[crm]");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("merge"), "{e}");
    }
}
