//! `wxcardd`: the till daemon. Thin: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wxcardd::config::{self, Config};

#[derive(Parser)]
#[command(version, about = "Till daemon for WeChat member cards")]
struct Cli {
    /// The config file.
    #[arg(long, global = true, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Run on a built-in demo setup: simulated backend, codes typed on standard input, this
    /// terminal as the customer display, a temporary store.
    #[arg(long, conflicts_with = "config")]
    demo: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config file and exit (0 valid, 78 invalid).
    Check,
    /// Call getmembercard once and say whether the backend, token and network are right.
    ///
    /// Exit codes: 0 card found; 1 backend reachable but the card is not usable;
    /// 69 backend unreachable; 76 not a wxcard answer; 78 config unusable.
    Probe {
        /// The member card code to look up (what a scanner reads).
        #[arg(long)]
        wx_code: String,
        /// The WeChat card template id, if the backend wants one.
        #[arg(long)]
        card_id: Option<String>,
    },
    /// Find the scanner (scan the code it shows) and write its `[[scanner]]` table.
    Setup(wxcardd::setup::SetupArgs),
}

const EX_CONFIG: u8 = 78;

/// `--demo`: the daemon on its built-in setup (the simulator in-process).
#[cfg(feature = "demo")]
fn demo() -> ExitCode {
    match runtime().map(|rt| finish(rt, wxcardd::daemon::demo())) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("wxcardd demo: {e:#}");
            ExitCode::from(1)
        }
        Err(code) => code,
    }
}

/// `--demo` in a build without the `demo` feature (the .deb's): says so.
#[cfg(not(feature = "demo"))]
fn demo() -> ExitCode {
    eprintln!(
        "wxcardd: this build has no demo (the `demo` cargo feature is off, as in the .deb); \
         run `cargo run -- --demo` from the source tree"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    // Before any thread starts: arenas made before this call would stay.
    wxcardd::memory::limit_arenas();
    let cli = Cli::parse();
    // The demo's terminal is the customer display: only errors may write over it.
    let default_log = match (&cli.command, cli.demo) {
        (None, false) => "info",
        (None, true) => "error",
        (Some(_), _) => "warn",
    };
    wxcardd::daemon::logging::init(default_log);
    // Before the config (and the token file it names) is read.
    wxcardd::daemon::forbid_core_dumps();
    let daemon = cli.command.is_none();
    let load = || {
        Config::load(&cli.config).map_err(|e| {
            if daemon {
                // The daemon: through the logger, so the journal has it at priority err.
                log::error!("{e}");
            } else {
                eprintln!("{e}");
            }
            ExitCode::from(EX_CONFIG)
        })
    };
    match cli.command {
        Some(Command::Check) => match load() {
            Ok(config) => {
                for warning in config.warnings() {
                    eprintln!("warning: {warning}");
                }
                println!("{}: OK", cli.config.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Some(Command::Probe { wx_code, card_id }) => {
            let config = match load() {
                Ok(c) => c,
                Err(code) => return code,
            };
            let report = wxcardd::probe::run(&config, &wx_code, card_id.as_deref());
            println!("{}", report.text);
            ExitCode::from(u8::try_from(report.outcome.exit_code()).unwrap_or(1))
        }
        Some(Command::Setup(args)) => {
            match runtime().map(|rt| finish(rt, wxcardd::setup::run(args, &cli.config))) {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => {
                    eprintln!("wxcardd setup: {e:#}");
                    ExitCode::from(1)
                }
                Err(code) => code,
            }
        }
        None if cli.demo => demo(),
        None => {
            let config = match load() {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Err(e) = wxcardd::memory::spawn_trimmer() {
                log::warn!("no memory trimmer thread: {e}");
            }
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let options = wxcardd::daemon::RunOptions {
                config_path: Some(cli.config.clone()),
                pay_code_after_scan: false,
                show_other_codes: false,
            };
            match finish(runtime, wxcardd::daemon::run(config, options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e:#}");
                    if e.downcast_ref::<wxcardd::daemon::ConfigProblem>().is_some() {
                        ExitCode::from(EX_CONFIG)
                    } else {
                        ExitCode::from(1)
                    }
                }
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    wxcardd::daemon::runtime().map_err(|e| {
        log::error!("cannot start the async runtime: {e}");
        ExitCode::from(71)
    })
}

/// Runs the daemon to its end, then stops the runtime without waiting on blocking reads that
/// never end by themselves (a stdin scanner's read).
fn finish<T>(runtime: tokio::runtime::Runtime, main: impl std::future::Future<Output = T>) -> T {
    let result = runtime.block_on(main);
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}
