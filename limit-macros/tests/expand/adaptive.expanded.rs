use limit_runtime::limited;
#[derive(Debug)]
pub struct S3Error;
impl S3Error {
    fn is_throttle(&self) -> bool {
        true
    }
}
pub async fn put_object(key: String) -> Result<usize, S3Error> {
    static __LIMITED: ::limit_runtime::StaticLimiter = ::limit_runtime::StaticLimiter::new(
            "s3",
            256,
        )
        .adaptive(::limit_runtime::AdaptiveOptions::new().min(2));
    {
        let __limit_permit = {
            #[allow(unused_imports)]
            use ::limit_runtime::__private::{RefuseNever as _, RefuseResult as _};
            let __limit_refuse = &::limit_runtime::__private::Refuse::<
                Result<usize, S3Error>,
            >::NEW;
            match __limit_refuse.start(&__LIMITED).await {
                ::core::result::Result::Ok(__limit_ok) => __limit_ok,
                ::core::result::Result::Err(__limit_err) => {
                    return __limit_refuse.refused(__limit_err);
                }
            }
        };
        let (__limit_outcome, __limit_timed_out) = (
            async move {
                #[allow(
                    unreachable_code,
                    clippy::diverging_sub_expression,
                    clippy::empty_loop,
                    clippy::needless_return
                )]
                if false {
                    let __limit_return: Result<usize, S3Error> = loop {};
                    return __limit_return;
                }
                Ok(key.len())
            }
                .await,
            false,
        );
        __limit_permit
            .record(
                if __limit_timed_out {
                    ::limit_runtime::Outcome::Overloaded
                } else {
                    ::limit_runtime::__private::adaptive_outcome(
                        &__limit_outcome,
                        S3Error::is_throttle,
                    )
                },
            );
        __limit_outcome
    }
}
pub async fn thumbnail(id: u64) -> u64 {
    static __LIMITED: ::limit_runtime::StaticLimiter = ::limit_runtime::StaticLimiter::new(
            "thumbnails",
            ::limit_runtime::AdaptiveOptions::DEFAULT_MAX,
        )
        .adaptive(::limit_runtime::AdaptiveOptions::new());
    {
        let __limit_permit = {
            #[allow(unused_imports)]
            use ::limit_runtime::__private::{RefuseNever as _, RefuseResult as _};
            let __limit_refuse = &::limit_runtime::__private::Refuse::<u64>::NEW;
            match __limit_refuse.start(&__LIMITED).await {
                ::core::result::Result::Ok(__limit_ok) => __limit_ok,
                ::core::result::Result::Err(__limit_err) => {
                    return __limit_refuse.refused(__limit_err);
                }
            }
        };
        let (__limit_outcome, __limit_timed_out) = (
            async move {
                #[allow(
                    unreachable_code,
                    clippy::diverging_sub_expression,
                    clippy::empty_loop,
                    clippy::needless_return
                )]
                if false {
                    let __limit_return: u64 = loop {};
                    return __limit_return;
                }
                id
            }
                .await,
            false,
        );
        __limit_permit
            .record(
                if __limit_timed_out {
                    ::limit_runtime::Outcome::Overloaded
                } else {
                    {
                        #[allow(unused_imports)]
                        use ::limit_runtime::__private::{
                            ObservedAny as _, ObservedResult as _,
                        };
                        (&::limit_runtime::__private::Observed(&__limit_outcome))
                            .outcome()
                    }
                },
            );
        __limit_outcome
    }
}
fn main() {}
