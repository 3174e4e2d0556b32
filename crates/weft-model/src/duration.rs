//! Go-style durations as Istio takes them (`3m`, `30ms`, `0.5s`, `1h2m`): at least
//! 1 ms and whole milliseconds, as Istio's validation requires. Printed back in the
//! same style, shortest form first (`1.5s`, `3m`, `1h2m3.5s`).

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// A duration of whole milliseconds, at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    millis: u64,
}

impl Duration {
    /// A duration of `millis` milliseconds; `None` for zero.
    pub fn from_millis(millis: u64) -> Option<Self> {
        (millis > 0).then_some(Duration { millis })
    }

    /// The length in milliseconds.
    pub fn as_millis(&self) -> u64 {
        self.millis
    }

    /// The same length as a `std::time::Duration`.
    pub fn as_std(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }

    /// Parses Go's `time.ParseDuration` syntax and applies Istio's limits.
    pub fn parse(text: &str) -> Result<Self, String> {
        let nanos = parse_go_nanos(text)?;
        if nanos < 1_000_000 {
            return Err(format!("duration {text:?} is shorter than 1ms"));
        }
        if nanos % 1_000_000 != 0 {
            return Err(format!(
                "duration {text:?} is not a whole number of milliseconds"
            ));
        }
        let millis = u64::try_from(nanos / 1_000_000)
            .map_err(|_| format!("duration {text:?} is too long"))?;
        Ok(Duration { millis })
    }
}

const NANOS_PER: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go's limit: durations fit in an i64 of nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

fn parse_go_nanos(text: &str) -> Result<u128, String> {
    let bad = |why: &str| format!("invalid duration {text:?}: {why} (write e.g. 30ms, 5s, 1m30s)");
    if text.is_empty() {
        return Err(bad("empty"));
    }
    if text.starts_with('-') {
        return Err(format!("duration {text:?} must not be negative"));
    }
    let rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Ok(0);
    }
    let mut s = rest;
    let mut total: u128 = 0;
    if s.is_empty() {
        return Err(bad("no number"));
    }
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = s.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad("expected a number"));
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, next) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(bad("missing unit"));
        }
        let Some(&(_, scale)) = NANOS_PER.iter().find(|(u, _)| *u == unit) else {
            return Err(bad(&format!("unknown unit {unit:?}")));
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad("number too large"))?
        };
        let mut value = int.checked_mul(scale).ok_or_else(|| bad("too long"))?;
        // Fraction digits beyond nanosecond precision are dropped, as Go drops them.
        let mut place = scale;
        for d in frac_part.bytes().take(30) {
            place /= 10;
            value += u128::from(d - b'0') * place;
        }
        total = total.checked_add(value).ok_or_else(|| bad("too long"))?;
        if total > MAX_NANOS {
            return Err(bad("too long"));
        }
        s = next;
    }
    Ok(total)
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.millis;
        let (h, m, s, rem) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        if h == 0 && m == 0 && s == 0 {
            return write!(f, "{rem}ms");
        }
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if rem > 0 {
            let frac = format!("{rem:03}");
            write!(f, "{s}.{}s", frac.trim_end_matches('0'))?;
        } else if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Duration::parse(s)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 30ms, 5s or 1m30s")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> Result<u64, String> {
        Duration::parse(text).map(|d| d.as_millis())
    }

    #[test]
    fn go_style_durations_parse() {
        assert_eq!(ms("3m"), Ok(180_000));
        assert_eq!(ms("30ms"), Ok(30));
        assert_eq!(ms("0.5s"), Ok(500));
        assert_eq!(ms("1h2m"), Ok(3_720_000));
        assert_eq!(ms(".5s"), Ok(500));
        assert_eq!(ms("1.5h"), Ok(5_400_000));
        assert_eq!(ms("1000us"), Ok(1));
        assert_eq!(ms("2000000ns"), Ok(2));
        assert_eq!(ms("1m30s"), Ok(90_000));
    }

    #[test]
    fn istio_limits_apply() {
        for bad in [
            "0",
            "0s",
            "500us",
            "1.5ms",
            "-1s",
            "10",
            "s",
            "",
            "1x",
            "1s2",
            "abc",
            "1..5s",
            "99999999999h",
        ] {
            assert!(ms(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(ms("10").expect_err("no unit").contains("missing unit"));
        assert!(ms("1.5ms")
            .expect_err("sub-ms")
            .contains("whole number of milliseconds"));
        assert!(ms("-1s").expect_err("negative").contains("negative"));
    }

    #[test]
    fn prints_back_shortest() {
        for (input, shown) in [
            ("30ms", "30ms"),
            ("1500ms", "1.5s"),
            ("180s", "3m"),
            ("1h2m3.5s", "1h2m3.5s"),
            ("60.03s", "1m0.03s"),
            ("1h", "1h"),
        ] {
            let d = Duration::parse(input).expect(input);
            assert_eq!(d.to_string(), shown);
            assert_eq!(Duration::parse(shown), Ok(d), "round trip of {shown}");
        }
    }
}
