//! Products and prices: what may be sold, validated as Stripe validates a Price.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::money::Currency;
use crate::Invalid;

/// Largest `unit_amount` Stripe accepts on a price (eight digits).
pub const MAX_UNIT_AMOUNT: i64 = 99_999_999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Day,
    Week,
    Month,
    Year,
}

impl Interval {
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
            Interval::Year => "year",
        }
    }

    pub fn parse(s: &str) -> Option<Interval> {
        match s {
            "day" => Some(Interval::Day),
            "week" => Some(Interval::Week),
            "month" => Some(Interval::Month),
            "year" => Some(Interval::Year),
            _ => None,
        }
    }

    /// Stripe allows at most one year between charges.
    fn max_count(self) -> u32 {
        match self {
            Interval::Day => 365,
            Interval::Week => 52,
            Interval::Month => 12,
            Interval::Year => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurring {
    pub interval: Interval,
    pub interval_count: u32,
}

impl Recurring {
    pub fn new(interval: Interval, interval_count: Option<i64>) -> Result<Recurring, Invalid> {
        let count = interval_count.unwrap_or(1);
        if count < 1 || count > i64::from(interval.max_count()) {
            return Err(Invalid::new(
                "recurring.interval_count",
                "invalid_interval_count",
                format!(
                    "interval_count must be between 1 and {} for interval `{}` (at most one year between charges)",
                    interval.max_count(),
                    interval.as_str()
                ),
            ));
        }
        Ok(Recurring {
            interval,
            interval_count: count as u32,
        })
    }
}

pub fn validate_name(name: &str) -> Result<String, Invalid> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(Invalid::new(
            "name",
            "parameter_missing",
            "name must not be empty",
        ));
    }
    if trimmed.chars().count() > 250 {
        return Err(Invalid::new(
            "name",
            "string_too_long",
            "name is at most 250 characters",
        ));
    }
    Ok(trimmed.to_owned())
}

pub fn validate_description(description: &str) -> Result<(), Invalid> {
    if description.chars().count() > 5000 {
        return Err(Invalid::new(
            "description",
            "string_too_long",
            "description is at most 5000 characters",
        ));
    }
    Ok(())
}

pub fn validate_unit_amount(amount: i64, currency: Currency) -> Result<(), Invalid> {
    if !(0..=MAX_UNIT_AMOUNT).contains(&amount) {
        return Err(Invalid::new(
            "unit_amount",
            "invalid_amount",
            format!("unit_amount must be an integer from 0 to {MAX_UNIT_AMOUNT} (minor units)"),
        ));
    }
    if currency.exponent() == 3 && amount % 10 != 0 {
        return Err(Invalid::new(
            "unit_amount",
            "invalid_amount",
            format!(
                "{currency} amounts must end in 0 (Stripe rounds three-decimal currencies to 0.01)"
            ),
        ));
    }
    Ok(())
}

/// Stripe's metadata rules: up to 50 keys, keys up to 40 characters without square
/// brackets, values up to 500 characters.
pub fn validate_metadata(metadata: &BTreeMap<String, String>) -> Result<(), Invalid> {
    if metadata.len() > 50 {
        return Err(Invalid::new(
            "metadata",
            "metadata_invalid",
            "metadata has at most 50 keys",
        ));
    }
    for (k, v) in metadata {
        if k.is_empty() || k.chars().count() > 40 || k.contains(['[', ']']) {
            return Err(Invalid::new(
                "metadata",
                "metadata_invalid",
                format!("metadata key `{k}` must be 1 to 40 characters without square brackets"),
            ));
        }
        if v.chars().count() > 500 {
            return Err(Invalid::new(
                format!("metadata[{k}]"),
                "metadata_invalid",
                "metadata values are at most 500 characters",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_intervals_follow_stripe_limits() {
        let usd = Currency::parse("usd").unwrap();
        assert!(validate_unit_amount(0, usd).is_ok());
        assert!(validate_unit_amount(MAX_UNIT_AMOUNT, usd).is_ok());
        assert!(validate_unit_amount(MAX_UNIT_AMOUNT + 1, usd).is_err());
        assert!(validate_unit_amount(-1, usd).is_err());
        assert!(validate_unit_amount(1005, Currency::parse("kwd").unwrap()).is_err());
        assert!(Recurring::new(Interval::Month, Some(12)).is_ok());
        assert!(Recurring::new(Interval::Month, Some(13)).is_err());
        assert!(Recurring::new(Interval::Year, Some(2)).is_err());
        assert!(Recurring::new(Interval::Day, Some(0)).is_err());
        assert_eq!(
            Recurring::new(Interval::Week, None).unwrap().interval_count,
            1
        );
    }

    #[test]
    fn names_and_metadata() {
        assert_eq!(validate_name("  Tea ").unwrap(), "Tea");
        assert!(validate_name("   ").is_err());
        let mut m = BTreeMap::new();
        m.insert("k".to_string(), "v".to_string());
        assert!(validate_metadata(&m).is_ok());
        m.insert("a[b]".to_string(), "v".to_string());
        assert!(validate_metadata(&m).is_err());
        let big: BTreeMap<_, _> = (0..51).map(|i| (i.to_string(), String::new())).collect();
        assert!(validate_metadata(&big).is_err());
    }
}
