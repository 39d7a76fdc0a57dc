use limit_runtime::{coalesce, retry};

#[derive(Clone, Debug)]
pub struct ApiError;

/// A destructured argument gets a hygienic name, and the body destructures
/// it: each attempt gets a fresh clone of the whole argument.
#[retry(attempts = 2)]
pub async fn sum((a, b): (u64, u64), &(c, _): &(u64, u64)) -> Result<u64, ApiError> {
    Ok(a + b + c)
}

/// ... and the default key holds it whole.
#[coalesce]
pub async fn product((a, b): (u64, u64)) -> u64 {
    a * b
}

fn main() {}
