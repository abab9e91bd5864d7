//! The command line: one flag per setting, generated from [`SETTINGS`] (`--max-memory` for
//! `max_memory`), plus `--config FILE` and `--no-admin`.
//!
//! Owns turning argv into the values given, as text, in a fixed order. Never parses a
//! setting's value (that is the setting type's job, when [`super::Config::load`] applies it),
//! so a bad value fails with the same message from a flag, the file or `NEARCACHE CONFIG SET`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, Command};

use super::settings::{renamed, Setting, SETTINGS};

/// The environment variable a setting may also come from (a flag given on the command line
/// wins over it).
const ENV: &[(&str, &str)] = &[("upstream_password", "NEARCACHE_UPSTREAM_PASSWORD")];

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// The `--config` file.
    pub config: Option<PathBuf>,
    /// Each flag given (its dashed name, old names included) and its value, as text.
    pub values: Vec<(String, String)>,
}

fn command() -> Command {
    let mut cmd = Command::new("nearcache")
        .version(env!("CARGO_PKG_VERSION"))
        .about("A Redis proxy with a tracking client-side cache")
        .after_help(
            "Every flag is also a key of the --config file, with underscores (max_memory);\n\
             flags win over the file. Durations read like 500ms, 30s, 5m; sizes like 64mb.\n\
             Also: nearcache heap-diff OLD.pb.gz NEW.pb.gz (see nearcache heap-diff --help)",
        )
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML file with the same settings as the flags (flags win)"),
        )
        .arg(
            Arg::new("no-admin")
                .long("no-admin")
                .action(ArgAction::SetTrue)
                .help("Disable the admin HTTP port (admin_listen = none)"),
        );
    for s in SETTINGS {
        cmd = cmd.arg(flag(s));
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
    if let Some((_, var)) = ENV.iter().find(|(name, _)| *name == s.name) {
        arg = arg.env(*var).hide_env_values(true);
    }
    arg
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
    };
    let names = SETTINGS.iter().map(|s| s.name).chain(renamed());
    for name in names {
        if let Some(value) = matches.get_one::<String>(name) {
            args.values.push((name.replace('_', "-"), value.clone()));
        }
    }
    if matches.get_flag("no-admin") {
        args.values.push(("admin-listen".into(), "none".into()));
    }
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
        assert_eq!(cfg.listen.as_str(), "127.0.0.1:1");
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
