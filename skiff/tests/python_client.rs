//! The official Kubernetes Python client (`pip install kubernetes`) against a
//! real skiff server: tests/python/client.py makes the calls Python operators
//! make and checks what comes back.

mod common;

use common::Server;
use std::process::Command;

fn have_python_client() -> bool {
    Command::new("python3")
        .args(["-c", "import kubernetes"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn python_client_works() {
    if !have_python_client() {
        eprintln!("python3 with the kubernetes package not available: skipped");
        return;
    }
    let s = Server::start(None);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(s.kubeconfig())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
