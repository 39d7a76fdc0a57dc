use limit_runtime::limited;

pub struct Address;
pub struct Error;

const ADDRESS_PARALLELISM: usize = 10;

/// Shares the "address" limit with every function that names it.
#[limited(name = "address", max = ADDRESS_PARALLELISM)]
pub async fn fetch_address(id: u64) -> Result<Address, Error> {
    let _ = id;
    Ok(Address)
}

/// A limiter of its own.
#[limited(max = 4)]
async fn resize(img: &[u8]) -> Vec<u8> {
    img.to_vec()
}

fn main() {}
