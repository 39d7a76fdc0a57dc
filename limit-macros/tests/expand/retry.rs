use limit_runtime::retry;

pub struct ApiError;

impl ApiError {
    fn is_transient(&self) -> bool {
        true
    }
}

#[retry(attempts = 5, initial = "200ms", max_delay = "5s", multiplier = 3, jitter = "equal", when = ApiError::is_transient)]
pub async fn put_object(key: &str, body: Vec<u8>) -> Result<(), ApiError> {
    let _ = (key, body);
    Ok(())
}

fn main() {}
