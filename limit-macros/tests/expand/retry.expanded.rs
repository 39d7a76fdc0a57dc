use limit_runtime::retry;
pub struct ApiError;
impl ApiError {
    fn is_transient(&self) -> bool {
        true
    }
}
pub async fn put_object(key: &str, body: Vec<u8>) -> Result<(), ApiError> {
    static __RETRY: ::limit_runtime::retry::StaticRetry = {
        static __COUNTERS: ::limit_runtime::retry::RetryCounters = ::limit_runtime::retry::RetryCounters::new();
        ::limit_runtime::retry::StaticRetry::new(
            ::core::concat!(::core::module_path!(), "::put_object"),
            ::limit_runtime::retry::RetryPolicy::new()
                .attempts(5)
                .initial(::core::time::Duration::from_millis(200u64))
                .multiplier(3f64)
                .max_delay(::core::time::Duration::from_secs(5u64))
                .jitter(::limit_runtime::retry::Jitter::Equal),
            &__COUNTERS,
        )
    };
    {
        let mut __limit_retry = __RETRY.start();
        loop {
            let __limit_outcome = {
                let body = ::limit_runtime::__private::clone_arg(&body);
                async move {
                    #[allow(
                        unreachable_code,
                        clippy::diverging_sub_expression,
                        clippy::empty_loop,
                        clippy::needless_return
                    )]
                    if false {
                        let __limit_return: Result<(), ApiError> = loop {};
                        return __limit_return;
                    }
                    let _ = (key, body);
                    Ok(())
                }
                    .await
            };
            let __limit_delay = match __RETRY
                .check(
                    &mut __limit_retry,
                    __limit_outcome,
                    ApiError::is_transient,
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
fn main() {}
