//! skiff benchmarks. Each area prints its figures and, last, one `RESULT`
//! line. `cargo run --release -p skiff-bench -- api|scheduler|controllers|cluster`

mod api;
mod cluster;
mod controllers;
mod procs;
mod scheduler;

fn main() -> anyhow::Result<()> {
    let area = std::env::args().nth(1).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match area.as_str() {
        "api" => rt.block_on(api::run()),
        "scheduler" => rt.block_on(scheduler::run()),
        "controllers" => rt.block_on(controllers::run()),
        "cluster" => rt.block_on(cluster::run()),
        _ => {
            eprintln!("usage: skiff-bench api|scheduler|controllers|cluster");
            std::process::exit(2);
        }
    }
}
