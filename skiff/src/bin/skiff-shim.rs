//! The per-container shim as a program of its own (see
//! `skiff_agent::runtime::shim`): a container's shim lives as long as the
//! container, so what it keeps resident is paid once per container. Linked
//! alone it maps a few hundred kilobytes of its own instead of the whole
//! skiff binary (and skips relocating it at every start);
//! `scripts/build-release` also links it statically, so it maps no shared
//! libraries and starts without the dynamic loader.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(skiff_agent::runtime::shim::main(&args));
}
