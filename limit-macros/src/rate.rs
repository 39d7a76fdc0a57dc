//! Rate literals: `"50/s"`, `"5000/h"`, `"10/m"`, `"100/10s"`, `"2/100ms"`.

use proc_macro2::TokenStream;
use quote::quote;

use crate::duration;

/// A rate parsed at compile time: `count` starts per `period_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLit {
    pub count: u64,
    pub period_ns: u128,
}

pub const HELP: &str =
    "write starts per period, e.g. \"50/s\", \"10/m\", \"5000/h\", \"100/10s\" or \"2/100ms\"";

pub fn parse(text: &str) -> Result<RateLit, String> {
    let (count, period) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` has no `/`: {HELP}"))?;
    let count = count.trim().replace('_', "");
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the count in `{text}` must be a whole number: {HELP}"
        ));
    }
    let count: u64 = count
        .parse()
        .map_err(|_| format!("the count in `{text}` is too large"))?;
    if count == 0 {
        return Err(format!(
            "`{text}` allows no calls at all: the count must be at least 1"
        ));
    }
    let period = period.trim();
    let period_ns = match period {
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ if !period.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
            return Err(format!(
                "unknown period `{period}` in `{text}`: the period is `s`, `m`, `h`, or a duration such as `10s` or `100ms`"
            ))
        }
        _ => {
            duration::parse(period)
                .map_err(|e| format!("bad period in `{text}`: {e}"))?
                .0
        }
    };
    if period_ns == 0 {
        return Err(format!("the period in `{text}` must be longer than zero"));
    }
    if period_ns > u128::from(u64::MAX) {
        return Err(format!("the period in `{text}` is too long"));
    }
    Ok(RateLit { count, period_ns })
}

impl RateLit {
    pub fn to_tokens(self, krate: &syn::Path) -> TokenStream {
        let count = self.count;
        let period = duration::Dur(self.period_ns).to_tokens();
        quote!(#krate::Rate::new(#count, #period))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_form() {
        let ns = |s: &str| parse(s).map(|r| (r.count, r.period_ns));
        assert_eq!(ns("50/s"), Ok((50, 1_000_000_000)));
        assert_eq!(ns("5000/h"), Ok((5000, 3_600_000_000_000)));
        assert_eq!(ns("10/m"), Ok((10, 60_000_000_000)));
        assert_eq!(ns("100/10s"), Ok((100, 10_000_000_000)));
        assert_eq!(ns("2/100ms"), Ok((2, 100_000_000)));
        assert_eq!(ns("1_000/s"), Ok((1000, 1_000_000_000)));
    }

    #[test]
    fn rejects_bad_rates() {
        for bad in [
            "0/s", "10/x", "ten/s", "10", "/s", "10/", "-1/s", "1.5/s", "10/0s", "5/0ms",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
