//! `wxcardd probe`: the technician's one-shot check at install time.
//!
//! Calls `getmembercard` once with the real config (URL, token file, CA, timeouts) and says in
//! plain words what happened and what to check next. Exit codes follow sysexits so scripts can
//! tell the cases apart; see [`Outcome::exit_code`].

use std::time::Instant;

use wxcard_hal::display::MaskedCardNumber;
use wxcard_hal::text::untrusted;

use crate::api::{ApiError, Client, MemberCard, ServerFault, Status, TransportKind};
use crate::config::Config;

/// What the probe found.
#[derive(Debug)]
pub enum Outcome {
    /// The backend answered 200 with the card.
    Card(MemberCard),
    /// The backend answered with a business status: reachable, but not a usable card.
    Business(Status, String),
    /// Nothing usable came back.
    Unreachable(ApiError),
    /// Something came back that is not a wxcard answer.
    BadAnswer(ApiError),
    /// The client could not be built from the config.
    Config(String),
}

impl Outcome {
    /// 0 card found; 1 backend reachable but the card is not usable (lost, unknown, ...);
    /// 69 (EX_UNAVAILABLE) backend unreachable; 76 (EX_PROTOCOL) not a wxcard answer (a
    /// redirect included: it is never followed);
    /// 78 (EX_CONFIG) the config cannot be used.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Card(_) => 0,
            Outcome::Business(..) => 1,
            Outcome::Unreachable(_) => 69,
            Outcome::BadAnswer(_) => 76,
            Outcome::Config(_) => 78,
        }
    }
}

/// The probe's result and its report for a person.
#[derive(Debug)]
pub struct Report {
    /// What happened.
    pub outcome: Outcome,
    /// Plain-words lines for the terminal.
    pub text: String,
}

/// Runs the probe.
pub fn run(config: &Config, wx_code: &str, card_id: Option<&str>) -> Report {
    let url = &config.api.base_url;
    let client = match Client::new(&config.api) {
        Ok(c) => c,
        Err(e) => {
            return Report {
                text: format!("The config cannot be used: {e}"),
                outcome: Outcome::Config(e.to_string()),
            };
        }
    };
    let started = Instant::now();
    let result = client.get_member_card(card_id, wx_code, None);
    let ms = started.elapsed().as_millis();
    let outcome = match result {
        Ok(card) => Outcome::Card(card),
        Err(ApiError::Business {
            status, message, ..
        }) => Outcome::Business(status, message),
        Err(e @ ApiError::Transport { .. }) => Outcome::Unreachable(e),
        Err(e) => Outcome::BadAnswer(e),
    };
    let text = match &outcome {
        Outcome::Card(card) => format!(
            "OK: the backend at {url} answered in {ms} ms.\n\
             {}: balance {}, discount {}, member price {}",
            card_line(&card.card_code),
            card.balance,
            card.discount,
            if card.can_member_price { "yes" } else { "no" },
        ),
        Outcome::Business(status, message) => {
            let what = match status {
                Status::CardLost => "the card is reported lost".to_owned(),
                Status::CardNotFound => "the card does not exist".to_owned(),
                Status::CardVoided => "the card is voided".to_owned(),
                Status::CardUnavailable => "the card is unavailable".to_owned(),
                other => format!("status {other}"),
            };
            let code = status
                .code()
                .map(|c| format!(" ({c} {})", status.meaning_zh()));
            let message = if message.is_empty() {
                String::new()
            } else {
                format!("\nbackend message: {}", untrusted(message))
            };
            format!(
                "The backend at {url} is reachable (answered in {ms} ms), and says {what}{}.{message}",
                code.unwrap_or_default()
            )
        }
        Outcome::Unreachable(e) => {
            let hint = match e.transport_kind() {
                Some(TransportKind::Dns) => {
                    "check the host name in api.base_url and the DNS settings"
                }
                Some(TransportKind::Tls) => {
                    "check the server certificate, or set api.ca_file to the CA that signed it"
                }
                Some(TransportKind::Refused) => {
                    "nothing accepts connections there: check the port in api.base_url and that the backend is up"
                }
                _ => "check the network cable, the route to the backend and any firewall",
            };
            format!("FAILED: the backend at {url} is unreachable after {ms} ms: {e}\n{hint}.")
        }
        Outcome::BadAnswer(ApiError::Server {
            fault: ServerFault::Redirect { code, location },
            ..
        }) => format!(
            "FAILED: the backend at {url} answered in {ms} ms with a redirect (HTTP {code}) to {}.\n\
             wxcardd never follows redirects, so the token was not sent there and nothing was \
             delivered. Set api.base_url to the address the API really answers at (check http \
             versus https, the host and the path), then run the probe again.",
            if location.is_empty() {
                "nowhere (no Location header)"
            } else {
                location
            }
        ),
        Outcome::BadAnswer(e) => {
            let hint = match e {
                ApiError::Server {
                    fault:
                        ServerFault::HttpStatus {
                            code: 401 | 403, ..
                        },
                    ..
                } => "the backend refused the credentials: check the token in api.headers_file",
                ApiError::Server {
                    fault: ServerFault::HttpStatus { code: 404, .. },
                    ..
                } => "the path was not found: check that api.base_url ends where the API begins",
                _ => {
                    "something answered, but not as the wxcard API does: check api.base_url and any proxy in between"
                }
            };
            format!("FAILED: the backend at {url} answered in {ms} ms, but badly: {e}\n{hint}.")
        }
        Outcome::Config(_) => unreachable!("handled above"),
    };
    Report { outcome, text }
}

/// `card **** 7890`: the card number masked the way the customer display shows it.
fn card_line(card_code: &str) -> String {
    format!("card {}", MaskedCardNumber::new(card_code))
}

#[cfg(test)]
mod tests {
    #[test]
    fn card_numbers_show_as_on_the_customer_display() {
        assert_eq!(super::card_line("6200001234567"), "card **** 4567");
        assert_eq!(super::card_line("123"), "card **** ****");
        assert_eq!(super::card_line(""), "card **** ****");
    }
}
