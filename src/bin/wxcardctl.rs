//! `wxcardctl`: the command-line client of wxcardd's control socket.
//!
//! Exit codes: 0 the daemon carried the request out; 1 it answered with an error (backend
//! refusal, full outbox, bad parameters...); 2 usage error; 69 the socket cannot be reached;
//! 76 the daemon's answer was not understood; 77 the daemon refused this user.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wxcard_hal::text::{escape_json_text, untrusted};
use wxcardd::api::{CardIssueOrder, MemberInfo};
use wxcardd::control::client::{ClientError, ControlClient};
use wxcardd::control::protocol::{
    Command, IssueParams, LookupParams, MemberParams, MessageLevel, MessageParams, OutboxIdParams,
    ScanParams, WxCodeParams,
};

#[derive(Parser)]
#[command(
    name = "wxcardctl",
    version = wxcardd::VERSION,
    about = "Talk to wxcardd over its control socket"
)]
struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, default_value = "/run/wxcardd/control.sock")]
    socket: PathBuf,
    /// Print the daemon's JSON answer instead of a human summary (DEL, C1 controls and bidi
    /// characters in its strings written as `\uXXXX`, so it parses back the same).
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for an answer.
    #[arg(long, global = true, default_value_t = 30)]
    timeout: u64,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand)]
enum Sub {
    /// Look a card up.
    Lookup {
        /// The member card code (what the scanner reads).
        wx_code: String,
        /// The WeChat card template id.
        #[arg(long)]
        card_id: Option<String>,
    },
    /// Activate a member's card (activemember).
    Activate(MemberArgs),
    /// Create a member (createmembercard).
    Create(MemberArgs),
    /// Issue cards (savecardid) from an order in JSON (API field names).
    Issue {
        /// The order file, or - for standard input.
        order: PathBuf,
    },
    /// Show a pay code for a card on the customer display.
    Paycode {
        /// The member card code.
        wx_code: String,
    },
    /// Take the pay code off the customer display.
    PaycodeClear,
    /// Show a message on the customer display.
    Message {
        /// The text.
        text: String,
        /// Show it as an error.
        #[arg(long)]
        error: bool,
    },
    /// Put the customer display back on the idle screen.
    Idle,
    /// Enter a code as if it had been scanned.
    Scan {
        /// The code.
        code: String,
        /// The scanner name to report.
        #[arg(long, default_value = "manual")]
        scanner: String,
    },
    /// The daemon's state: online, outbox, uptime.
    Status,
    /// Queued writes and dead letters.
    Outbox {
        #[command(subcommand)]
        action: Option<OutboxAction>,
    },
    /// Follow events (scans, cards, backend, outbox) until interrupted.
    Watch,
    /// Write a support report (version, status, outbox summary, config without secrets,
    /// scanners and displays with udev properties, the journal, disk): no token, no member
    /// data, no full card code.
    Report {
        /// The daemon's config file (drop-ins in conf.d/ next to it are included).
        #[arg(long, default_value = wxcardd::config::DEFAULT_PATH)]
        config: PathBuf,
        /// Where to write it; - for standard output.
        #[arg(long, short, default_value = "wxcardd-report.txt")]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum OutboxAction {
    /// List pending writes and dead letters (the default).
    List,
    /// Retry an entry: a dead letter goes back to the outbox (sent next); a pending one is
    /// tried now.
    Retry {
        /// The entry id.
        entry: u64,
    },
    /// Drop an entry, pending or dead, readable or not (and the personal data it holds) for
    /// good; the answer says what was dropped.
    Drop {
        /// The entry id.
        entry: u64,
    },
}

#[derive(clap::Args)]
struct MemberArgs {
    /// The member card code.
    #[arg(long)]
    wx_code: Option<String>,
    /// The merchant card number.
    #[arg(long)]
    card_code: Option<String>,
    /// A JSON file with the whole MemberInfo (API field names), or - for standard input.
    /// Personal data belongs here, not on the command line, where `ps` and shell history
    /// would keep it.
    #[arg(long)]
    from_json: Option<PathBuf>,
}

impl MemberArgs {
    fn member(&self) -> Result<MemberInfo, String> {
        let mut member = match &self.from_json {
            Some(path) => serde_json::from_str(&read_input(path)?)
                .map_err(|e| format!("{}: not a MemberInfo: {e}", path.display()))?,
            None => MemberInfo::default(),
        };
        if let Some(wx) = &self.wx_code {
            member.wx_code = wx.clone();
        }
        if let Some(code) = &self.card_code {
            member.card_code = Some(code.clone());
        }
        if member.wx_code.is_empty() {
            return Err("--wx-code (or wxCode in --from-json) is required".into());
        }
        Ok(member)
    }
}

fn read_input(path: &PathBuf) -> Result<String, String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("standard input: {e}"))?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn command(sub: &Sub) -> Result<Option<Command>, String> {
    Ok(Some(match sub {
        Sub::Lookup { wx_code, card_id } => Command::Lookup(LookupParams {
            wx_code: wx_code.clone(),
            card_id: card_id.clone(),
        }),
        Sub::Activate(m) => Command::Activate(MemberParams {
            member: m.member()?,
        }),
        Sub::Create(m) => Command::Create(MemberParams {
            member: m.member()?,
        }),
        Sub::Issue { order } => {
            let order: CardIssueOrder = serde_json::from_str(&read_input(order)?)
                .map_err(|e| format!("{}: not a CardIssueOrder: {e}", order.display()))?;
            Command::Issue(IssueParams { order })
        }
        Sub::Paycode { wx_code } => Command::PayCodeShow(WxCodeParams {
            wx_code: wx_code.clone(),
        }),
        Sub::PaycodeClear => Command::PayCodeClear,
        Sub::Message { text, error } => Command::DisplayMessage(MessageParams {
            text: text.clone(),
            level: if *error {
                MessageLevel::Error
            } else {
                MessageLevel::Info
            },
        }),
        Sub::Idle => Command::DisplayIdle,
        Sub::Scan { code, scanner } => Command::Scan(ScanParams {
            code: code.clone(),
            scanner: scanner.clone(),
        }),
        Sub::Status => Command::Status,
        Sub::Outbox { action } => match action {
            None | Some(OutboxAction::List) => Command::OutboxList,
            Some(OutboxAction::Retry { entry }) => {
                Command::OutboxRetry(OutboxIdParams { entry: *entry })
            }
            Some(OutboxAction::Drop { entry }) => {
                Command::OutboxDrop(OutboxIdParams { entry: *entry })
            }
        },
        Sub::Watch | Sub::Report { .. } => return Ok(None),
    }))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match command(&cli.command) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wxcardctl: {e}");
            return ExitCode::from(2);
        }
    };
    if let Sub::Report { config, output } = &cli.command {
        return report(&cli.socket, config, output, cli.timeout);
    }
    let timeout = match command {
        None => None,
        Some(_) => Some(Duration::from_secs(cli.timeout.max(1))),
    };
    let mut client = match ControlClient::connect(&cli.socket, timeout) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let Some(command) = command else {
        return watch(&mut client, cli.json);
    };
    let answer = match client.request(&command) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    if cli.json {
        println!("{}", escape_json_text(&answer.to_string()));
    }
    if answer["class"] == "ERROR" {
        if !cli.json {
            eprintln!(
                "wxcardctl: {} ({})",
                untrusted(answer["error"]["message"].as_str().unwrap_or("error")),
                untrusted(answer["error"]["code"].as_str().unwrap_or("?"))
            );
        }
        return ExitCode::from(1);
    }
    if !cli.json {
        println!(
            "{}",
            wxcardd::control::human::describe(&command, &answer["result"])
        );
        if matches!(command, Command::Status) {
            print_web_token(&answer["result"]);
        }
    }
    // A lookup that found nothing to show (offline, nothing cached) did not succeed.
    if answer["result"]["outcome"] == "offline" {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn watch(client: &mut ControlClient, json: bool) -> ExitCode {
    let answer = match client.request(&Command::Subscribe) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    if answer["class"] == "ERROR" {
        eprintln!(
            "wxcardctl: {}",
            untrusted(&answer["error"]["message"].to_string())
        );
        return ExitCode::from(1);
    }
    loop {
        match client.read_line() {
            Ok(event) if json => println!("{}", escape_json_text(&event.to_string())),
            Ok(event) if event["class"] == "EVENT" => {
                println!("{}", wxcardd::control::human::describe_event(&event));
            }
            Ok(other) if other["class"] == "ERROR" => {
                eprintln!(
                    "wxcardctl: {}",
                    untrusted(&other["error"]["message"].to_string())
                );
                return ExitCode::from(1);
            }
            Ok(_) => {}
            Err(e) => return fail(&e),
        }
    }
}

fn report(
    socket: &std::path::Path,
    config: &std::path::Path,
    output: &std::path::Path,
    timeout: u64,
) -> ExitCode {
    let text = wxcardd::report::build(socket, config, Duration::from_secs(timeout.max(1)));
    if output == std::path::Path::new("-") {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(output)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    match written {
        Ok(()) => {
            eprintln!("wxcardctl: support report written to {}", output.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wxcardctl: cannot write {}: {e}", output.display());
            ExitCode::from(73)
        }
    }
}

fn fail(e: &ClientError) -> ExitCode {
    eprintln!("wxcardctl: {e}");
    ExitCode::from(match e {
        ClientError::Connect { .. } => 69,
        ClientError::Forbidden(_) => 77,
        ClientError::Io(_) | ClientError::Protocol(_) => 76,
    })
}

/// For root only: the browser WebSocket's token, read from the file the daemon names (the
/// socket never carries it).
fn print_web_token(status: &serde_json::Value) {
    let Some(file) = status["control_web"]["token_file"].as_str() else {
        return;
    };
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    match std::fs::read_to_string(file) {
        Ok(token) => println!("browser WebSocket token: {}", token.trim()),
        Err(e) => eprintln!("wxcardctl: cannot read the WebSocket token {file}: {e}"),
    }
}
