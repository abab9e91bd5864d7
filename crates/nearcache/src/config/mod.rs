//! Configuration: typed settings, each defined once ([`settings`]), read from a TOML file
//! (`--config`), then from environment variables (`NEARCACHE_MAX_MEMORY`), then from flags of
//! the same names, which win; and changed while running by SIGHUP or `NEARCACHE CONFIG SET`
//! for the settings marked live.
//!
//! Every value is parsed once, where it enters, into its type; a bad one is an error that names
//! the setting as the user spelled it (`max_memory` in the file, `--max-memory` as a flag,
//! `max-memory` in `NEARCACHE CONFIG SET`). Owns no running state except [`live::ClientLimits`],
//! the limits sessions read while the proxy runs. Never applies a setting to the running proxy
//! (`control.rs` does).

mod flags;
pub mod lists;
pub mod live;
mod settings;
pub mod tls;
pub mod values;

use std::path::Path;

pub use flags::{env_name, parse_args, Args, Given};
use settings::legacy;
pub use settings::{Config, Setting, SETTINGS};
use tls::TlsAuthClients;
use values::{ReadFrom, TrackingKind};

/// A configuration, and the warnings reading it gave (deprecated spellings).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Sets the setting called `name` (any spelling, old names included) from text. On
    /// success, a deprecation warning if the name or value is spelled the old way. The error
    /// says what is wrong with the value; the caller names the setting.
    pub fn set(&mut self, name: &str, value: &str) -> Result<Option<String>, String> {
        if let Some((setting, value, warning)) = legacy(name, value) {
            (setting.parse)(self, &value)?;
            return Ok(Some(warning));
        }
        if let Some(setting) = secret_file_of(name) {
            (setting.parse)(self, &read_secret(value)?)?;
            return Ok(None);
        }
        let setting = Setting::find(name).ok_or_else(|| unknown(name))?;
        (setting.parse)(self, value)?;
        Ok(None)
    }

    /// The value of the setting called `name`, as text (secrets masked).
    pub fn get(&self, name: &str) -> Option<String> {
        Setting::find(name).map(|s| s.show(self))
    }

    /// Reads a TOML file's settings on top of `self`. Unknown keys are errors.
    pub fn merge_toml(&mut self, text: &str) -> Result<Vec<String>, String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut warnings = Vec::new();
        for (key, value) in &table {
            let as_text = match value {
                toml::Value::Integer(i) => Some(i.to_string()),
                toml::Value::String(s) => Some(s.clone()),
                _ => None,
            };
            let old = as_text.as_deref().and_then(|t| legacy(key, t));
            let result = match old {
                Some((setting, value, warning)) => {
                    warnings.push(warning);
                    (setting.parse)(self, &value)
                }
                None => match SETTINGS.iter().find(|s| s.name == key.as_str()) {
                    Some(setting) => (setting.from_toml)(self, value),
                    None => match (secret_file_of(key), value) {
                        (Some(setting), toml::Value::String(path)) => {
                            read_secret(path).and_then(|text| (setting.parse)(self, &text))
                        }
                        (Some(_), _) => Err("expected a file path".into()),
                        (None, _) => Err(unknown(key)),
                    },
                },
            };
            result.map_err(|why| format!("{key}: {why}"))?;
        }
        Ok(warnings)
    }

    /// Reads a TOML file on top of the defaults and checks the result.
    pub fn from_toml(text: &str) -> Result<Loaded, String> {
        let mut config = Config::default();
        let warnings = config.merge_toml(text)?;
        config.validate()?;
        Ok(Loaded { config, warnings })
    }

    /// Builds the configuration from the command line: the defaults, the `--config` file,
    /// then the flags; then checks it.
    pub fn load(args: &Args) -> anyhow::Result<Loaded> {
        let mut config = Config::default();
        let mut warnings = Vec::new();
        if let Some(path) = &args.config {
            warnings.extend(read_file(&mut config, path)?);
        }
        for given in &args.values {
            let warning = config
                .set(&given.name, &given.value)
                .map_err(|why| anyhow::anyhow!("{}: {why}", given.spelled()))?;
            warnings.extend(warning);
        }
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(Loaded { config, warnings })
    }

    /// Every setting as a TOML file would say it, in `--help` order, secrets masked: what
    /// `--check-config` prints, and a file that loads back to the same configuration (a secret
    /// aside: it would read back as its mask).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for s in SETTINGS {
            let text = s.show(self);
            let value = match s.kind {
                k if k.ends_with(",...") => toml::Value::Array(
                    text.split(',')
                        .filter(|t| !t.is_empty())
                        .map(|t| toml::Value::String(t.to_string()))
                        .collect(),
                ),
                "NUMBER" => text
                    .parse()
                    .map_or_else(|_| toml::Value::String(text), toml::Value::Integer),
                "BOOL" => toml::Value::Boolean(text == "true"),
                _ => toml::Value::String(text),
            };
            out.push_str(&format!("{} = {value}\n", s.name));
        }
        out
    }

    /// Rejects settings that cannot work together, with a message naming them.
    pub fn validate(&self) -> Result<(), String> {
        let at_least_one = [
            ("upstream_conns", self.upstream_conns as u64),
            ("max_clients", self.max_clients as u64),
            ("trace_sample", self.trace_sample),
            (
                "client_query_buffer_limit",
                self.client_query_buffer_limit.0,
            ),
            (
                "client_output_buffer_limit",
                self.client_output_buffer_limit.0,
            ),
        ];
        for (name, v) in at_least_one {
            if v == 0 {
                return Err(format!("{name} must be more than 0"));
            }
        }
        if self.tcp_keepalive.is_some_and(|d| d.as_secs() == 0) {
            return Err("tcp_keepalive must be at least 1s, or 0 for none".into());
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("cache_ttl", self.cache_ttl),
        ] {
            if d.as_millis() == 0 {
                return Err(format!("{name} must be at least 1ms"));
            }
        }
        if self.max_open_conns != 0 && self.max_open_conns <= 2 * self.upstream_conns {
            return Err(format!(
                "max_open_conns ({}) must leave room for dedicated connections beyond the {} \
                 shared ones (2 x upstream_conns), or be 0 for no limit",
                self.max_open_conns,
                2 * self.upstream_conns
            ));
        }
        let prefixes = &self.tracking_prefixes.0;
        match self.tracking {
            TrackingKind::Default if !prefixes.is_empty() => {
                return Err("tracking_prefixes needs tracking = \"bcast\"".into())
            }
            TrackingKind::Bcast if !prefixes.is_empty() => {
                for inc in &self.cache_include_prefixes.0 {
                    if !prefixes.iter().any(|p| inc.starts_with(p.as_str())) {
                        return Err(format!(
                            "cache_include_prefixes entry {inc:?} is outside every tracking prefix"
                        ));
                    }
                }
            }
            _ => {}
        }
        if self.unixsocketperm.0 != 0 && self.unixsocket.is_none() {
            return Err("unixsocketperm needs unixsocket".into());
        }
        if self.upstream_user.is_some() && self.upstream_password.is_none() {
            return Err("upstream_user needs upstream_password".into());
        }
        if let Some(addr) = &self.admin_listen {
            if !addr.is_loopback() && self.admin_token.is_none() {
                return Err(format!(
                    "admin_listen {addr} is reachable from other machines: set admin_token \
                     (NEARCACHE_ADMIN_TOKEN, or admin_token_file), or listen on loopback"
                ));
            }
        }
        match (self.client_auth, &self.requirepass) {
            (values::ClientAuth::Password, None) => {
                return Err("client_auth = \"password\" needs requirepass".into())
            }
            (values::ClientAuth::Password, Some(_)) => {}
            (_, Some(_)) => return Err("requirepass needs client_auth = \"password\"".into()),
            _ => {}
        }
        self.validate_cluster()?;
        if self.listen.is_none() && self.tls_listen.is_none() && self.unixsocket.is_none() {
            return Err(
                "listen, tls_listen and unixsocket are all none: clients could not connect".into(),
            );
        }
        self.validate_tls()
    }

    /// What `cluster = true` does not support yet, refused rather than ignored
    /// (docs/cluster.md).
    fn validate_cluster(&self) -> Result<(), String> {
        if !self.cluster {
            if self.upstream.seeds().len() > 1 {
                return Err(format!(
                    "upstream lists several addresses ({}): that is for cluster = true only",
                    self.upstream
                ));
            }
            if self.read_from == ReadFrom::Replica {
                return Err("read_from = \"replica\" is for cluster = true only".into());
            }
            return Ok(());
        }
        if self.upstream_tls_on() {
            return Err("cluster = true does not support upstream TLS yet".into());
        }
        if self.tracking == TrackingKind::Bcast {
            return Err("cluster = true does not support tracking = \"bcast\" yet".into());
        }
        Ok(())
    }

    /// The TLS settings that only make sense together.
    fn validate_tls(&self) -> Result<(), String> {
        if self.tls_listen.is_some() {
            if self.tls_cert_file.is_none() || self.tls_key_file.is_none() {
                return Err("tls_listen needs tls_cert_file and tls_key_file".into());
            }
            if self.tls_auth_clients != TlsAuthClients::No && self.tls_ca_cert_file.is_none() {
                return Err(
                    "tls_auth_clients (yes by default, as in Redis) needs tls_ca_cert_file to \
                     check client certificates; set tls_auth_clients = \"no\" to ask for none"
                        .into(),
                );
            }
        }
        if self.upstream_tls_cert_file.is_some() != self.upstream_tls_key_file.is_some() {
            return Err("upstream_tls_cert_file and upstream_tls_key_file go together".into());
        }
        Ok(())
    }

    /// Whether upstream connections use TLS (`upstream_tls`, or an `upstream` of `rediss://`).
    pub fn upstream_tls_on(&self) -> bool {
        self.upstream_tls || self.upstream.tls()
    }
}

/// The secret setting that `name` reads from a file: `upstream_password_file` (any spelling)
/// for `upstream_password`. Secrets only: a file per ordinary setting would be a second config
/// file.
fn secret_file_of(name: &str) -> Option<&'static Setting> {
    let name = name.replace('-', "_");
    let stem = name.strip_suffix("_file")?;
    SETTINGS.iter().find(|s| s.secret && s.name == stem)
}

/// A secret's file, as Docker and Kubernetes mount them: its text without the trailing line
/// break. The error names the file, never its contents.
fn read_secret(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_string())
}

fn unknown(name: &str) -> String {
    format!("unknown setting {name:?} (nearcache --help lists them)")
}

fn read_file(config: &mut Config, path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    config
        .merge_toml(&text)
        .map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))
}

/// The settings whose values differ between `a` and `b`.
pub fn changed_settings(a: &Config, b: &Config) -> Vec<&'static Setting> {
    SETTINGS
        .iter()
        .filter(|s| (s.show)(a) != (s.show)(b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_default_parses_and_shows_back() {
        let c = Config::default();
        for s in SETTINGS {
            let mut again = Config::default();
            again.set(s.name, &(s.show)(&c)).unwrap();
            assert_eq!(again, c, "{}", s.name);
            assert!(!s.doc.trim().is_empty(), "{} has no doc", s.name);
        }
        assert!(c.validate().is_ok());
    }

    #[test]
    fn every_setting_refuses_its_bad_value_naming_it() {
        for s in SETTINGS {
            let mut c = Config::default();
            let err = c.set(s.name, s.bad).unwrap_err();
            assert!(!err.is_empty(), "{}", s.name);
            let file = format!("{} = {:?}\n", s.name, s.bad);
            let err = Config::from_toml(&file).unwrap_err();
            assert!(err.starts_with(&format!("{}: ", s.name)), "{err}");
        }
    }

    #[test]
    fn cluster_mode_refuses_what_it_does_not_support_yet() {
        let mut c = Config::default();
        c.set("upstream", "a:1,b:2").unwrap();
        assert!(c.validate().unwrap_err().contains("cluster = true only"));
        c.set("cluster", "true").unwrap();
        assert_eq!(c.validate(), Ok(()));
        c.set("tracking", "bcast").unwrap();
        assert!(c.validate().unwrap_err().contains("bcast"));
        c.set("tracking", "default").unwrap();
        c.set("upstream_tls", "true").unwrap();
        assert!(c.validate().unwrap_err().contains("TLS"));

        let mut c = Config::default();
        c.set("read_from", "replica").unwrap();
        assert!(c.validate().unwrap_err().contains("cluster = true only"));
        c.set("cluster", "true").unwrap();
        assert_eq!(c.validate(), Ok(()));
        assert!(c.set("read_from", "slave").is_err());
    }

    #[test]
    fn names_are_found_in_every_spelling() {
        assert_eq!(Setting::find("max-memory").unwrap().name, "max_memory");
        assert_eq!(Setting::find("MAX_MEMORY").unwrap().name, "max_memory");
        assert!(Setting::find("max_mem").is_none());
        let mut c = Config::default();
        assert!(c
            .set("nosuch", "1")
            .unwrap_err()
            .contains("unknown setting"));
        assert!(Config::from_toml("lisen = \"x\"")
            .unwrap_err()
            .contains("unknown setting \"lisen\""));
        // The file takes the name as written, with underscores.
        assert!(Config::from_toml("max-memory = \"1mb\"").is_err());
    }

    #[test]
    fn old_spellings_still_work_with_a_warning() {
        let loaded = Config::from_toml("connect_timeout_ms = 250\ntimeout = 30\n").unwrap();
        assert_eq!(loaded.config.connect_timeout, Duration::from_millis(250));
        assert_eq!(loaded.config.timeout, Some(Duration::from_secs(30)));
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("connect_timeout = \"250ms\""));
        let mut c = Config::default();
        let warning = c.set("slowlog-threshold-ms", "25").unwrap();
        assert_eq!(c.slowlog_threshold, Some(Duration::from_millis(25)));
        assert!(warning.unwrap().contains("deprecated"));
        assert_eq!(c.set("timeout", "30s").unwrap(), None);
        assert!(c.set("connect_timeout_ms", "soon").is_err());
    }

    #[test]
    fn settings_that_cannot_work_together_are_refused() {
        for (file, needle) in [
            ("upstream_conns = 0", "upstream_conns"),
            ("max_open_conns = 3", "max_open_conns"),
            ("tracking_prefixes = [\"a:\"]", "tracking_prefixes"),
            ("upstream_user = \"u\"", "upstream_password"),
            ("connect_timeout = \"0\"", "connect_timeout"),
            ("trace_sample = 0", "trace_sample"),
        ] {
            let err = Config::from_toml(file).unwrap_err();
            assert!(err.contains(needle), "{file}: {err}");
        }
    }

    #[test]
    fn the_toml_form_loads_back_to_the_same_configuration() {
        let mut c = Config::default();
        c.set("cache_exclude_prefixes", "a:,b:").unwrap();
        c.set("max_memory", "2gb").unwrap();
        c.set("log_json", "true").unwrap();
        c.set("unixsocket", "/tmp/n.sock").unwrap();
        let again = Config::from_toml(&c.to_toml()).unwrap().config;
        assert_eq!(again, c);
        assert!(c.to_toml().contains("max_memory = \"2gb\"\n"));
        assert!(c
            .to_toml()
            .contains("cache_exclude_prefixes = [\"a:\", \"b:\"]\n"));
        c.set("upstream_password", "hunter2").unwrap();
        assert!(!c.to_toml().contains("hunter2"));
    }

    #[test]
    fn secrets_are_masked_and_changes_are_listed() {
        let mut c = Config::default();
        assert_eq!(c.get("upstream_password").unwrap(), "");
        c.set("upstream-password", "hunter2").unwrap();
        assert_eq!(c.get("upstream_password").unwrap(), "********");
        assert!(!format!("{c:?}").contains("hunter2"));
        let names: Vec<_> = changed_settings(&Config::default(), &c)
            .iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["upstream_password"]);
    }
}
