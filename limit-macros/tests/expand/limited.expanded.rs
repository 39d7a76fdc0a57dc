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
        let __limit_permit = {
            #[allow(unused_imports)]
            use ::limit_runtime::__private::{RefuseNever as _, RefuseResult as _};
            let __limit_refuse = &::limit_runtime::__private::Refuse::<
                Result<Address, Error>,
            >::NEW;
            match __limit_refuse.start(&__LIMITED).await {
                ::core::result::Result::Ok(__limit_ok) => __limit_ok,
                ::core::result::Result::Err(__limit_err) => {
                    return __limit_refuse.refused(__limit_err);
                }
            }
        };
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
        let __limit_permit = {
            #[allow(unused_imports)]
            use ::limit_runtime::__private::{RefuseNever as _, RefuseResult as _};
            let __limit_refuse = &::limit_runtime::__private::Refuse::<Vec<u8>>::NEW;
            match __limit_refuse.start(&__LIMITED).await {
                ::core::result::Result::Ok(__limit_ok) => __limit_ok,
                ::core::result::Result::Err(__limit_err) => {
                    return __limit_refuse.refused(__limit_err);
                }
            }
        };
        img.to_vec()
    }
}
fn main() {}
