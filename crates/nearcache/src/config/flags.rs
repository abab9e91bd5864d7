//! The command line and the environment: one flag per setting, generated from [`SETTINGS`]
//! (`--max-memory` for `max_memory`), and one environment variable (`NEARCACHE_MAX_MEMORY`),
//! plus `--config FILE` (`NEARCACHE_CONFIG`), `--no-admin` and `--check-config`. A flag wins
//! over the environment, which wins over the file.
//!
//! Owns turning argv and the environment into the values given, as text, in a fixed order,
//! each with where it came from. Never parses a
//! setting's value (that is the setting type's job, when [`super::Config::load`] applies it),
//! so a bad value fails with the same message from a flag, the file or `NEARCACHE CONFIG SET`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command};

use super::settings::{renamed, Setting, SETTINGS};

/// What the command line and the environment asked for.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// The `--config` file.
    pub config: Option<PathBuf>,
    /// Each setting given, in a fixed order.
    pub values: Vec<Given>,
    /// `--check-config`: validate, print the effective configuration and exit.
    pub check_config: bool,
}

/// A setting's value as given on the command line or in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    /// The setting's dashed name (old names included).
    pub name: String,
    pub value: String,
    /// The environment variable it came from; `None` for a flag.
    pub env: Option<String>,
}

impl Given {
    /// How the user spelled it, for errors: `--max-memory` or `NEARCACHE_MAX_MEMORY`.
    pub fn spelled(&self) -> String {
        self.env
            .clone()
            .unwrap_or_else(|| format!("--{}", self.name))
    }
}

/// The environment variable of a setting: `NEARCACHE_` and its name in capitals.
pub fn env_name(setting: &Setting) -> String {
    format!("NEARCACHE_{}", setting.name.to_ascii_uppercase())
}

fn command() -> Command {
    let mut cmd = Command::new("nearcache")
        .version(env!("CARGO_PKG_VERSION"))
        .about("A Redis proxy with a tracking client-side cache")
        .after_help(
            "Every flag is also a key of the --config file, with underscores (max_memory);\n\
             and an environment variable, NEARCACHE_ and the key in capitals (NEARCACHE_MAX_MEMORY).\n\
             A flag wins over the environment, which wins over the file.\n\
             Durations read like 500ms, 30s, 5m; sizes like 64mb.\n\
             Also: nearcache heap-diff OLD.pb.gz NEW.pb.gz (see nearcache heap-diff --help)",
        )
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .env("NEARCACHE_CONFIG")
                .help("TOML file with the same settings as the flags (flags win)"),
        )
        .arg(
            Arg::new("check-config")
                .long("check-config")
                .action(ArgAction::SetTrue)
                .help(
                    "Check the configuration (file, environment, flags), print it as it would \
                     be used (secrets masked) and exit: 0 when valid, 1 otherwise",
                ),
        )
        .arg(
            Arg::new("no-admin")
                .long("no-admin")
                .action(ArgAction::SetTrue)
                .help("Disable the admin HTTP port (admin_listen = none)"),
        );
    for s in SETTINGS {
        cmd = cmd.arg(flag(s));
        if s.secret {
            cmd = cmd.arg(file_flag(s));
        }
    }
    for old in renamed() {
        cmd = cmd.arg(
            Arg::new(old)
                .long(old.replace('_', "-"))
                .value_name("N")
                .hide(true),
        );
    }
    cmd
}

fn flag(s: &Setting) -> Arg {
    let help: String = s.doc.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let mut arg = Arg::new(s.name)
        .long(s.dashed())
        .value_name(s.kind)
        .help(format!("{help} [default: {}]", shown_default(s)));
    if s.bare_flag {
        arg = arg.num_args(0..=1).default_missing_value("true");
    }
    arg = arg.env(env_name(s));
    if s.secret {
        arg = arg.hide_env_values(true);
    }
    arg
}

/// `--upstream-password-file PATH` (`NEARCACHE_UPSTREAM_PASSWORD_FILE`): a secret read from a
/// file, as Docker and Kubernetes mount secrets, so that it is in neither argv nor the
/// environment.
fn file_flag(s: &Setting) -> Arg {
    let name = file_name(s);
    Arg::new(name.clone())
        .long(name.replace('_', "-"))
        .value_name("FILE")
        .help(format!(
            "Read {} from this file (its trailing line break dropped)",
            s.name
        ))
        .env(format!("{}_FILE", env_name(s)))
}

fn file_name(s: &Setting) -> String {
    format!("{}_file", s.name)
}

fn shown_default(s: &Setting) -> &str {
    match s.default {
        "" => "none",
        d => d,
    }
}

/// Reads argv (the program name first). `--help`, `--version` and malformed command lines end
/// the process as clap does (usage on stderr, exit code 2).
pub fn parse_args(argv: impl IntoIterator<Item = OsString>) -> Args {
    let matches = command().get_matches_from(argv);
    let mut args = Args {
        config: matches.get_one::<PathBuf>("config").cloned(),
        values: Vec::new(),
        check_config: matches.get_flag("check-config"),
    };
    // Environment first, flags after, so that a flag applied later wins over a variable.
    let mut flags = Vec::new();
    for s in SETTINGS.iter().filter(|s| s.secret) {
        let name = file_name(s);
        if let Some(path) = matches.get_one::<String>(&name) {
            let env = (matches.value_source(&name) == Some(ValueSource::EnvVariable))
                .then(|| format!("{}_FILE", env_name(s)));
            let given = Given {
                name: name.replace('_', "-"),
                value: path.clone(),
                env: env.clone(),
            };
            match env {
                Some(_) => args.values.push(given),
                None => flags.push(given),
            }
        }
    }
    for s in SETTINGS {
        let Some(value) = matches.get_one::<String>(s.name) else {
            continue;
        };
        let mut given = Given {
            name: s.dashed(),
            value: value.clone(),
            env: None,
        };
        if matches.value_source(s.name) == Some(ValueSource::EnvVariable) {
            given.env = Some(env_name(s));
            args.values.push(given);
        } else {
            flags.push(given);
        }
    }
    for old in renamed() {
        if let Some(value) = matches.get_one::<String>(old) {
            flags.push(Given {
                name: old.replace('_', "-"),
                value: value.clone(),
                env: None,
            });
        }
    }
    if matches.get_flag("no-admin") {
        flags.push(Given {
            name: "admin-listen".into(),
            value: "none".into(),
            env: None,
        });
    }
    args.values.extend(flags);
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Duration;

    fn load(argv: &[&str]) -> anyhow::Result<Config> {
        let argv = std::iter::once("nearcache").chain(argv.iter().copied());
        Config::load(&parse_args(argv.map(OsString::from))).map(|l| l.config)
    }

    #[test]
    fn the_command_line_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:7000\"\nupstream_conns = 4\n").unwrap();
        let path = path.to_str().unwrap();
        let cfg = load(&["--config", path, "--listen", "127.0.0.1:1"]).unwrap();
        assert_eq!(cfg.listen.unwrap().as_str(), "127.0.0.1:1");
        assert_eq!(cfg.upstream_conns, 4);
        assert_eq!(cfg.upstream.as_str(), "127.0.0.1:6379");
    }

    #[test]
    fn boolean_flags_work_both_ways() {
        assert!(load(&["--log-json"]).unwrap().log_json);
        assert!(load(&["--log-json=true"]).unwrap().log_json);
        assert!(!load(&["--log-json=false"]).unwrap().log_json);
        assert!(!load(&["--heap-profiling", "false"]).unwrap().heap_profiling);
        assert!(load(&["--heap-profiling"]).unwrap().heap_profiling);
        assert!(load(&["--no-admin"]).unwrap().admin_listen.is_none());
    }

    #[test]
    fn a_bad_flag_value_names_the_flag() {
        for s in SETTINGS {
            let flag = format!("--{}={}", s.dashed(), s.bad);
            let err = load(&[&flag]).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("--{}: ", s.dashed())),
                "{flag}: {err}"
            );
        }
    }

    #[test]
    fn old_flags_still_work() {
        let cfg = load(&["--connect-timeout-ms", "250", "--timeout", "30"]).unwrap();
        assert_eq!(cfg.connect_timeout, Duration::from_millis(250));
        assert_eq!(cfg.timeout, Some(Duration::from_secs(30)));
    }
}
