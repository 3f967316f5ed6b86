//! `wxcardd`: the till daemon. Thin: parses the command line and hands over to the library.
//!
//! The command line is lexed by lexopt (`--name value`, `--name=value`, `-h`, non-UTF-8
//! paths), not parsed by clap: clap's parser and the code its derive generates were ~0.28 MB of
//! the shipped binary (issue 12's 6 MB; BENCHMARKS.md, "5. Size") for a handful of options and
//! three subcommands. The help texts are written out here and the messages follow clap's
//! (`wxcardctl` still uses clap).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use wxcardd::config::{self, Config};
use wxcardd::setup::SetupArgs;

struct Cli {
    /// `--config`: the config file.
    config: PathBuf,
    /// `--demo`: run on a built-in demo setup.
    demo: bool,
    command: Option<Command>,
}

#[derive(Debug, PartialEq)]
enum Command {
    /// Validate the config file and exit (0 valid, 78 invalid).
    Check,
    /// Call getmembercard once and say whether the backend, token and network are right.
    Probe {
        wx_code: String,
        card_id: Option<String>,
    },
    /// Find the scanner and write its `[[scanner]]` table.
    Setup(SetupArgs),
}

const ABOUT: &str = "Till daemon for WeChat member cards";
const USAGE: &str = "Usage: wxcardd [OPTIONS] [COMMAND]";
const CHECK_ABOUT: &str = "Validate the config file and exit (0 valid, 78 invalid)";
const CHECK_USAGE: &str = "Usage: wxcardd check [OPTIONS]";
const PROBE_ABOUT: &str =
    "Call getmembercard once and say whether the backend, token and network are right";
const PROBE_USAGE: &str = "Usage: wxcardd probe [OPTIONS] --wx-code <WX_CODE>";
const SETUP_ABOUT: &str =
    "Find the scanner (scan the code it shows) and write its `[[scanner]]` table";
const SETUP_USAGE: &str = "Usage: wxcardd setup [OPTIONS]";
const CONFIG_HELP: &str = "The config file [default: /etc/wxcardd/wxcardd.toml]";

fn main_help() -> String {
    format!(
        "{ABOUT}\n\n{USAGE}\n\nCommands:\n  check  {CHECK_ABOUT}\n  probe  {PROBE_ABOUT}\n  \
         setup  {SETUP_ABOUT}\n  help   Print this message or the help of the given \
         subcommand(s)\n\nOptions:\n      --config <CONFIG>  {CONFIG_HELP}\n      --demo             \
         Run on a built-in demo setup: simulated backend, codes typed on standard input, this \
         terminal as the customer display, a temporary store\n  -h, --help             Print \
         help\n  -V, --version          Print version\n"
    )
}

fn check_help() -> String {
    format!(
        "{CHECK_ABOUT}\n\n{CHECK_USAGE}\n\nOptions:\n      --config <CONFIG>  {CONFIG_HELP}\n  \
         -h, --help             Print help\n"
    )
}

fn probe_help() -> String {
    format!(
        "{PROBE_ABOUT}.\n\nExit codes: 0 card found; 1 backend reachable but the card is not \
         usable; 69 backend unreachable; 76 not a wxcard answer; 78 config unusable.\n\n\
         {PROBE_USAGE}\n\nOptions:\n      --config <CONFIG>    {CONFIG_HELP}\n      \
         --wx-code <WX_CODE>  The member card code to look up (what a scanner reads)\n      \
         --card-id <CARD_ID>  The WeChat card template id, if the backend wants one\n  -h, \
         --help               Print help\n"
    )
}

fn setup_help() -> String {
    format!(
        "{SETUP_ABOUT}\n\n{SETUP_USAGE}\n\nOptions:\n      --config <CONFIG>    {CONFIG_HELP}\n      \
         --name <NAME>        The scanner's name, reported with every scan (asked for when \
         not given)\n      --yes                Ask nothing (scripted installs): the name is \
         `--name`, or \"front\"\n      --dry-run            Print the table instead of writing \
         it\n      --output <OUTPUT>    Where to write the table; scanners already in the file \
         are kept [default: {output}]\n      --candidate <PATH>   Also watch this device (a tty, \
         an input event device or a hidraw node); repeatable\n      --only               Watch \
         only the `--candidate` devices, not the standard places\n      --no-display         Do \
         not show the setup code on the customer display\n      --no-verify          Skip the \
         second scan that proves the settings\n      --timeout <TIMEOUT>  Give up waiting for a \
         scan after this many seconds [default: 300]\n  -h, --help               Print help\n",
        output = wxcardd::setup::DEFAULT_OUTPUT
    )
}

/// Why parsing stopped without a command line to run.
#[derive(Debug, PartialEq)]
enum Stop {
    /// `--help`, `help`: this text on standard output, exit 0.
    Help(String),
    /// `--version`.
    Version,
    /// A usage error: the message and the usage line on standard error, exit 2.
    Usage {
        message: String,
        usage: &'static str,
    },
}

impl Stop {
    fn usage(usage: &'static str, message: impl Into<String>) -> Stop {
        Stop::Usage {
            message: message.into(),
            usage,
        }
    }

    fn exit(self) -> ExitCode {
        match self {
            Stop::Help(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Stop::Version => {
                println!("wxcardd {}", wxcardd::VERSION);
                ExitCode::SUCCESS
            }
            Stop::Usage { message, usage } => {
                eprintln!("error: {message}\n\n{usage}\n\nFor more information, try '--help'.");
                ExitCode::from(2)
            }
        }
    }
}

/// Parses the arguments after the program's name.
fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, Stop> {
    let mut config: Option<PathBuf> = None;
    let mut demo = false;
    let mut command: Option<Command> = None;
    // For `probe`: `--wx-code` is required.
    let mut wx_code: Option<String> = None;
    let mut card_id: Option<String> = None;
    let mut setup = SetupArgs::default();
    let mut seen: Vec<&'static str> = Vec::new();

    let mut parser =
        lexopt::Parser::from_iter(std::iter::once(OsString::from("wxcardd")).chain(args));
    loop {
        let usage = match &command {
            None => USAGE,
            Some(Command::Check) => CHECK_USAGE,
            Some(Command::Probe { .. }) => PROBE_USAGE,
            Some(Command::Setup(_)) => SETUP_USAGE,
        };
        let unexpected = |arg: &dyn std::fmt::Display| {
            Stop::usage(usage, format!("unexpected argument '{arg}' found"))
        };
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => return Err(lex_error(e, usage)),
        };
        let name = match arg {
            lexopt::Arg::Short('h') => return Err(Stop::Help(help_for(command.as_ref()))),
            lexopt::Arg::Short('V') if command.is_none() => return Err(Stop::Version),
            lexopt::Arg::Short(c) => return Err(unexpected(&format!("-{c}"))),
            lexopt::Arg::Value(word) => {
                if command.is_some() {
                    return Err(unexpected(&word.to_string_lossy()));
                }
                match word.to_str() {
                    Some("check") => command = Some(Command::Check),
                    Some("probe") => {
                        command = Some(Command::Probe {
                            wx_code: String::new(),
                            card_id: None,
                        })
                    }
                    Some("setup") => command = Some(Command::Setup(SetupArgs::default())),
                    Some("help") => {
                        let of = match parser.next() {
                            Ok(Some(lexopt::Arg::Value(of))) => Some(of),
                            _ => None,
                        };
                        let text = match of.as_ref().and_then(|w| w.to_str()) {
                            None => main_help(),
                            Some("check") => check_help(),
                            Some("probe") => probe_help(),
                            Some("setup") => setup_help(),
                            Some("help") => main_help(),
                            Some(other) => {
                                return Err(Stop::usage(
                                    USAGE,
                                    format!("unrecognized subcommand '{other}'"),
                                ));
                            }
                        };
                        return Err(Stop::Help(text));
                    }
                    _ => {
                        return Err(Stop::usage(
                            USAGE,
                            format!("unrecognized subcommand '{}'", word.to_string_lossy()),
                        ));
                    }
                }
                continue;
            }
            lexopt::Arg::Long(name) => name.to_owned(),
        };
        // The option's spelling in messages, and whether it takes a value.
        let spec: Option<(&'static str, bool)> = match (name.as_str(), &command) {
            ("help", _) => return Err(Stop::Help(help_for(command.as_ref()))),
            ("version", None) => return Err(Stop::Version),
            ("config", _) => Some(("--config <CONFIG>", true)),
            ("demo", None) => Some(("--demo", false)),
            ("wx-code", Some(Command::Probe { .. })) => Some(("--wx-code <WX_CODE>", true)),
            ("card-id", Some(Command::Probe { .. })) => Some(("--card-id <CARD_ID>", true)),
            (setup_option, Some(Command::Setup(_))) => match setup_option {
                "name" => Some(("--name <NAME>", true)),
                "yes" => Some(("--yes", false)),
                "dry-run" => Some(("--dry-run", false)),
                "output" => Some(("--output <OUTPUT>", true)),
                "candidate" => Some(("--candidate <PATH>", true)),
                "only" => Some(("--only", false)),
                "no-display" => Some(("--no-display", false)),
                "no-verify" => Some(("--no-verify", false)),
                "timeout" => Some(("--timeout <TIMEOUT>", true)),
                "rate-timeout-ms" => Some(("--rate-timeout-ms <RATE_TIMEOUT_MS>", true)),
                "gap-ms" => Some(("--gap-ms <GAP_MS>", true)),
                _ => None,
            },
            _ => None,
        };
        let Some((spelling, takes_value)) = spec else {
            return Err(unexpected(&format!("--{name}")));
        };
        if name != "candidate" {
            if seen.contains(&spelling) {
                return Err(Stop::usage(
                    usage,
                    format!("the argument '{spelling}' cannot be used multiple times"),
                ));
            }
            seen.push(spelling);
        }
        // A flag given `=value` is refused by the next `parser.next()`.
        let value = if takes_value {
            parser.value().map_err(|_| {
                Stop::usage(
                    usage,
                    format!("a value is required for '{spelling}' but none was supplied"),
                )
            })?
        } else {
            OsString::new()
        };
        let text = |v: OsString| {
            v.into_string().map_err(|_| {
                Stop::usage(usage, "invalid UTF-8 was detected in one or more arguments")
            })
        };
        let number = |v: OsString| -> Result<u64, Stop> {
            let v = text(v)?;
            v.parse::<u64>().map_err(|e| {
                Stop::usage(usage, format!("invalid value '{v}' for '{spelling}': {e}"))
            })
        };
        match name.as_str() {
            "config" => config = Some(value.into()),
            "demo" => demo = true,
            "wx-code" => wx_code = Some(text(value)?),
            "card-id" => card_id = Some(text(value)?),
            "name" => setup.name = Some(text(value)?),
            "yes" => setup.yes = true,
            "dry-run" => setup.dry_run = true,
            "output" => setup.output = value.into(),
            "candidate" => setup.candidates.push(value.into()),
            "only" => setup.only = true,
            "no-display" => setup.no_display = true,
            "no-verify" => setup.no_verify = true,
            "timeout" => setup.timeout = number(value)?,
            "rate-timeout-ms" => setup.rate_timeout_ms = number(value)?,
            "gap-ms" => setup.gap_ms = number(value)?,
            _ => unreachable!("every option in `spec` is handled"),
        }
    }
    if demo && config.is_some() {
        return Err(Stop::usage(
            "Usage: wxcardd --demo",
            "the argument '--demo' cannot be used with '--config <CONFIG>'",
        ));
    }
    let command = match command {
        Some(Command::Probe { .. }) => Some(Command::Probe {
            wx_code: wx_code.ok_or_else(|| {
                Stop::usage(
                    "Usage: wxcardd probe --wx-code <WX_CODE>",
                    "the following required arguments were not provided:\n  --wx-code <WX_CODE>",
                )
            })?,
            card_id,
        }),
        Some(Command::Setup(_)) => Some(Command::Setup(setup)),
        other => other,
    };
    Ok(Cli {
        config: config.unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH)),
        demo,
        command,
    })
}

/// A lexing error in clap's words.
fn lex_error(e: lexopt::Error, usage: &'static str) -> Stop {
    let message = match e {
        lexopt::Error::UnexpectedValue { option, value } => format!(
            "unexpected value '{}' for '{option}' found; no more were expected",
            value.to_string_lossy()
        ),
        lexopt::Error::NonUnicodeValue(_) => {
            "invalid UTF-8 was detected in one or more arguments".to_owned()
        }
        other => other.to_string(),
    };
    Stop::usage(usage, message)
}

fn help_for(command: Option<&Command>) -> String {
    match command {
        None => main_help(),
        Some(Command::Check) => check_help(),
        Some(Command::Probe { .. }) => probe_help(),
        Some(Command::Setup(_)) => setup_help(),
    }
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
    let cli = match parse(std::env::args_os().skip(1)) {
        Ok(cli) => cli,
        Err(stop) => return stop.exit(),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli, Stop> {
        parse(args.iter().map(OsString::from))
    }

    fn usage_error(args: &[&str]) -> String {
        match cli(args) {
            Err(Stop::Usage { message, .. }) => message,
            Err(other) => panic!("{args:?}: {other:?}"),
            Ok(_) => panic!("{args:?}: parsed"),
        }
    }

    #[test]
    fn the_daemon_by_default_with_the_default_config() {
        let c = cli(&[]).unwrap();
        assert_eq!(c.config, PathBuf::from(config::DEFAULT_PATH));
        assert!(!c.demo);
        assert_eq!(c.command, None);
        assert!(cli(&["--demo"]).unwrap().demo);
    }

    #[test]
    fn config_before_or_after_the_command_and_with_equals() {
        for args in [
            &["--config", "/x.toml", "check"][..],
            &["check", "--config", "/x.toml"],
            &["check", "--config=/x.toml"],
        ] {
            let c = cli(args).unwrap();
            assert_eq!(c.config, PathBuf::from("/x.toml"), "{args:?}");
            assert_eq!(c.command, Some(Command::Check), "{args:?}");
        }
    }

    #[test]
    fn probe_needs_its_code() {
        let c = cli(&["probe", "--wx-code", "8123", "--card-id=pX"]).unwrap();
        assert_eq!(
            c.command,
            Some(Command::Probe {
                wx_code: "8123".into(),
                card_id: Some("pX".into())
            })
        );
        assert!(usage_error(&["probe"]).contains("--wx-code <WX_CODE>"));
        assert!(usage_error(&["probe", "--wx-code"]).contains("a value is required"));
    }

    #[test]
    fn setup_options_and_their_defaults() {
        let Some(Command::Setup(s)) = cli(&["setup"]).unwrap().command else {
            panic!()
        };
        assert_eq!(s, SetupArgs::default());
        assert_eq!(s.output, PathBuf::from(wxcardd::setup::DEFAULT_OUTPUT));
        assert_eq!((s.timeout, s.rate_timeout_ms, s.gap_ms), (300, 5000, 150));
        let args = [
            "setup",
            "--only",
            "--yes",
            "--no-display",
            "--no-verify",
            "--dry-run",
            "--name",
            "back",
            "--output=/o.toml",
            "--timeout",
            "1",
            "--rate-timeout-ms",
            "200",
            "--gap-ms",
            "50",
            "--candidate",
            "/dev/a",
            "--candidate=/dev/b",
        ];
        let Some(Command::Setup(s)) = cli(&args).unwrap().command else {
            panic!()
        };
        assert_eq!(
            s,
            SetupArgs {
                name: Some("back".into()),
                yes: true,
                dry_run: true,
                output: "/o.toml".into(),
                candidates: vec!["/dev/a".into(), "/dev/b".into()],
                only: true,
                no_display: true,
                no_verify: true,
                timeout: 1,
                rate_timeout_ms: 200,
                gap_ms: 50,
            }
        );
        assert!(usage_error(&["setup", "--timeout", "soon"]).contains("invalid value 'soon'"));
    }

    #[test]
    fn help_and_version() {
        for (args, has) in [
            (&["--help"][..], "Commands:"),
            (&["-h"], "--demo"),
            (&["help"], "Commands:"),
            (&["help", "probe"], "Exit codes:"),
            (&["probe", "--help"], "--wx-code <WX_CODE>"),
            (&["setup", "-h"], "--candidate <PATH>"),
            (&["check", "--help"], "--config <CONFIG>"),
        ] {
            match cli(args) {
                Err(Stop::Help(text)) => assert!(text.contains(has), "{args:?}: {text}"),
                other => panic!("{args:?}: {:?}", other.err()),
            }
        }
        assert_eq!(cli(&["--version"]).err(), Some(Stop::Version));
        assert_eq!(cli(&["-V"]).err(), Some(Stop::Version));
        // The hidden tuning options stay out of the help.
        assert!(!setup_help().contains("gap-ms"));
    }

    #[test]
    fn usage_errors() {
        assert!(usage_error(&["--bogus"]).contains("unexpected argument '--bogus'"));
        assert!(usage_error(&["frobnicate"]).contains("unrecognized subcommand 'frobnicate'"));
        assert!(usage_error(&["check", "extra"]).contains("unexpected argument 'extra'"));
        assert!(usage_error(&["check", "--wx-code", "1"]).contains("'--wx-code'"));
        assert!(usage_error(&["check", "--demo"]).contains("'--demo'"));
        assert!(usage_error(&["--demo", "--config", "x"]).contains("cannot be used with"));
        assert!(usage_error(&["--config", "a", "--config", "b"]).contains("multiple times"));
        assert!(usage_error(&["--demo=yes"]).contains("unexpected value 'yes'"));
    }
}
