//! Links skiff's programs as position-dependent executables (`-no-pie`), as
//! Go links kubelet, containerd and k3s by default. A PIE must have its
//! relocations applied at every start: skiff's 770 KB of them, read in and
//! written over 600 KB of data, by every process — the server, the agent,
//! and once a container its shim. Position-dependent, those pages stay in
//! the file, shared, and untouched unless used. (The libraries, heap and
//! stacks are still placed at random.)

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
