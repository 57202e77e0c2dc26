//! The seeder's command line: a run without what it needs stops before touching AWS and says
//! which flag is missing or wrong. (`make test` builds the binary with the workspace's test
//! build, which `make local-aws` then runs.)

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_twofa-seed"))
        .args(args)
        // Nothing answers here: a run that got past its arguments would fail differently.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .expect("the seeder runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn seeding_without_a_table_names_the_missing_flag() {
    // When the seeder runs with only a secret name
    let (ok, stderr) = run(&["--secret", "s"]);
    // Then it fails, naming --table
    assert!(!ok);
    assert!(stderr.contains("--table is required"), "{stderr}");
}

#[test]
fn an_unknown_flag_is_refused_with_the_usage() {
    let (ok, stderr) = run(&["--table", "t", "--secret", "s", "--account", "x"]);
    assert!(!ok);
    assert!(stderr.contains("unknown flag --account") && stderr.contains("usage: twofa-seed"), "{stderr}");
}
