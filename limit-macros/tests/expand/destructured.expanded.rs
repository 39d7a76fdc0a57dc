use limit_runtime::{coalesce, retry};
#[derive(Clone, Debug)]
pub struct ApiError;
/// A destructured argument gets a hygienic name, and the body destructures
/// it: each attempt gets a fresh clone of the whole argument.
pub async fn sum(arg0: (u64, u64), arg1: &(u64, u64)) -> Result<u64, ApiError> {
    static __RETRY: ::limit_runtime::retry::StaticRetry = {
        static __COUNTERS: ::limit_runtime::retry::RetryCounters = ::limit_runtime::retry::RetryCounters::new();
        ::limit_runtime::retry::StaticRetry::new(
            ::core::concat!(::core::module_path!(), "::sum"),
            ::limit_runtime::retry::RetryPolicy::new().attempts(2),
            &__COUNTERS,
        )
    };
    {
        let mut __limit_retry = __RETRY.start();
        loop {
            let __limit_outcome = {
                let arg0 = ::limit_runtime::__private::clone_arg(&arg0);
                async move {
                    #[allow(
                        unreachable_code,
                        clippy::diverging_sub_expression,
                        clippy::empty_loop,
                        clippy::needless_return
                    )]
                    if false {
                        let __limit_return: Result<u64, ApiError> = loop {};
                        return __limit_return;
                    }
                    let (a, b) = arg0;
                    let &(c, _) = arg1;
                    Ok(a + b + c)
                }
                    .await
            };
            let __limit_delay = match __RETRY
                .check(
                    &mut __limit_retry,
                    __limit_outcome,
                    ::limit_runtime::retry::any_error,
                    ::limit_runtime::retry::no_hint,
                    ::limit_runtime::retry::no_hook,
                )
            {
                ::limit_runtime::retry::Step::Done(__limit_out) => break __limit_out,
                ::limit_runtime::retry::Step::Retry(__limit_delay) => __limit_delay,
            };
            ::limit_runtime::retry::sleep(__limit_delay).await;
        }
    }
}
/// ... and the default key holds it whole.
pub async fn product(arg0: (u64, u64)) -> u64 {
    static __COALESCE: ::limit_runtime::coalesce::StaticGroup = ::limit_runtime::coalesce::StaticGroup::named(
        ::core::concat!(::core::module_path!(), "::product"),
    );
    {
        let __limit_key = (::limit_runtime::__private::key_part(&arg0),);
        let __limit_call = ::core::pin::pin!(
            async move { let __limit_out = async move { async move {
            #[allow(unreachable_code, clippy::diverging_sub_expression,
            clippy::empty_loop, clippy::needless_return)] if false { let __limit_return :
            u64 = loop {}; return __limit_return; } let (a, b) = arg0; a * b } . await }
            . await; ::limit_runtime::__private::shared(__limit_out) }
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
