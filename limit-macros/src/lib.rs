//! Attribute macros of `limit`: `#[limited]`, `#[retry]` and `#[coalesce]`.
//!
//! Do not depend on this crate directly: use `limit-runtime`, which
//! re-exports the attributes and documents them. The expansions call into
//! `limit_runtime`, and this crate is pinned to the exact runtime version.

use proc_macro::TokenStream;

mod args;
mod async_trait;
mod config;
mod duration;
mod expand;
mod item;
mod rate;
#[cfg(test)]
mod snapshots;

use item::Kind;

/// See `limit_runtime::limited`.
#[proc_macro_attribute]
pub fn limited(args: TokenStream, item: TokenStream) -> TokenStream {
    entry(Kind::Limited, args.into(), item.into()).into()
}

/// See `limit_runtime::retry`.
#[proc_macro_attribute]
pub fn retry(args: TokenStream, item: TokenStream) -> TokenStream {
    entry(Kind::Retry, args.into(), item.into()).into()
}

/// See `limit_runtime::coalesce`.
#[proc_macro_attribute]
pub fn coalesce(args: TokenStream, item: TokenStream) -> TokenStream {
    entry(Kind::Coalesce, args.into(), item.into()).into()
}

/// See `limit_runtime::timeout`.
#[proc_macro_attribute]
pub fn timeout(args: TokenStream, item: TokenStream) -> TokenStream {
    entry(Kind::Timeout, args.into(), item.into()).into()
}

/// See `limit_runtime::circuit_breaker`.
#[proc_macro_attribute]
pub fn circuit_breaker(args: TokenStream, item: TokenStream) -> TokenStream {
    entry(Kind::CircuitBreaker, args.into(), item.into()).into()
}

/// Parse, validate, expand. On any error the function is emitted unchanged
/// (without the `limit` attributes) beside the errors, so one mistake does
/// not cascade into others.
fn entry(
    kind: Kind,
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let (mut f, wrapper, mut errors) = match item::parse_fn(kind, item.clone()) {
        Ok(parsed) => parsed,
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(item);
            return out;
        }
    };
    let attrs = item::collect(kind, args, &mut f, &mut errors);
    let config = config::build(attrs, &mut errors);
    if config.retry.is_some() && matches!(f.sig.output, syn::ReturnType::Default) {
        errors.spanned(
            &f.sig.ident,
            "#[retry] needs a function returning `Result<T, E>`; this one returns `()`",
        );
    }
    let refusing = config
        .limited
        .as_ref()
        .and_then(|l| l.refuses.as_ref().map(|o| format!("`{o}`")))
        .or_else(|| config.timeout.as_ref().map(|_| "#[timeout]".to_owned()))
        .or_else(|| {
            config
                .breaker
                .as_ref()
                .map(|_| "#[circuit_breaker]".to_owned())
        });
    if let Some(option) = refusing {
        if config.retry.is_none() && matches!(f.sig.output, syn::ReturnType::Default) {
            errors.spanned(
                &f.sig.ident,
                format_args!("{option} can make a call fail with `limit_runtime::Error`, so the function must return `Result<T, E>` where `E: From<limit_runtime::Error>`; this one returns `()`"),
            );
        }
    }
    let boxed = wrapper.is_some();
    let rewrap = |f: proc_macro2::TokenStream| match wrapper {
        Some(w) => w.rewrap(f),
        None => f,
    };
    match errors.into_result() {
        Ok(()) => rewrap(expand::expand(&config, f, boxed)),
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(rewrap(quote::ToTokens::to_token_stream(&f)));
            out
        }
    }
}
