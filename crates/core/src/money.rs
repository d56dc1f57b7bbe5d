//! Money as Stripe counts it: an integer number of the currency's minor units plus a
//! lowercase ISO 4217 code. Arithmetic never mixes currencies and never goes below
//! zero unnoticed; there is no floating point anywhere.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Invalid;

/// Stripe's presentment currencies (docs.stripe.com/currencies), lowercase.
const SUPPORTED: &[&str] = &[
    "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt",
    "bgn", "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad", "cdf",
    "chf", "clp", "cny", "cop", "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp", "etb",
    "eur", "fjd", "fkp", "gbp", "gel", "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl", "htg",
    "huf", "idr", "ils", "inr", "isk", "jmd", "jod", "jpy", "kes", "kgs", "khr", "kmf", "krw",
    "kwd", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd", "mmk",
    "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok", "npr",
    "nzd", "omr", "pab", "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd", "rub",
    "rwf", "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl", "thb",
    "tjs", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "usd", "uyu", "uzs", "vnd",
    "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw",
];

/// Currencies Stripe counts in whole units: `amount: 500` in `jpy` is ¥500.
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Currencies Stripe counts in thousandths; Stripe requires the last digit to be 0.
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// Stripe's minimum charge amounts in minor units of the charge currency. Currencies not
/// listed follow Stripe's rule of "the equivalent of 0.50 USD"; we use 50 minor units
/// (or 1 unit for zero-decimal currencies) as the floor there.
const MINIMUM_CHARGE: &[(&str, i64)] = &[
    ("usd", 50),
    ("aed", 200),
    ("aud", 50),
    ("bgn", 100),
    ("brl", 50),
    ("cad", 50),
    ("chf", 50),
    ("czk", 1500),
    ("dkk", 250),
    ("eur", 50),
    ("gbp", 30),
    ("hkd", 400),
    ("huf", 17500),
    ("inr", 50),
    ("jpy", 50),
    ("mxn", 1000),
    ("myr", 200),
    ("nok", 300),
    ("nzd", 50),
    ("pln", 200),
    ("ron", 200),
    ("sek", 300),
    ("sgd", 50),
    ("thb", 1000),
];

/// The largest amount Stripe accepts for one charge (eight digits).
pub const MAX_AMOUNT: i64 = 99_999_999;

/// A currency Stripe supports, as its lowercase ISO 4217 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "&'static str")]
pub struct Currency(&'static str);

impl Currency {
    /// Parses a currency code (case-insensitive) that Stripe supports.
    pub fn parse(code: &str) -> Result<Currency, Invalid> {
        let lower = code.trim().to_ascii_lowercase();
        SUPPORTED
            .iter()
            .find(|c| **c == lower)
            .map(|c| Currency(c))
            .ok_or_else(|| {
                Invalid::new(
                    "currency",
                    "invalid_currency",
                    format!("`{code}` is not a currency Stripe supports (use a lowercase ISO 4217 code such as usd, eur or jpy)"),
                )
            })
    }

    pub fn code(self) -> &'static str {
        self.0
    }

    /// Number of decimal digits of the minor unit: 0 (jpy), 2 (usd) or 3 (kwd).
    pub fn exponent(self) -> u32 {
        if ZERO_DECIMAL.contains(&self.0) {
            0
        } else if THREE_DECIMAL.contains(&self.0) {
            3
        } else {
            2
        }
    }

    /// Stripe's smallest chargeable amount in this currency, in minor units.
    pub fn minimum_charge(self) -> i64 {
        MINIMUM_CHARGE
            .iter()
            .find(|(c, _)| *c == self.0)
            .map(|(_, m)| *m)
            .unwrap_or(match self.exponent() {
                0 => 1,
                3 => 500,
                _ => 50,
            })
    }

    pub fn all() -> impl Iterator<Item = Currency> {
        SUPPORTED.iter().map(|c| Currency(c))
    }
}

impl From<Currency> for &'static str {
    fn from(c: Currency) -> Self {
        c.0
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// An amount of one currency in minor units. Never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Money {
    amount: i64,
    currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount would overflow")]
    Overflow,
    #[error("amount would become negative")]
    Negative,
}

impl Money {
    /// An amount in minor units; refuses negatives.
    pub fn new(amount: i64, currency: Currency) -> Result<Money, MoneyError> {
        if amount < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Money { amount, currency })
    }

    pub fn zero(currency: Currency) -> Money {
        Money {
            amount: 0,
            currency,
        }
    }

    pub fn amount(self) -> i64 {
        self.amount
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money { amount, ..self })
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        match self.amount.checked_sub(other.amount) {
            Some(a) if a >= 0 => Ok(Money { amount: a, ..self }),
            _ => Err(MoneyError::Negative),
        }
    }

    pub fn checked_mul(self, quantity: i64) -> Result<Money, MoneyError> {
        if quantity < 0 {
            return Err(MoneyError::Negative);
        }
        let amount = self
            .amount
            .checked_mul(quantity)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money { amount, ..self })
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        Ok(())
    }

    /// Checks what Stripe checks of a charge amount: at least the currency's minimum,
    /// at most eight digits, and for three-decimal currencies a multiple of 10.
    pub fn validate_charge(self, param: &str) -> Result<(), Invalid> {
        let min = self.currency.minimum_charge();
        if self.amount < min {
            return Err(Invalid::new(
                param,
                "amount_too_small",
                format!(
                    "amount must be at least {} ({min} {} minor units)",
                    self.display_of(min),
                    self.currency
                ),
            ));
        }
        if self.amount > MAX_AMOUNT {
            return Err(Invalid::new(
                param,
                "amount_too_large",
                format!("amount must be at most {MAX_AMOUNT} minor units"),
            ));
        }
        self.check_rounding(param)
    }

    /// A part of a charge (a refund, a partial capture), checked: positive, at most
    /// eight digits, and for three-decimal currencies a multiple of 10. There is no
    /// minimum: a part may be smaller than the smallest charge.
    pub fn part(amount: i64, currency: Currency, param: &str) -> Result<Money, Invalid> {
        if amount <= 0 {
            return Err(Invalid::new(
                param,
                "invalid_amount",
                "amount must be positive",
            ));
        }
        let m = Money { amount, currency };
        if amount < currency.minimum_charge() {
            // Below the minimum, only the rounding is left to check.
            m.check_rounding(param)?;
        } else {
            m.validate_charge(param)?;
        }
        Ok(m)
    }

    fn check_rounding(self, param: &str) -> Result<(), Invalid> {
        if self.currency.exponent() == 3 && self.amount % 10 != 0 {
            return Err(Invalid::new(
                param,
                "invalid_amount",
                format!(
                    "{} amounts must end in 0 (Stripe rounds three-decimal currencies to 0.01)",
                    self.currency
                ),
            ));
        }
        Ok(())
    }

    fn display_of(self, minor: i64) -> String {
        Money {
            amount: minor,
            currency: self.currency,
        }
        .to_string()
    }
}

impl fmt::Display for Money {
    /// `12.34 usd`, `500 jpy`, `1.250 kwd`: the amount in major units, exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = self.currency.exponent();
        if exp == 0 {
            return write!(f, "{} {}", self.amount, self.currency);
        }
        let div = 10_i64.pow(exp);
        write!(
            f,
            "{}.{:0width$} {}",
            self.amount / div,
            self.amount % div,
            self.currency,
            width = exp as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_positive_bounded_and_rounded_like_charges() {
        let kwd = Currency::parse("kwd").unwrap();
        let usd = Currency::parse("usd").unwrap();
        let part = |a, c| Money::part(a, c, "amount");
        assert!(
            part(1, usd).is_ok(),
            "below the minimum charge is fine for a part"
        );
        assert!(part(20, kwd).is_ok());
        assert_eq!(part(15, kwd).unwrap_err().code, "invalid_amount");
        assert_eq!(part(0, usd).unwrap_err().code, "invalid_amount");
        assert_eq!(part(-5, usd).unwrap_err().code, "invalid_amount");
        assert_eq!(part(i64::MAX, usd).unwrap_err().code, "amount_too_large");
    }

    fn c(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn exponents_follow_stripe() {
        assert_eq!(c("usd").exponent(), 2);
        assert_eq!(c("JPY").exponent(), 0);
        assert_eq!(c("krw").exponent(), 0);
        assert_eq!(c("kwd").exponent(), 3);
        assert_eq!(c("bhd").exponent(), 3);
        assert!(Currency::parse("xyz").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn display_is_exact_in_major_units() {
        assert_eq!(Money::new(1234, c("usd")).unwrap().to_string(), "12.34 usd");
        assert_eq!(Money::new(5, c("eur")).unwrap().to_string(), "0.05 eur");
        assert_eq!(Money::new(500, c("jpy")).unwrap().to_string(), "500 jpy");
        assert_eq!(Money::new(1250, c("kwd")).unwrap().to_string(), "1.250 kwd");
    }

    #[test]
    fn arithmetic_refuses_mixed_currencies_and_negatives() {
        let usd = Money::new(100, c("usd")).unwrap();
        let eur = Money::new(100, c("eur")).unwrap();
        assert!(matches!(
            usd.checked_add(eur),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert_eq!(usd.checked_sub(usd).unwrap().amount(), 0);
        assert_eq!(
            Money::zero(c("usd")).checked_sub(usd),
            Err(MoneyError::Negative)
        );
        assert_eq!(
            Money::new(i64::MAX, c("usd")).unwrap().checked_add(usd),
            Err(MoneyError::Overflow)
        );
        assert_eq!(usd.checked_mul(3).unwrap().amount(), 300);
        assert!(Money::new(-1, c("usd")).is_err());
    }

    #[test]
    fn charge_limits() {
        assert!(Money::new(49, c("usd"))
            .unwrap()
            .validate_charge("amount")
            .is_err());
        assert!(Money::new(50, c("usd"))
            .unwrap()
            .validate_charge("amount")
            .is_ok());
        assert!(Money::new(50, c("jpy"))
            .unwrap()
            .validate_charge("amount")
            .is_ok());
        assert!(Money::new(49, c("jpy"))
            .unwrap()
            .validate_charge("amount")
            .is_err());
        assert!(Money::new(1255, c("kwd"))
            .unwrap()
            .validate_charge("amount")
            .is_err());
        assert!(Money::new(1250, c("kwd"))
            .unwrap()
            .validate_charge("amount")
            .is_ok());
        assert!(Money::new(MAX_AMOUNT + 1, c("usd"))
            .unwrap()
            .validate_charge("amount")
            .is_err());
    }
}
