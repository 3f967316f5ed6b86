//! `wxcard-sim`: the wxcard backend simulator as a process (see docs/simulator.md).
//!
//! Prints one ready line on stdout once both ports listen:
//! `wxcard-sim listening api=127.0.0.1:41234 admin=127.0.0.1:41235`,
//! then serves until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use wxcard_sim::{SimConfig, Simulator, default_cards, parse_card_file};

/// A stateful simulator of the wxcard backend, with faults switchable at run time.
#[derive(Debug, Parser)]
#[command(name = "wxcard-sim", version)]
struct Args {
    /// Address of the vendor API (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Address of the admin API (default: 127.0.0.1 on a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    admin: SocketAddr,
    /// A TOML card file; without it the built-in demo cards are used.
    #[arg(long, value_name = "FILE")]
    cards: Option<PathBuf>,
    /// How long a pay code stays valid, in seconds (at most a day).
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    paycode_ttl: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let cards = match &args.cards {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the card file {}", path.display()))?;
            parse_card_file(&text).with_context(|| format!("bad card file {}", path.display()))?
        }
        None => default_cards(),
    };
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let config = SimConfig {
        api_addr: args.listen,
        admin_addr: args.admin,
        cards,
        paycode_ttl: Duration::from_secs(args.paycode_ttl),
    };
    let sim = Simulator::start(config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "wxcard-sim listening api={} admin={}",
            sim.api_addr(),
            sim.admin_addr()
        )?;
        out.flush()?;
    }
    tokio::select! {
        _ = sigterm.recv() => log::info!("SIGTERM: stopping"),
        _ = sigint.recv() => log::info!("SIGINT: stopping"),
    }
    sim.shutdown().await;
    Ok(())
}
