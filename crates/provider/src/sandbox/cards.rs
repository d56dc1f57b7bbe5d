//! Stripe's test cards, as the sandbox honours them: the numbers and `pm_card_…`
//! tokens of Stripe's testing docs, each with what happens when it is attached to a
//! customer and when it is charged.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decline {
    pub code: &'static str,
    pub decline_code: Option<&'static str>,
    pub message: &'static str,
}

const GENERIC: Decline = Decline {
    code: "card_declined",
    decline_code: Some("generic_decline"),
    message: "Your card was declined.",
};
const INSUFFICIENT: Decline = Decline {
    code: "card_declined",
    decline_code: Some("insufficient_funds"),
    message: "Your card has insufficient funds.",
};
const EXPIRED: Decline = Decline {
    code: "expired_card",
    decline_code: Some("expired_card"),
    message: "Your card has expired.",
};
const LIVE_CARD: Decline = Decline {
    code: "card_declined",
    decline_code: Some("test_mode_live_card"),
    message: "Your card was declined. Your request was in test mode, but used a non test card.",
};
const BAD_NUMBER: Decline = Decline {
    code: "incorrect_number",
    decline_code: None,
    message: "Your card number is incorrect.",
};

/// When the card's bank asks the customer to authenticate a charge (3-D Secure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    Never,
    /// Every charge, on-session or off (4000 0027 6000 3184).
    Always,
    /// Charges made without the customer: a saved card charged off-session, a renewal
    /// (4000 0025 0000 3155).
    OffSession,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestCard {
    pub number: &'static str,
    pub token: &'static str,
    pub brand: &'static str,
    /// Refused already when attached to a customer (Stripe checks the card then).
    pub on_attach: Option<Decline>,
    /// Refused when charged.
    pub on_charge: Option<Decline>,
    pub authentication: Authentication,
}

pub const CARDS: &[TestCard] = &[
    TestCard {
        number: "4242424242424242",
        token: "pm_card_visa",
        brand: "visa",
        on_attach: None,
        on_charge: None,
        authentication: Authentication::Never,
    },
    TestCard {
        number: "5555555555554444",
        token: "pm_card_mastercard",
        brand: "mastercard",
        on_attach: None,
        on_charge: None,
        authentication: Authentication::Never,
    },
    TestCard {
        number: "4000000000000002",
        token: "pm_card_chargeDeclined",
        brand: "visa",
        on_attach: Some(GENERIC),
        on_charge: Some(GENERIC),
        authentication: Authentication::Never,
    },
    TestCard {
        number: "4000000000009995",
        token: "pm_card_chargeDeclinedInsufficientFunds",
        brand: "visa",
        on_attach: None,
        on_charge: Some(INSUFFICIENT),
        authentication: Authentication::Never,
    },
    TestCard {
        number: "4000000000000069",
        token: "pm_card_chargeDeclinedExpiredCard",
        brand: "visa",
        on_attach: Some(EXPIRED),
        on_charge: Some(EXPIRED),
        authentication: Authentication::Never,
    },
    TestCard {
        number: "4000000000000341",
        token: "pm_card_visa_chargeDeclined",
        brand: "visa",
        on_attach: None,
        on_charge: Some(GENERIC),
        authentication: Authentication::Never,
    },
    TestCard {
        number: "4000002760003184",
        token: "pm_card_authenticationRequired",
        brand: "visa",
        on_attach: None,
        on_charge: None,
        authentication: Authentication::Always,
    },
    TestCard {
        number: "4000002500003155",
        token: "pm_card_authenticationRequiredOnSetup",
        brand: "visa",
        on_attach: None,
        on_charge: None,
        authentication: Authentication::OffSession,
    },
];

/// The card a number or token names. A number that is not a test card is declined as
/// Stripe's test mode declines real cards; one that fails the Luhn check is incorrect.
pub fn lookup(number_or_token: &str) -> Result<TestCard, Decline> {
    let digits: String = number_or_token
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if let Some(c) = CARDS
        .iter()
        .find(|c| c.number == digits || c.token == number_or_token)
    {
        return Ok(*c);
    }
    if digits.len() >= 12
        && digits.len() <= 19
        && digits.chars().all(|c| c.is_ascii_digit())
        && luhn(&digits)
    {
        Err(LIVE_CARD)
    } else {
        Err(BAD_NUMBER)
    }
}

/// The Luhn check every card number passes.
pub fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether a lookup's refusal is a typo (not a card number at all) rather than a
/// decline: Stripe refuses such a number before any charge is tried.
pub fn is_typo(d: &Decline) -> bool {
    d.code == BAD_NUMBER.code
}

impl TestCard {
    pub fn last4(&self) -> &'static str {
        &self.number[self.number.len() - 4..]
    }

    /// Whether a charge needs the customer to authenticate it first.
    pub fn needs_authentication(&self, off_session: bool) -> bool {
        match self.authentication {
            Authentication::Never => false,
            Authentication::Always => true,
            Authentication::OffSession => off_session,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_and_their_outcomes() {
        assert_eq!(lookup("4242 4242 4242 4242").unwrap().on_charge, None);
        assert_eq!(lookup("pm_card_visa").unwrap().last4(), "4242");
        assert_eq!(
            lookup("4000000000000002")
                .unwrap()
                .on_charge
                .unwrap()
                .decline_code,
            Some("generic_decline")
        );
        assert_eq!(
            lookup("4000-0000-0000-9995")
                .unwrap()
                .on_charge
                .unwrap()
                .decline_code,
            Some("insufficient_funds")
        );
        assert_eq!(
            lookup("4000000000000069").unwrap().on_charge.unwrap().code,
            "expired_card"
        );
        assert_eq!(
            lookup("4111111111111111").unwrap_err().decline_code,
            Some("test_mode_live_card")
        );
        assert_eq!(lookup("1234").unwrap_err().code, "incorrect_number");
        assert!(CARDS.iter().all(|c| luhn(c.number)));
        let always = lookup("4000 0027 6000 3184").unwrap();
        assert!(always.needs_authentication(false) && always.needs_authentication(true));
        let saved = lookup("4000 0025 0000 3155").unwrap();
        assert!(!saved.needs_authentication(false) && saved.needs_authentication(true));
        assert!(!lookup("pm_card_visa").unwrap().needs_authentication(true));
    }
}
