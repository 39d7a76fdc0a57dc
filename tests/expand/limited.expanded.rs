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
        __LIMITED
            .run(async move {
                #[allow(
                    unreachable_code,
                    clippy::diverging_sub_expression,
                    clippy::needless_return
                )]
                if false {
                    let __limit_return: Result<Address, Error> = loop {};
                    return __limit_return;
                }
                {
                    let _ = id;
                    Ok(Address)
                }
            })
            .await
    }
}
/// A limiter of its own.
async fn resize(img: &[u8]) -> Vec<u8> {
    static __LIMITED: ::limit_runtime::StaticLimiter = ::limit_runtime::StaticLimiter::private(
        "macrotest001::resize",
        4,
    );
    {
        __LIMITED
            .run(async move {
                #[allow(
                    unreachable_code,
                    clippy::diverging_sub_expression,
                    clippy::needless_return
                )]
                if false {
                    let __limit_return: Vec<u8> = loop {};
                    return __limit_return;
                }
                { img.to_vec() }
            })
            .await
    }
}
fn main() {}
