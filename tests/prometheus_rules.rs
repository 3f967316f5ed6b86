//! The alert rules the package ships (systemd/prometheus/wxcardd.rules.yml) pass
//! `promtool check rules`, and `promtool test rules` shows each alert firing once its
//! condition has held long enough and resolving after (wxcardd.rules.test.yml).

mod prom_support;

use std::path::Path;

use prom_support::{have_tool, promtool};

fn run(args: &[&str]) {
    let out = promtool(args, None);
    assert!(
        out.status.success(),
        "promtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shipped_alert_rules_check_and_their_tests_pass() {
    if !have_tool("promtool", "prometheus") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/prometheus");
    let rules = dir.join("wxcardd.rules.yml");
    let tests = dir.join("wxcardd.rules.test.yml");
    run(&["check", "rules", rules.to_str().unwrap()]);
    run(&["test", "rules", tests.to_str().unwrap()]);

    // Every alert the rules define is exercised by the test file.
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let tests_text = std::fs::read_to_string(&tests).unwrap();
    let alerts: Vec<&str> = rules_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 7, "{alerts:?}");
    for alert in alerts {
        let fires = tests_text.matches(&format!("alertname: {alert}\n")).count();
        assert!(
            fires >= 3,
            "{alert}: before, firing and resolved ({fires} checks)"
        );
    }
}
