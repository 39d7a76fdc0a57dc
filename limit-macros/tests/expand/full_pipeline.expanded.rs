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
pub async fn get_user(id: u64) -> Result<std::sync::Arc<String>, ApiError> {
    #[allow(unused_imports)]
    use timeout as _;
    #[allow(unused_imports)]
    use coalesce as _;
    #[allow(unused_imports)]
    use circuit_breaker as _;
    #[allow(unused_imports)]
    use retry as _;
    static __LIMITED: ::limit_runtime::StaticLimiter = ::limit_runtime::StaticLimiter::new(
            "users",
            20,
        )
        .wait(::core::time::Duration::from_millis(200u64));
    static __TIMEOUT: ::limit_runtime::StaticTimeout = ::limit_runtime::StaticTimeout::new(
            ::core::concat!(::core::module_path!(), "::get_user"),
        )
        .attempt(::core::time::Duration::from_secs(2u64))
        .total(::core::time::Duration::from_secs(10u64))
        .declared_at(::core::file!(), 21u32);
    static __BREAKER: ::limit_runtime::StaticBreaker = ::limit_runtime::StaticBreaker::new(
            "users",
            ::limit_runtime::BreakerConfig::new().min_calls(10),
        )
        .declared_at(::core::file!(), 23u32);
    static __RETRY: ::limit_runtime::retry::StaticRetry = {
        static __COUNTERS: ::limit_runtime::retry::RetryCounters = ::limit_runtime::retry::RetryCounters::new();
        ::limit_runtime::retry::StaticRetry::new(
            ::core::concat!(::core::module_path!(), "::get_user"),
            ::limit_runtime::retry::RetryPolicy::new().attempts(3),
            &__COUNTERS,
        )
    };
    static __COALESCE: ::limit_runtime::coalesce::StaticGroup = ::limit_runtime::coalesce::StaticGroup::named(
        ::core::concat!(::core::module_path!(), "::get_user"),
    );
    {
        let __limit_key = (::limit_runtime::__private::key_part(&id),);
        let __limit_call = ::core::pin::pin!(
            async { let __limit_out = async { { match __TIMEOUT.total_future(async { {
            let mut __limit_retry = __RETRY.start(); loop { let __limit_outcome = { let
            id = ::limit_runtime::__private::clone_arg(& id); { let __limit_trial = match
            __BREAKER.admit() { ::core::result::Result::Ok(__limit_trial) =>
            __limit_trial, ::core::result::Result::Err(__limit_err) => break
            ::limit_runtime::__private::BreakerResult::refused(__limit_err), }; let
            __limit_permit = match __LIMITED.acquire_declared(). await {
            ::core::result::Result::Ok(__limit_ok) => __limit_ok,
            ::core::result::Result::Err(__limit_err) => break
            ::limit_runtime::__private::WaitResult::refused(__limit_err), }; let
            (__limit_outcome, __limit_timed_out) = match __TIMEOUT.attempt_future(async
            move { #[allow(unreachable_code, clippy::diverging_sub_expression,
            clippy::empty_loop, clippy::needless_return)] if false { let __limit_return :
            Result < std::sync::Arc < String >, ApiError > = loop {}; return
            __limit_return; } Ok(std::sync::Arc::new(id.to_string())) }). await {
            ::core::result::Result::Ok(__limit_done) => (__limit_done, false),
            ::core::result::Result::Err(_) => { let __limit_err = __TIMEOUT
            .attempt_error();
            (::limit_runtime::__private::TimeoutResult::refused(__limit_err), true) } };
            __limit_trial.finish(__limit_timed_out ||
            ::limit_runtime::__private::breaker_failed(& __limit_outcome,
            ::limit_runtime::__private::every_error)); __limit_outcome } }; let
            __limit_delay = match __RETRY.check(& mut __limit_retry, __limit_outcome,
            ApiError::is_transient, ::limit_runtime::retry::no_hint,
            ::limit_runtime::retry::no_hook) {
            ::limit_runtime::retry::Step::Done(__limit_out) => break __limit_out,
            ::limit_runtime::retry::Step::Retry(__limit_delay) => __limit_delay, };
            ::limit_runtime::retry::sleep(__limit_delay). await; } } }). await {
            ::core::result::Result::Ok(__limit_done) => __limit_done,
            ::core::result::Result::Err(_) => { let __limit_err = __TIMEOUT
            .total_error();
            ::limit_runtime::__private::TimeoutResult::refused(__limit_err) } } } } .
            await; ::limit_runtime::__private::shared(__limit_out) }
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
