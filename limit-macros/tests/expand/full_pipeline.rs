use limit_runtime::{circuit_breaker, coalesce, limited, retry, timeout};

#[derive(Clone, Debug)]
pub struct ApiError;

impl From<limit_runtime::Error> for ApiError {
    fn from(_: limit_runtime::Error) -> Self {
        ApiError
    }
}

impl ApiError {
    fn is_transient(&self) -> bool {
        true
    }
}

// Written in a scrambled order: the pipeline is still
// coalesce -> timeout(total) -> retry -> circuit_breaker -> limited -> timeout(attempt) -> body.
#[limited(name = "users", max = 20, wait = "200ms")]
#[timeout(attempt = "2s", total = "10s")]
#[coalesce]
#[circuit_breaker(name = "users", min_calls = 10)]
#[retry(attempts = 3, when = ApiError::is_transient)]
pub async fn get_user(id: u64) -> Result<std::sync::Arc<String>, ApiError> {
    Ok(std::sync::Arc::new(id.to_string()))
}

fn main() {}
