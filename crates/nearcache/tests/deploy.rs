//! The files in `deploy/`: the example configuration loads and names every setting, the
//! systemd unit passes `systemd-analyze verify` and says what the proxy does, and the
//! Prometheus configuration passes `promtool check config`. (The Dockerfile and the compose
//! file need a container engine; docs/deploy.md gives their manual check.)

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use nearcache::config::SETTINGS;

const TOOL_LIMIT: Duration = Duration::from_secs(60);

fn deploy(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(name)
}

#[test]
fn the_example_configuration_loads_and_covers_every_setting() {
    let text = read_to_string(&deploy("nearcache.toml"));
    let loaded = nearcache::Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    for s in SETTINGS {
        let set = format!("\n{} = ", s.name);
        let commented = format!("\n# {} = ", s.name);
        assert!(
            text.contains(&set) || text.contains(&commented),
            "deploy/nearcache.toml does not mention {}",
            s.name
        );
    }
    // The binary agrees, as `nearcache --check-config` run by the unit's ExecStartPre would.
    let path = deploy("nearcache.toml");
    let out = run_tool(
        env!("CARGO_BIN_EXE_nearcache"),
        &["--check-config", "--config", path.to_str().unwrap()],
        None,
        TOOL_LIMIT,
    );
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn the_systemd_unit_verifies_and_reloads_with_sighup() {
    let unit = read_to_string(&deploy("nearcache.service"));
    for line in [
        "Type=notify\n",
        "ExecReload=/bin/kill -HUP $MAINPID\n",
        "LimitNOFILE=",
        "NoNewPrivileges=yes\n",
        "ProtectSystem=strict\n",
        "ExecStartPre=/usr/local/bin/nearcache --check-config ",
    ] {
        assert!(unit.contains(line), "{line:?} missing in the unit");
    }
    // systemd-analyze checks that the executables exist: point them at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("nearcache.service");
    let bin = env!("CARGO_BIN_EXE_nearcache");
    std::fs::write(&copy, unit.replace("/usr/local/bin/nearcache", bin)).unwrap();
    let out = run_tool(
        "systemd-analyze",
        &["verify", copy.to_str().unwrap()],
        None,
        TOOL_LIMIT,
    );
    // A directive systemd cannot read is only a warning, on stderr: none is allowed.
    assert!(
        out.status.success() && out.stderr.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{}{}",
        out.status,
        out.stdout,
        out.stderr
    );
}

#[test]
fn the_prometheus_configuration_is_valid() {
    let path = deploy("prometheus.yml");
    let out = run_tool(
        "promtool",
        // The token file it names exists only inside the compose stack.
        &["check", "config", "--syntax-only", path.to_str().unwrap()],
        None,
        TOOL_LIMIT,
    );
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    let text = read_to_string(&path);
    assert!(text.contains("nearcache:8380"), "{text}");
}
