//! Expansions must not depend on the runtime's crate name, on `core`/`std`
//! being the real ones, or on prelude names: this crate renames the runtime,
//! shadows `core` and `std`, and defines items named like the prelude's.
#![allow(dead_code, non_camel_case_types)]

/// Re-exported under a path of this crate, for `crate = "..."` with a path.
pub mod facade {
    pub use renamed_runtime as rt;
}

mod core {}
mod std {}

// Items that shadow prelude names an expansion might (wrongly) rely on.
struct Option;
struct Some;
struct None;
struct Ok;
struct Err;
struct Clone;
struct Box;
struct Vec;
struct Send;
struct Future;
struct Duration;
struct Hash;
fn drop() {}

type Outcome = ::core::result::Result<u32, ::std::string::String>;

#[renamed_runtime::limited(crate = "renamed_runtime", name = "hygiene", max = 2)]
pub async fn limited(x: u32) -> u32 {
    x + 1
}

#[renamed_runtime::retry(crate = "::renamed_runtime", attempts = 3, initial = "1ms")]
#[renamed_runtime::limited(crate = "::renamed_runtime", max = 1)]
pub async fn retried(n: &::core::sync::atomic::AtomicU32, label: ::std::string::String) -> Outcome {
    let seen = n.fetch_add(1, ::core::sync::atomic::Ordering::SeqCst);
    if seen < 2 {
        return ::core::result::Result::Err(label);
    }
    ::core::result::Result::Ok(seen)
}

#[renamed_runtime::coalesce(crate = "crate::facade::rt")]
#[renamed_runtime::retry(crate = "crate::facade::rt", attempts = 1)]
pub async fn coalesced(id: u64, name: &str) -> Outcome {
    ::core::result::Result::Ok(id as u32 + name.len() as u32)
}
