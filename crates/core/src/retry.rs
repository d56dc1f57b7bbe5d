//! When to try a callback delivery again: the retry schedule, its jitter, and the
//! receiver's `Retry-After`. Pure, so the policy is tested without a clock or a network.

use std::time::Duration;

/// The result of one attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx answer in time.
    Delivered,
    /// Anything else: another status, a timeout, a refused connection. `retry_after`
    /// is the receiver's `Retry-After`, if it sent one.
    Failed { retry_after: Option<Duration> },
}

/// What happens to the delivery next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Done,
    /// Try again this long from now.
    RetryIn(Duration),
    /// The schedule is used up.
    GiveUp,
}

/// A `Retry-After` is honoured up to this long (a receiver cannot park a delivery
/// forever).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// `schedule[i]` is the wait before attempt `i` (the first is usually 0), so a
/// schedule of n entries makes at most n attempts. `done` counts the attempts made,
/// this one included. `jitter` in [-1, 1] spreads the wait by up to ±20 %, so
/// deliveries that failed together do not all come back at the same instant.
pub fn next(schedule: &[Duration], done: usize, outcome: Attempt, jitter: f64) -> Next {
    let Attempt::Failed { retry_after } = outcome else {
        return Next::Done;
    };
    let Some(wait) = schedule.get(done) else {
        return Next::GiveUp;
    };
    let spread = wait.as_secs_f64() * 0.2 * jitter.clamp(-1.0, 1.0);
    let wait = Duration::from_secs_f64((wait.as_secs_f64() + spread).max(0.0));
    let asked = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
    Next::RetryIn(wait.max(asked))
}

/// Parses a schedule written as comma-separated seconds (`0,5,300`).
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    let waits = s
        .split(',')
        .map(|p| {
            let p = p.trim();
            p.parse::<u64>()
                .ok()
                .filter(|n| *n <= 7 * 24 * 3600)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("`{p}` is not a number of seconds from 0 to 604800"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if waits.is_empty() || waits.len() > 50 {
        return Err("give 1 to 50 waits".into());
    }
    Ok(waits)
}

/// A `Retry-After` header: seconds, or an HTTP date.
pub fn parse_retry_after(v: &str, now_unix: i64) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate_to_unix(v)?;
    Some(Duration::from_secs(
        at.saturating_sub(now_unix).max(0) as u64
    ))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only form senders must use. Its
/// fields are range-checked before any arithmetic: the header comes from the receiver.
fn httpdate_to_unix(v: &str) -> Option<i64> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == parts[2])? as i64 + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3
        || !(1..=31).contains(&day)
        || !(0..=9999).contains(&year)
        || !(0..=23).contains(&hms[0])
        || !(0..=59).contains(&hms[1])
        || !(0..=60).contains(&hms[2])
    {
        return None;
    }
    Some(
        crate::civil::days_from_civil(year, month, day) * 86400
            + hms[0] * 3600
            + hms[1] * 60
            + hms[2],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    const FAILED: Attempt = Attempt::Failed { retry_after: None };

    #[test]
    fn follows_the_schedule_then_gives_up() {
        let s = secs(&[0, 5, 300]);
        assert_eq!(
            next(&s, 1, FAILED, 0.0),
            Next::RetryIn(Duration::from_secs(5))
        );
        assert_eq!(
            next(&s, 2, FAILED, 0.0),
            Next::RetryIn(Duration::from_secs(300))
        );
        assert_eq!(next(&s, 3, FAILED, 0.0), Next::GiveUp);
        assert_eq!(next(&s, 1, Attempt::Delivered, 0.0), Next::Done);
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        let s = secs(&[0, 100]);
        assert_eq!(
            next(&s, 1, FAILED, 1.0),
            Next::RetryIn(Duration::from_secs(120))
        );
        assert_eq!(
            next(&s, 1, FAILED, -1.0),
            Next::RetryIn(Duration::from_secs(80))
        );
        assert_eq!(
            next(&s, 1, FAILED, 7.0),
            Next::RetryIn(Duration::from_secs(120))
        );
    }

    #[test]
    fn retry_after_waits_longer_but_never_shorter_or_forever() {
        let s = secs(&[0, 5]);
        let asked = |d| Attempt::Failed {
            retry_after: Some(Duration::from_secs(d)),
        };
        assert_eq!(
            next(&s, 1, asked(60), 0.0),
            Next::RetryIn(Duration::from_secs(60))
        );
        assert_eq!(
            next(&s, 1, asked(1), 0.0),
            Next::RetryIn(Duration::from_secs(5))
        );
        assert_eq!(
            next(&s, 1, asked(10_000_000), 0.0),
            Next::RetryIn(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn schedules_and_retry_after_parse() {
        assert_eq!(parse_schedule("0, 1,2").unwrap(), secs(&[0, 1, 2]));
        assert!(parse_schedule("").is_err());
        assert!(parse_schedule("1,x").is_err());
        assert!(parse_schedule("-1").is_err());
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        // 1994-11-06T08:49:37Z is 784111777.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111770),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111800),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
        // Found by fuzzing (fuzz/seeds/retry_after/crash_year_overflow): out-of-range
        // fields overflowed the date arithmetic.
        assert_eq!(
            parse_retry_after("Mon, 06 Nov 348411183006 4:3:997 GMT", 0),
            None
        );
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 24:00:00 GMT", 0), None);
    }
}
