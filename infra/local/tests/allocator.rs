//! The dev server starts itself again with glibc's bigger per-thread cache (`tune_allocator`).
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::{
    net::{TcpListener, TcpStream},
    process::{Child, Command},
    thread::sleep,
    time::Duration,
};

use twofa_local::{tunables_with_tuning, ALLOCATOR_TUNING};

/// The dev server binary on a free port, with `GLIBC_TUNABLES` as given (None: unset).
fn start(tunables: Option<&str>) -> Child {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twofa-local"));
    cmd.env("PORT", port.to_string()).env("RUST_LOG", "warn").env_remove("GLIBC_TUNABLES");
    if let Some(t) = tunables {
        cmd.env("GLIBC_TUNABLES", t);
    }
    let mut child = cmd.stdout(std::process::Stdio::null()).spawn().expect("dev server");
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    child.wait().ok();
    panic!("the dev server did not listen on {port}");
}

/// `GLIBC_TUNABLES` of the process that listens, read from its pid.
fn tunables_of(child: &mut Child) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{}/environ", child.id())).expect("environ");
    let found = environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("GLIBC_TUNABLES=").map(str::to_owned));
    child.kill().ok();
    child.wait().ok();
    found
}

#[test]
fn the_dev_server_listens_under_its_own_pid_with_the_bigger_allocator_cache() {
    // Given no tunables set, when the dev server starts
    let mut child = start(None);
    // Then the process listening under the pid started is the one with the tuning
    assert_eq!(tunables_of(&mut child).as_deref(), Some(ALLOCATOR_TUNING));
}

#[test]
fn the_dev_server_leaves_a_tcache_setting_of_the_callers_as_it_is() {
    // Given the caller's own tcache setting, when the dev server starts, then it stands
    let mut child = start(Some("glibc.malloc.tcache_count=7"));
    assert_eq!(tunables_of(&mut child).as_deref(), Some("glibc.malloc.tcache_count=7"));
}

// What the process then sees of two tunables cannot be read from outside: glibc rewrites
// `GLIBC_TUNABLES` in place at start (`/proc/<pid>/environ` then shows the first one only).
#[test]
fn the_tuning_is_added_to_the_callers_other_tunables() {
    assert_eq!(tunables_with_tuning("").as_deref(), Some(ALLOCATOR_TUNING));
    assert_eq!(
        tunables_with_tuning("glibc.malloc.arena_max=2"),
        Some(format!("glibc.malloc.arena_max=2:{ALLOCATOR_TUNING}"))
    );
    assert_eq!(tunables_with_tuning("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=7"), None);
    // A longer name that starts alike is another tunable
    assert_eq!(
        tunables_with_tuning("glibc.malloc.tcache_count_x=1"),
        Some(format!("glibc.malloc.tcache_count_x=1:{ALLOCATOR_TUNING}"))
    );
}
