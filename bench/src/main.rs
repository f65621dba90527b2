//! skiff benchmarks. Each area prints its figures and, last, one `RESULT`
//! line. `cargo run --release -p skiff-bench -- api|scheduler|controllers|cluster|pods|proxy|lab`

mod api;
mod cluster;
mod controllers;
mod lab;
mod node;
mod pods;
mod procs;
mod proxy;
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
        "pods" => rt.block_on(pods::run()),
        "proxy" => rt.block_on(proxy::run()),
        "lab" => rt.block_on(lab::run()),
        _ => {
            eprintln!("usage: skiff-bench api|scheduler|controllers|cluster|pods|proxy|lab");
            std::process::exit(2);
        }
    }
}
