//! Duration literals: `"250ms"`, `"2s"`, `"1.5s"`, `"3m"`, `"1h"`.

use proc_macro2::TokenStream;
use quote::quote;

/// A duration parsed at compile time, in whole nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub u128);

pub const HELP: &str =
    "write a number and a unit, e.g. \"250ms\", \"2s\", \"1.5s\", \"3m\", \"1h\" \
                        (units: ns, us, ms, s, m, h)";

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// The largest duration accepted: what `core::time::Duration` can hold.
const MAX_NS: u128 = (u64::MAX as u128) * 1_000_000_000 + 999_999_999;

pub fn parse(text: &str) -> Result<Dur, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!(
            "`{text}` is negative: a duration is 0 or more; {HELP}"
        ));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .ok_or_else(|| format!("`{text}` has no unit: {HELP}"))?;
    let (number, unit) = text.split_at(split);
    let unit = unit.trim_start();
    let scale = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            if split == 0 && unit.contains(|c: char| c.is_ascii_digit()) {
                format!("`{text}` does not start with a number: {HELP}")
            } else {
                format!("unknown unit `{unit}` in `{text}`: {HELP}")
            }
        })?;
    let number = number.replace('_', "");
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number.as_str(), ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return Err(format!("`{text}` has no number: {HELP}"));
    }
    if frac.contains('.') {
        return Err(format!("`{text}` is not a number with a unit: {HELP}"));
    }
    let too_large = || format!("`{text}` is too large for a Duration");
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let mut ns = whole.checked_mul(scale).ok_or_else(too_large)?;
    // Fractional part, exact down to the nanosecond (the rest is dropped).
    let mut place = scale;
    for digit in frac.bytes() {
        place /= 10;
        ns = ns
            .checked_add(u128::from(digit - b'0') * place)
            .ok_or_else(too_large)?;
    }
    if ns > MAX_NS {
        return Err(too_large());
    }
    Ok(Dur(ns))
}

impl Dur {
    /// The shortest `core::time::Duration` constructor that says it.
    pub fn to_tokens(self) -> TokenStream {
        let ns = self.0;
        if ns % 1_000_000_000 == 0 {
            let secs = (ns / 1_000_000_000) as u64;
            quote!(::core::time::Duration::from_secs(#secs))
        } else if ns % 1_000_000 == 0 && ns / 1_000_000 <= u128::from(u64::MAX) {
            let ms = (ns / 1_000_000) as u64;
            quote!(::core::time::Duration::from_millis(#ms))
        } else if ns <= u128::from(u64::MAX) {
            let ns = ns as u64;
            quote!(::core::time::Duration::from_nanos(#ns))
        } else {
            let secs = (ns / 1_000_000_000) as u64;
            let sub = (ns % 1_000_000_000) as u32;
            quote!(::core::time::Duration::new(#secs, #sub))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_fractions() {
        assert_eq!(parse("250ms"), Ok(Dur(250_000_000)));
        assert_eq!(parse("2s"), Ok(Dur(2_000_000_000)));
        assert_eq!(parse("1.5s"), Ok(Dur(1_500_000_000)));
        assert_eq!(parse("3m"), Ok(Dur(180_000_000_000)));
        assert_eq!(parse("1h"), Ok(Dur(3_600_000_000_000)));
        assert_eq!(parse("10 us"), Ok(Dur(10_000)));
        assert_eq!(parse(".5ms"), Ok(Dur(500_000)));
        assert_eq!(parse("0s"), Ok(Dur(0)));
    }

    #[test]
    fn rejects_bad_literals() {
        for bad in [
            "",
            "10",
            "ms",
            "1.2.3s",
            "5 sec",
            "-1s",
            "1e3ms",
            "99999999999999999999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn says_what_is_wrong() {
        let e = |s: &str| parse(s).unwrap_err();
        assert!(e("-1s").starts_with("`-1s` is negative"), "{}", e("-1s"));
        assert!(e("x5s").starts_with("`x5s` does not start with a number"));
        assert!(e("5d").starts_with("unknown unit `d` in `5d`"));
        assert!(e("5").starts_with("`5` has no unit"));
        assert!(e("s").starts_with("`s` has no number"));
    }
}
