//! Operator input: an out-of-range setting is refused at start-up with a clear
//! message and exit code 2, never clamped silently.

use std::process::Command;

fn refuse(args: &[&str], expect: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(args)
        .output()
        .expect("run confab");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(expect), "{args:?}: {stderr}");
}

#[test]
fn out_of_range_websocket_read_buffer_is_refused() {
    for v in ["10", "255", "1048577", "lots"] {
        refuse(
            &["serve", "--bind", "127.0.0.1:0", "--ws-read-buffer", v],
            "invalid value",
        );
    }
}
