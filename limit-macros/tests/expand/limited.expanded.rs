use limit_runtime::limited;
pub struct Address;
pub struct Error;
const ADDRESS_PARALLELISM: usize = 10;
/// Shares the "address" limit with every function that names it.
pub async fn fetch_address(id: u64) -> Result<Address, Error> {
    static __LIMITED: ::limit_runtime::StaticLimiter = ::limit_runtime::StaticLimiter::new(
        "address",
        ADDRESS_PARALLELISM,
    );
    {
        let __limit_permit = __LIMITED.acquire().await;
        let _ = id;
        Ok(Address)
    }
}
/// A limiter of its own.
async fn resize(img: &[u8]) -> Vec<u8> {
    static __LIMITED: ::limit_runtime::StaticLimiter = ::limit_runtime::StaticLimiter::private(
        ::core::concat!(::core::module_path!(), "::resize"),
        4,
    );
    {
        let __limit_permit = __LIMITED.acquire().await;
        img.to_vec()
    }
}
fn main() {}
