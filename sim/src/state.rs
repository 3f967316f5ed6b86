//! The simulated backend's state and the logic of the five endpoints.
//!
//! Pure and synchronous: each operation takes checked request values (from [`super::wire`])
//! and the current time, changes the state, counts the write and returns a [`Reply`]. The
//! HTTP layer adds faults around it. Decisions the spec leaves open are made here and
//! listed in docs/simulator.md.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::card::{Card, CardState, DEFAULT_CARD_ID, decimal_to_json, valid_wx_code};
use super::counters::Counters;
use super::paycode::{PayCodeCheck, PayCodes};
use super::wire::{CardIssueOrder, Endpoint, MemberInfo, Reply};

/// Cards, recorded orders, issued pay codes and the counters.
#[derive(Debug)]
pub struct SimState {
    initial: Vec<Card>,
    cards: BTreeMap<String, Card>,
    orders: BTreeMap<i64, Value>,
    paycodes: PayCodes,
    counters: Counters,
    next_card_code: u64,
}

fn money(text: &str) -> Decimal {
    Decimal::from_str(text).expect("a literal decimal")
}

/// The answer for a card that cannot be read or used, or `None` if it can.
fn unusable(card: &Card) -> Option<Reply> {
    match card.state {
        CardState::Active => None,
        CardState::Inactive => Some(Reply::status(601, "card not activated")),
        CardState::Unavailable => Some(Reply::status(601, "card unavailable")),
        CardState::Lost => Some(Reply::status(603, "card reported lost")),
        CardState::Voided => Some(Reply::status(604, "card voided")),
    }
}

fn no_card() -> Reply {
    Reply::status(602, "card does not exist")
}

impl SimState {
    pub fn new(cards: Vec<Card>, paycode_ttl: Duration) -> SimState {
        let mut state = SimState {
            initial: cards,
            cards: BTreeMap::new(),
            orders: BTreeMap::new(),
            paycodes: PayCodes::new(paycode_ttl),
            counters: Counters::default(),
            next_card_code: 1,
        };
        state.reset();
        state
    }

    /// Back to the cards it started with; forgets orders, pay codes and counters.
    pub fn reset(&mut self) {
        self.cards = self
            .initial
            .iter()
            .map(|c| (c.wx_code.clone(), c.clone()))
            .collect();
        self.orders.clear();
        self.paycodes.clear();
        self.counters = Counters::default();
        self.next_card_code = 1;
    }

    pub fn card(&self, wx_code: &str) -> Option<&Card> {
        self.cards.get(wx_code)
    }

    pub fn cards(&self) -> impl Iterator<Item = &Card> {
        self.cards.values()
    }

    /// Adds a card or replaces the one with the same wxCode.
    pub fn put_card(&mut self, card: Card) {
        self.cards.insert(card.wx_code.clone(), card);
    }

    pub fn order(&self, id: i64) -> Option<&Value> {
        self.orders.get(&id)
    }

    pub fn order_ids(&self) -> Vec<i64> {
        self.orders.keys().copied().collect()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    pub fn check_paycode(&self, code: &str, now: Instant) -> PayCodeCheck {
        self.paycodes.check(code, now)
    }

    pub fn paycode_ttl(&self) -> Duration {
        self.paycodes.ttl()
    }

    /// getmembercard. A non-empty `card_id` must match the card's template id.
    pub fn get_member_card(&self, card_id: Option<&str>, wx_code: &str) -> Reply {
        let Some(card) = self.cards.get(wx_code) else {
            return no_card();
        };
        if card_id.is_some_and(|id| !id.is_empty() && id != card.card_id) {
            return no_card();
        }
        if let Some(reply) = unusable(card) {
            return reply;
        }
        Reply::ok(Some(json!({
            "cardCode": card.card_code,
            "balance": decimal_to_json(&card.balance),
            "discount": decimal_to_json(&card.discount),
            "canMemberPrice": card.can_member_price,
        })))
    }

    /// getpaycode: a fresh 18-digit code for an active card.
    pub fn get_pay_code(&mut self, wx_code: &str, now: Instant) -> Reply {
        let Some(card) = self.cards.get(wx_code) else {
            return no_card();
        };
        if let Some(reply) = unusable(card) {
            return reply;
        }
        let code = self.paycodes.issue(wx_code, now);
        Reply::ok(Some(Value::String(code)))
    }

    /// activemember: inactive becomes active (one application); an already active card
    /// answers 200 "already active" and counts as a duplicate receipt.
    pub fn active_member(&mut self, info: &MemberInfo) -> Reply {
        let (reply, applied) = self.activate(info);
        self.counters
            .receipt(Endpoint::ActiveMember, &info.wx_code, applied);
        reply
    }

    fn activate(&mut self, info: &MemberInfo) -> (Reply, bool) {
        let Some(card) = self.cards.get_mut(&info.wx_code) else {
            return (no_card(), false);
        };
        if info
            .wx_card_id
            .as_ref()
            .is_some_and(|id| *id != card.card_id)
        {
            return (no_card(), false);
        }
        match card.state {
            CardState::Inactive => {
                card.state = CardState::Active;
                if card.card_code.is_empty()
                    && let Some(code) = &info.card_code
                {
                    card.card_code = code.clone();
                }
                (Reply::ok(None), true)
            }
            CardState::Active => (Reply::status(200, "already active"), false),
            _ => (unusable(card).unwrap_or_else(no_card), false),
        }
    }

    /// createmembercard: creates an active card. A wxCode that already exists answers 200
    /// with the existing card's data (a duplicate receipt), or the status of a blocked card.
    pub fn create_member_card(&mut self, info: &MemberInfo) -> Reply {
        if !valid_wx_code(&info.wx_code) {
            return Reply::bad_request("wxCode must be 1-64 letters or digits");
        }
        let (reply, applied) = match self.cards.get(&info.wx_code) {
            Some(card) => match card.state.blocking_status() {
                Some(_) => (unusable(card).unwrap_or_else(no_card), false),
                None => (Self::created(card, "already a member"), false),
            },
            None => {
                let card_code = match &info.card_code {
                    Some(code) => code.clone(),
                    None => self.new_card_code(),
                };
                let card_id = info.wx_card_id.as_deref().unwrap_or(DEFAULT_CARD_ID);
                let mut card = Card::new(&info.wx_code, card_id, &card_code);
                card.balance = money("0.00");
                card.discount = money("1.00");
                let reply = Self::created(&card, "");
                self.cards.insert(card.wx_code.clone(), card);
                (reply, true)
            }
        };
        self.counters
            .receipt(Endpoint::CreateMemberCard, &info.wx_code, applied);
        reply
    }

    fn created(card: &Card, message: &str) -> Reply {
        let mut reply = Reply::ok(Some(json!({
            "wxCardId": card.card_id,
            "cardCode": card.card_code,
            "balance": decimal_to_json(&card.balance),
            "points": decimal_to_json(&card.points),
        })));
        reply.message = message.to_owned();
        reply
    }

    fn new_card_code(&mut self) -> String {
        loop {
            let code = format!("SIM{:08}", self.next_card_code);
            self.next_card_code += 1;
            if !self.cards.values().any(|c| c.card_code == code) {
                return code;
            }
        }
    }

    /// savecardid: records the order and creates an inactive card for every detail row
    /// with a wxCode not yet known. A repeated order id answers 801 and changes nothing.
    pub fn save_card_id(&mut self, order: CardIssueOrder) -> Reply {
        if let Some(bad) = order
            .details
            .iter()
            .find(|d| !d.wx_code.is_empty() && !valid_wx_code(&d.wx_code))
        {
            return Reply::bad_request(format!(
                "details[].wxCode must be 1-64 letters or digits, got {:?}",
                bad.wx_code
            ));
        }
        if self.orders.contains_key(&order.id) {
            self.counters.order_receipt(order.id, false);
            return Reply::status(801, "duplicate order id");
        }
        let card_id = if order.card_id.is_empty() {
            DEFAULT_CARD_ID
        } else {
            &order.card_id
        };
        for detail in order.details.iter().filter(|d| !d.wx_code.is_empty()) {
            if !self.cards.contains_key(&detail.wx_code) {
                let mut card = Card::new(&detail.wx_code, card_id, &detail.card_code);
                card.state = CardState::Inactive;
                card.balance = money("0.00");
                card.discount = money("1.00");
                self.cards.insert(detail.wx_code.clone(), card);
            }
        }
        self.orders.insert(order.id, order.raw);
        self.counters.order_receipt(order.id, true);
        Reply::ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::default_cards;

    const ACTIVE: &str = "812345678901234567";
    const INACTIVE: &str = "812345678901234570";
    const LOST: &str = "812345678901234571";
    const VOIDED: &str = "812345678901234572";
    const UNAVAILABLE: &str = "812345678901234573";

    fn state() -> SimState {
        SimState::new(default_cards(), Duration::from_secs(60))
    }

    fn member(wx_code: &str) -> MemberInfo {
        MemberInfo {
            wx_code: wx_code.into(),
            wx_card_id: None,
            card_code: None,
        }
    }

    #[test]
    fn reads_answer_by_state() {
        let mut s = state();
        let r = s.get_member_card(Some(DEFAULT_CARD_ID), ACTIVE);
        assert_eq!(r.status, 200);
        // Keys come out sorted; the decimals keep their text.
        let data = serde_json::to_string(&r.data.unwrap()).unwrap();
        assert_eq!(
            data,
            r#"{"balance":128.50,"canMemberPrice":true,"cardCode":"M0001001","discount":0.95}"#
        );
        for (code, status) in [
            (INACTIVE, 601),
            (LOST, 603),
            (VOIDED, 604),
            (UNAVAILABLE, 601),
            ("999999999999", 602),
        ] {
            assert_eq!(s.get_member_card(None, code).status, status, "{code}");
            assert_eq!(
                s.get_pay_code(code, Instant::now()).status,
                status,
                "{code}"
            );
        }
        assert_eq!(s.get_member_card(Some("other"), ACTIVE).status, 602);
        assert_eq!(s.get_member_card(Some(""), ACTIVE).status, 200);
    }

    #[test]
    fn activation_applies_once() {
        let mut s = state();
        assert_eq!(s.active_member(&member(INACTIVE)).status, 200);
        assert_eq!(s.card(INACTIVE).unwrap().state, CardState::Active);
        let again = s.active_member(&member(INACTIVE));
        assert_eq!(
            (again.status, again.message.as_str()),
            (200, "already active")
        );
        let c = s.counters().write(Endpoint::ActiveMember, INACTIVE);
        assert_eq!((c.receipts, c.applications), (2, 1));
        assert_eq!(s.get_member_card(None, INACTIVE).status, 200);
        for (code, status) in [(LOST, 603), (VOIDED, 604), (UNAVAILABLE, 601), ("42", 602)] {
            assert_eq!(s.active_member(&member(code)).status, status);
            assert_eq!(
                s.counters()
                    .write(Endpoint::ActiveMember, code)
                    .applications,
                0
            );
        }
        let mut wrong_template = member(ACTIVE);
        wrong_template.wx_card_id = Some("nope".into());
        assert_eq!(s.active_member(&wrong_template).status, 602);
    }

    #[test]
    fn creation_is_idempotent_per_wx_code() {
        let mut s = state();
        let new = "876543210987654321";
        let first = s.create_member_card(&member(new));
        assert_eq!(first.status, 200);
        let data = first.data.clone().unwrap();
        assert_eq!(data["cardCode"].as_str(), Some("SIM00000001"));
        assert_eq!(
            serde_json::to_string(&data["balance"]).unwrap(),
            "0.00".to_owned()
        );
        let second = s.create_member_card(&member(new));
        assert_eq!(second.data, first.data);
        let c = s.counters().write(Endpoint::CreateMemberCard, new);
        assert_eq!((c.receipts, c.applications), (2, 1));
        assert_eq!(s.card(new).unwrap().state, CardState::Active);
        assert_eq!(s.create_member_card(&member(LOST)).status, 603);
        assert_eq!(s.create_member_card(&member("bad code")).http, 400);
    }

    #[test]
    fn orders_record_once_and_issue_inactive_cards() {
        let mut s = state();
        let body = br#"{"id":9,"cardId":"tpl","details":[
            {"id":1,"orderId":9,"wxCode":"700000000001","cardCode":"C1"},
            {"id":2,"orderId":9,"wxCode":"","cardCode":"C2"}]}"#;
        let order = CardIssueOrder::parse(body).unwrap();
        assert_eq!(s.save_card_id(order.clone()).status, 200);
        assert_eq!(s.save_card_id(order).status, 801);
        let c = s.counters().write(Endpoint::SaveCardId, "9");
        assert_eq!((c.receipts, c.applications), (2, 1));
        let card = s.card("700000000001").unwrap();
        assert_eq!(
            (card.state, card.card_id.as_str(), card.card_code.as_str()),
            (CardState::Inactive, "tpl", "C1")
        );
        assert_eq!(s.order_ids(), vec![9]);
        let bad = CardIssueOrder::parse(br#"{"id":10,"details":[{"wxCode":"a b"}]}"#).unwrap();
        assert_eq!(s.save_card_id(bad).http, 400);
        assert_eq!(s.counters().write(Endpoint::SaveCardId, "10").receipts, 0);
    }

    #[test]
    fn pay_codes_expire_and_reset_forgets() {
        let mut s = state();
        let t0 = Instant::now();
        let code = s.get_pay_code(ACTIVE, t0).data.unwrap();
        let code = code.as_str().unwrap().to_owned();
        assert!(matches!(
            s.check_paycode(&code, t0),
            PayCodeCheck::Valid { .. }
        ));
        assert!(matches!(
            s.check_paycode(&code, t0 + Duration::from_secs(61)),
            PayCodeCheck::Expired { .. }
        ));
        s.active_member(&member(INACTIVE));
        s.reset();
        assert_eq!(s.check_paycode(&code, t0), PayCodeCheck::Unknown);
        assert_eq!(s.card(INACTIVE).unwrap().state, CardState::Inactive);
        assert_eq!(s.counters(), &Counters::default());
    }
}
