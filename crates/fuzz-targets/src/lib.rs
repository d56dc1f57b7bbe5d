//! The bodies of paybridge's fuzz targets, as plain functions of a byte string. Each one
//! feeds untrusted input to the domain core and panics (an `assert!`) when a property
//! breaks; a panic in the core itself, an arithmetic overflow included, fails it too.
//!
//! Two things call them: the libFuzzer binaries in `fuzz/fuzz_targets/` (one-line
//! wrappers, run by `scripts/fuzz`), and this crate's test, which replays every file of
//! `fuzz/seeds/<target>/` and `fuzz/corpus/<target>/` through its target on every
//! `cargo nextest run --workspace`, on the stable toolchain.

use std::time::Duration;

use paybridge_core::money::{Money, MoneyError, MAX_AMOUNT};
use paybridge_core::retry::{self, Attempt, Next, MAX_RETRY_AFTER};
use paybridge_core::stripe::{event, signature};
use paybridge_core::{catalog, Currency};

/// One target: the name of its libFuzzer binary and of its seed and corpus directories,
/// and its body.
pub type Target = (&'static str, fn(&[u8]));

pub const TARGETS: &[Target] = &[
    ("stripe_signature", stripe_signature),
    ("stripe_event", stripe_event),
    ("retry_after", retry_after),
    ("money", money),
];

/// The `Stripe-Signature` parser and verifier never panic, whatever the header, body,
/// secret or clock; `verify` refuses whatever `parse` refuses and accepts only fresh
/// timestamps; and a signature made by `sign`, at any timestamp the parser accepts,
/// verifies within the tolerance and nowhere else, and only with its own secret.
///
/// Input: the first byte is the length of the header (counting that byte); the rest is
/// the body, which is also tried as a signing secret.
pub fn stripe_signature(data: &[u8]) {
    use signature::{SignatureError, TOLERANCE_SECS};
    let cut = data.len().min(data.first().copied().unwrap_or(0) as usize);
    let (header, body) = data.split_at(cut);
    let header = String::from_utf8_lossy(header);
    let now = 1_700_000_000;
    let parsed = signature::parse(&header);
    let verified = signature::verify(&header, body, &[b"whsec_fuzz", body], now);
    match &parsed {
        Err(e) => assert_eq!(verified, Err(e.clone())),
        Ok(h) if verified.is_ok() => {
            assert!(h.timestamp.abs_diff(now) <= TOLERANCE_SECS as u64)
        }
        Ok(_) => {}
    }

    let t = parsed.as_ref().map_or(now, |h| h.timestamp);
    let good = signature::sign(body, b"whsec_fuzz", t);
    assert_eq!(signature::verify(&good, body, &[b"whsec_fuzz"], t), Ok(()));
    assert_eq!(
        signature::verify(&good, body, &[b"whsec_other"], t),
        Err(SignatureError::Mismatch)
    );
    for late in [TOLERANCE_SECS, -TOLERANCE_SECS] {
        if let Some(at) = t.checked_add(late) {
            assert_eq!(signature::verify(&good, body, &[b"whsec_fuzz"], at), Ok(()));
        }
    }
    for stale in [TOLERANCE_SECS + 1, -TOLERANCE_SECS - 1, 1 << 40, -(1 << 40)] {
        if let Some(at) = t.checked_add(stale) {
            assert_eq!(
                signature::verify(&good, body, &[b"whsec_fuzz"], at),
                Err(SignatureError::Stale)
            );
        }
    }
}

/// The event envelope parser and the reading of an event's object never panic; reading
/// is deterministic; and an event written back as JSON (as the store keeps it) parses
/// to the same envelope and reads the same.
pub fn stripe_event(data: &[u8]) {
    let Ok(ev) = event::parse(data) else { return };
    assert!(!ev.id.is_empty() && ev.id.len() <= 255);
    assert!(!ev.kind.is_empty() && ev.kind.len() <= 255);
    assert!(ev.object.is_object());
    let a = event::read(&ev).map(reading);
    let b = event::read(&ev).map(reading);
    assert_eq!(a, b);

    let again = serde_json::json!({
        "id": ev.id,
        "type": ev.kind,
        "created": ev.created,
        "livemode": ev.livemode,
        "account": ev.account,
        "data": { "object": ev.object },
    });
    let again = event::parse(again.to_string().as_bytes()).expect("a parsed event parses again");
    assert_eq!(
        (&again.id, &again.kind, again.created, again.livemode),
        (&ev.id, &ev.kind, ev.created, ev.livemode)
    );
    assert_eq!(again.account, ev.account);
    assert_eq!(event::read(&again).map(reading), a);
}

/// Everything a reading says, comparable.
fn reading(r: event::Reading) -> impl PartialEq + std::fmt::Debug {
    (
        r.refs,
        r.payment,
        r.checkout,
        r.card,
        r.amount,
        r.refund,
        r.subscription,
        r.invoice,
    )
}

/// A callback receiver's `Retry-After` (seconds or an IMF-fixdate) never panics the
/// parser; seconds are taken exactly; any instant from year 0 to 9999 written as an
/// IMF-fixdate parses back to the wait until it; and whatever the header, the delivery
/// waits what the receiver asked, up to a day, and never less than the jittered
/// schedule.
///
/// Input: a first line with the clock (`now`, unix seconds; 1700000000 when it is not
/// a number), then the header.
pub fn retry_after(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (now, header) = match text.split_once('\n') {
        Some((n, h)) => (n.trim().parse::<i64>().unwrap_or(1_700_000_000), h),
        None => (1_700_000_000, text.as_ref()),
    };
    let asked = retry::parse_retry_after(header, now);
    if let Ok(secs) = header.trim().parse::<u64>() {
        assert_eq!(asked, Some(Duration::from_secs(secs)));
    }

    for offset in [0, 1, -1, 59, 3599, 86_399, 86_400 * 366, -86_400 * 366] {
        let Some(at) = now.checked_add(offset) else {
            continue;
        };
        let Some(date) = imf_fixdate(at) else {
            continue;
        };
        assert_eq!(
            retry::parse_retry_after(&date, now),
            Some(Duration::from_secs(offset.max(0) as u64)),
            "{date} at {now}"
        );
    }

    let schedule = [
        Duration::ZERO,
        Duration::from_secs(5),
        Duration::from_secs(300),
    ];
    let jitter = (now.rem_euclid(201) - 100) as f64 / 100.0;
    for done in 1..=schedule.len() {
        let next = retry::next(
            &schedule,
            done,
            Attempt::Failed { retry_after: asked },
            jitter,
        );
        match schedule.get(done) {
            None => assert_eq!(next, Next::GiveUp),
            Some(wait) => {
                let Next::RetryIn(d) = next else {
                    panic!("{next:?} for a failed attempt within the schedule")
                };
                assert!(d >= asked.unwrap_or_default().min(MAX_RETRY_AFTER));
                assert!(d >= wait.mul_f64(0.8).saturating_sub(Duration::from_secs(1)));
                assert!(d <= MAX_RETRY_AFTER.max(wait.mul_f64(1.2) + Duration::from_secs(1)));
            }
        }
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for a unix time, for years 0 to 9999.
fn imf_fixdate(unix: i64) -> Option<String> {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (year, month, day) = paybridge_core::civil::civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[month as usize - 1],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

/// Currency codes and amounts as requests carry them: `Currency::parse` accepts exactly
/// Stripe's codes, trimmed and in any case; `Money` refuses negatives, shows an amount
/// exactly in major units, and its checked arithmetic is exact or refuses; and the
/// charge and unit-amount rules accept exactly what Stripe accepts.
///
/// Input: `<currency>|<amount>|<amount>|<quantity>`, the numbers in decimal (0 when
/// they are not numbers).
pub fn money(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '|');
    let code = parts.next().unwrap_or_default();
    let mut number = || {
        parts
            .next()
            .and_then(|p| p.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    let (a, b, q) = (number(), number(), number());

    let parsed = Currency::parse(code);
    let expected = Currency::all().find(|c| c.code().eq_ignore_ascii_case(code.trim()));
    assert_eq!(parsed.as_ref().ok(), expected.as_ref(), "`{code}`");
    let usd = Currency::parse("usd").unwrap();
    let cur = parsed.unwrap_or(usd);
    assert_eq!(Currency::parse(cur.code()), Ok(cur));
    assert_eq!(Currency::parse(&cur.code().to_ascii_uppercase()), Ok(cur));

    for x in [a, b] {
        let whole = cur.exponent() != 3 || x % 10 == 0;
        assert_eq!(
            catalog::validate_unit_amount(x, cur).is_ok(),
            (0..=catalog::MAX_UNIT_AMOUNT).contains(&x) && whole
        );
        let m = Money::new(x, cur);
        assert_eq!(m.is_ok(), x >= 0);
        let Ok(m) = m else { continue };
        assert_eq!(minor_units(&m.to_string(), cur), Some(x), "{m}");
        assert_eq!(
            m.validate_charge("amount").is_ok(),
            (cur.minimum_charge()..=MAX_AMOUNT).contains(&x) && whole
        );
    }

    let (Ok(x), Ok(y)) = (Money::new(a, cur), Money::new(b, cur)) else {
        return;
    };
    match x.checked_add(y) {
        Ok(sum) => {
            assert_eq!(i128::from(sum.amount()), i128::from(a) + i128::from(b));
            assert_eq!(sum.checked_sub(y), Ok(x));
            assert_eq!(sum.checked_sub(x), Ok(y));
        }
        Err(e) => {
            assert_eq!(e, MoneyError::Overflow);
            assert!(i128::from(a) + i128::from(b) > i128::from(i64::MAX));
        }
    }
    match x.checked_sub(y) {
        Ok(d) => assert_eq!(d.amount(), a - b),
        Err(e) => {
            assert_eq!(e, MoneyError::Negative);
            assert!(a < b);
        }
    }
    match x.checked_mul(q) {
        Ok(p) => assert_eq!(i128::from(p.amount()), i128::from(a) * i128::from(q)),
        Err(MoneyError::Negative) => assert!(q < 0),
        Err(e) => {
            assert_eq!(e, MoneyError::Overflow);
            assert!(i128::from(a) * i128::from(q) > i128::from(i64::MAX));
        }
    }
    let other = if cur == usd {
        Currency::parse("eur").unwrap()
    } else {
        usd
    };
    assert_eq!(
        x.checked_add(Money::zero(other)),
        Err(MoneyError::CurrencyMismatch(cur, other))
    );
    assert_eq!(
        x.checked_sub(Money::zero(other)),
        Err(MoneyError::CurrencyMismatch(cur, other))
    );
}

/// Reads `12.34 usd` back into minor units, insisting on exactly the currency's number
/// of decimals.
fn minor_units(shown: &str, cur: Currency) -> Option<i64> {
    let (number, code) = shown.split_once(' ')?;
    if code != cur.code() {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let exp = cur.exponent();
    let (major, minor) = match number.split_once('.') {
        None if exp == 0 => (number, ""),
        Some((major, minor)) if exp > 0 && minor.len() == exp as usize && digits(minor) => {
            (major, minor)
        }
        _ => return None,
    };
    if !digits(major) {
        return None;
    }
    let value = major.parse::<i128>().ok()? * 10_i128.pow(exp) + minor.parse::<i128>().unwrap_or(0);
    i64::try_from(value).ok()
}
