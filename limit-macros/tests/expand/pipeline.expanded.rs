use limit_runtime::{coalesce, limited, retry};
pub struct Address;
#[derive(Clone)]
pub struct ApiError;
impl ApiError {
    fn is_transient(&self) -> bool {
        true
    }
}
pub async fn fetch_addresses(
    user_id: u64,
) -> Result<std::sync::Arc<Vec<Address>>, ApiError> {
    #[allow(unused_imports)]
    use coalesce as _;
    #[allow(unused_imports)]
    use retry as _;
    static __LIMITED: ::limit_runtime::StaticLimiter = ::limit_runtime::StaticLimiter::new(
        "address",
        10,
    );
    static __RETRY: ::limit_runtime::retry::StaticRetry = {
        static __COUNTERS: ::limit_runtime::retry::RetryCounters = ::limit_runtime::retry::RetryCounters::new();
        ::limit_runtime::retry::StaticRetry::new(
            ::core::concat!(::core::module_path!(), "::fetch_addresses"),
            ::limit_runtime::retry::RetryPolicy::new().attempts(4),
            &__COUNTERS,
        )
    };
    static __COALESCE: ::limit_runtime::coalesce::StaticGroup = ::limit_runtime::coalesce::StaticGroup::named(
        ::core::concat!(::core::module_path!(), "::fetch_addresses"),
    );
    {
        let __limit_key = (::limit_runtime::__private::key_part(&user_id),);
        let __limit_call = ::core::pin::pin!(
            async { let __limit_out = async { { let mut __limit_retry = __RETRY.start();
            loop { let __limit_outcome = { let user_id =
            ::limit_runtime::__private::clone_arg(& user_id); { let __limit_permit = {
            #[allow(unused_imports)] use ::limit_runtime::__private:: { RefuseNever as _,
            RefuseResult as _ }; let __limit_refuse = &
            ::limit_runtime::__private::Refuse:: < Result < std::sync::Arc < Vec <
            Address > >, ApiError > > ::NEW; match __limit_refuse.start(& __LIMITED).
            await { ::core::result::Result::Ok(__limit_ok) => __limit_ok,
            ::core::result::Result::Err(__limit_err) => break __limit_refuse
            .refused(__limit_err), } }; async move { #[allow(unreachable_code,
            clippy::diverging_sub_expression, clippy::empty_loop,
            clippy::needless_return)] if false { let __limit_return : Result <
            std::sync::Arc < Vec < Address > >, ApiError > = loop {}; return
            __limit_return; } let _ = user_id; Ok(Default::default()) } . await } }; let
            __limit_delay = match __RETRY.check(& mut __limit_retry, __limit_outcome,
            ApiError::is_transient, ::limit_runtime::retry::no_hint,
            ::limit_runtime::retry::no_hook) {
            ::limit_runtime::retry::Step::Done(__limit_out) => break __limit_out,
            ::limit_runtime::retry::Step::Retry(__limit_delay) => __limit_delay, };
            ::limit_runtime::retry::sleep(__limit_delay). await; } } } . await;
            ::limit_runtime::__private::shared(__limit_out) }
        );
        ::limit_runtime::__private::coalesce_run(
                &__COALESCE,
                &|| (),
                __limit_key,
                __limit_call,
            )
            .await
            .into_inner()
    }
}
fn main() {}
