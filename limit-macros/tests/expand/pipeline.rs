use limit_runtime::{coalesce, limited, retry};

pub struct Address;
#[derive(Clone)]
pub struct ApiError;

impl ApiError {
    fn is_transient(&self) -> bool {
        true
    }
}

// Written in an unusual order: the pipeline is still
// coalesce -> retry -> limited -> body.
#[limited(name = "address", max = 10)]
#[coalesce]
#[retry(attempts = 4, when = ApiError::is_transient)]
pub async fn fetch_addresses(user_id: u64) -> Result<std::sync::Arc<Vec<Address>>, ApiError> {
    let _ = user_id;
    Ok(Default::default())
}

fn main() {}
