//! Code generation. Everything here is infallible: `config.rs` has checked
//! the options, and the compiler checks the types (through the runtime's
//! bounds, which carry the error messages).
//!
//! The pipeline is always `coalesce -> retry -> limited -> body`:
//!
//! ```text
//! static __LIMITED / __RETRY / __COALESCE ...;
//! let __limit_call = pin!(async {
//!     let mut __limit_retry = __RETRY.start();
//!     loop {
//!         let __limit_outcome = {
//!             fresh clones of owned arguments, reborrows of `&mut` ones;
//!             let __limit_permit = __LIMITED.acquire().await;
//!             async move { body }.await      // `async` if an argument cannot move
//!         };
//!         let __limit_delay = match __RETRY.check(&mut __limit_retry, __limit_outcome, when, delay_hint, on_retry) {
//!             Step::Done(out) => break out,
//!             Step::Retry(delay) => delay,
//!         };
//!         sleep(__limit_delay).await;   // no permit held
//!     }
//! });
//! __COALESCE.run::<Marker, _, _>(key, __limit_call).await
//! ```
//!
//! With `#[limited]` alone, the body runs inline after
//! `let __limit_permit = __LIMITED.acquire().await;`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, Ident, ItemFn, Pat, PatIdent, ReturnType, Type};

use crate::config::{Adaptive, Breaker, Coalesce, Config, Limited, Retry, Timeout};
use crate::item::Kind;

/// `boxed`: `f` is a method as `#[async_trait]` wrote it (see
/// [`crate::async_trait`]), whose receiver is `__self` by the time the
/// expansion runs.
pub fn expand(config: &Config, mut f: ItemFn, boxed: bool) -> TokenStream {
    let k = &config.krate;
    let fn_name = f.sig.ident.to_string();
    let mut statics = TokenStream::new();
    // Held for the body's run; invisible to the body (mixed-site hygiene).
    let permit = Ident::new("__limit_permit", Span::mixed_site());
    if let Some(l) = &config.limited {
        statics.extend(limited_static(
            k,
            l,
            &fn_name,
            declared_at(config, Kind::Limited),
        ));
    }

    let timeout = config.timeout.as_ref();
    let breaker = config.breaker.as_ref();
    if let Some(t) = timeout {
        statics.extend(timeout_static(
            k,
            t,
            &fn_name,
            declared_at(config, Kind::Timeout),
        ));
    }
    if let Some(b) = breaker {
        statics.extend(breaker_static(
            k,
            b,
            &fn_name,
            declared_at(config, Kind::CircuitBreaker),
        ));
    }

    // Without retry, coalesce, timeout or breaker, the body runs inline
    // after the permit is taken: the function's own future holds the body,
    // with no wrapper future (and no second copy of the body's state)
    // around it.
    let adaptive = config.limited.as_ref().and_then(|l| l.adaptive.as_ref());
    if config.retry.is_none()
        && config.coalesce.is_none()
        && timeout.is_none()
        && breaker.is_none()
        && adaptive.is_none()
    {
        let body = match &config.limited {
            Some(l) => {
                let take = permit_step(k, l, &permit, &f.sig.output, &quote!(return));
                // The user's statements, spliced rather than nested: a
                // nested one-expression block would draw `unused_braces`
                // at the user's braces.
                let stmts = &f.block.stmts;
                quote!({
                    #take
                    #(#stmts)*
                })
            }
            None => f.block.to_token_stream(),
        };
        return finish(config, f, statics, body);
    }

    // One attempt: breaker -> limited -> timeout(attempt) -> body. Without
    // retry, the body owns the arguments, as the original body did. With
    // retry, each attempt gets fresh clones of the owned arguments and
    // reborrows of the `&mut` ones, which its body then owns; if an
    // argument cannot be handed over that way, the body borrows them all.
    let default_key = config.coalesce.as_ref().is_some_and(|c| c.key.is_none());
    if default_key || (config.retry.is_some() && config.coalesce.is_none()) {
        name_patterns(&mut f);
    }
    let move_kw = config.retry.is_none().then(|| quote!(move));
    let (clones, attempt_owns) = match &config.retry {
        Some(_) => fresh_clones(k, &mut f),
        None => (TokenStream::new(), true),
    };
    let attempt_move = attempt_owns.then(|| quote!(move));
    let guarded = guarded_body(&f);
    // A refusal ends the call at once: out of the retry loop (never
    // retried), or out of the call's async block.
    let exit = if config.retry.is_some() {
        quote!(break)
    } else {
        quote!(return)
    };
    let ret_span = match &f.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    let body_fut = quote!(async #attempt_move #guarded);
    let mut attempt = match timeout.and_then(|t| t.attempt) {
        // An attempt that times out is an ordinary failure of the attempt:
        // its error goes through `when`, and the breaker counts it.
        Some(_) => {
            let refused = respan(
                quote!(#k::__private::TimeoutResult::refused(__limit_err)),
                ret_span,
            );
            quote!(match __TIMEOUT.attempt_future(#body_fut).await {
                ::core::result::Result::Ok(__limit_done) => (__limit_done, false),
                ::core::result::Result::Err(_) => {
                    let __limit_err = __TIMEOUT.attempt_error();
                    (#refused, true)
                }
            })
        }
        None => quote!((#body_fut.await, false)),
    };
    let take = match &config.limited {
        Some(l) => permit_step(k, l, &permit, &f.sig.output, &exit),
        None => TokenStream::new(),
    };
    let (admit, record) = match breaker {
        Some(b) => breaker_step(k, b, &exit, ret_span),
        None => (TokenStream::new(), TokenStream::new()),
    };
    let signal = adaptive.map(|a| adaptive_signal(k, a, &permit, ret_span));
    attempt = if timeout.is_some_and(|t| t.attempt.is_some())
        || breaker.is_some()
        || adaptive.is_some()
    {
        quote!({
            #admit
            #take
            let (__limit_outcome, __limit_timed_out) = #attempt;
            #record
            #signal
            __limit_outcome
        })
    } else if take.is_empty() {
        quote!(#body_fut.await)
    } else {
        quote!({
            #take
            #body_fut.await
        })
    };

    // retry: a loop of attempts, each with fresh clones of owned arguments.
    let mut body = match &config.retry {
        Some(r) => {
            statics.extend(retry_static(k, r, &fn_name));
            retry_loop(k, r, &clones, &attempt, &f.sig.output)
        }
        None => attempt,
    };

    // timeout(total): around the whole call, queueing, attempts and
    // sleeps included.
    if timeout.is_some_and(|t| t.total.is_some()) {
        let refused = respan(
            quote!(#k::__private::TimeoutResult::refused(__limit_err)),
            ret_span,
        );
        body = quote!({
            match __TIMEOUT.total_future(async #move_kw { #body }).await {
                ::core::result::Result::Ok(__limit_done) => __limit_done,
                ::core::result::Result::Err(_) => {
                    let __limit_err = __TIMEOUT.total_error();
                    #refused
                }
            }
        });
    }

    // coalesce: outermost, shares one whole (retried) call. The shared
    // future is pinned in place, so `run` holds a reference, not a copy.
    if let Some(c) = &config.coalesce {
        let name = fn_path(&fn_name);
        statics.extend(quote! {
            static __COALESCE: #k::coalesce::StaticGroup = #k::coalesce::StaticGroup::named(#name);
        });
        let key = coalesce_key(k, c, &f, boxed);
        // One mistake, one error, at the user's token: the output is
        // checked at the return type, each key part at its argument and a
        // `key` expression where it is written. What they return satisfies
        // `run`'s bounds as it is (`__private::{KeyOf, Shared}`), so rustc
        // does not report the same mistake again at the attribute.
        let out = quote_spanned!(output_span(&f)=> #k::__private::shared(__limit_out));
        body = quote!({
            let __limit_key = #key;
            // The body in a block of its own: a refusal's `return` leaves
            // it with the function's output, which is then wrapped.
            let __limit_call = ::core::pin::pin!(async #move_kw {
                let __limit_out = async #move_kw { #body }.await;
                #out
            });
            // The closure's type names this instantiation of the function.
            #k::__private::coalesce_run(&__COALESCE, &|| (), __limit_key, __limit_call)
                .await
                .into_inner()
        });
    }

    finish(config, f, statics, body)
}

fn finish(config: &Config, mut f: ItemFn, statics: TokenStream, body: TokenStream) -> TokenStream {
    // Mention the attributes this expansion absorbed, so their imports
    // count as used.
    let absorbed = &config.absorbed;
    let block = quote!({
        #(#[allow(unused_imports)] use #absorbed as _;)*
        #statics
        #body
    });
    f.block = Box::new(syn::parse2(block).expect("generated block parses"));
    f.into_token_stream()
}

/// The user's block, preceded by a never-taken `return` of the declared
/// type, so that `?` and `return` inside the block infer exactly as they did
/// in the original function and type errors point at the return type.
fn guarded_body(f: &ItemFn) -> TokenStream {
    let block = &f.block;
    let stmts = &block.stmts;
    let (ty, span) = match &f.sig.output {
        ReturnType::Default => (quote!(()), f.sig.ident.span()),
        ReturnType::Type(_, ty) if !mentions_impl_trait(ty) => (ty.to_token_stream(), ty.span()),
        ReturnType::Type(..) => return quote!(#block),
    };
    let fake = quote_spanned! {span=>
        #[allow(unreachable_code, clippy::diverging_sub_expression, clippy::empty_loop, clippy::needless_return)]
        if false {
            let __limit_return: #ty = loop {};
            return __limit_return;
        }
    };
    // Spliced, not nested (see `expand`).
    quote!({ #fake #(#stmts)* })
}

fn mentions_impl_trait(ty: &Type) -> bool {
    struct Finder(bool);
    impl Visit<'_> for Finder {
        fn visit_type_impl_trait(&mut self, _: &syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    finder.0
}

/// `.declared_at(file!(), line)` for an attribute that another one
/// absorbed (see [`Config::line`]); nothing for the one being expanded,
/// whose constructor records its own place.
fn declared_at(config: &Config, kind: Kind) -> TokenStream {
    match config.line(kind) {
        Some(line) => quote!(.declared_at(::core::file!(), #line)),
        None => TokenStream::new(),
    }
}

fn limited_static(k: &syn::Path, l: &Limited, fn_name: &str, at: TokenStream) -> TokenStream {
    let label = fn_path(fn_name);
    let decl = match (&l.max, &l.name) {
        // Spanned at `max`, so a constant that fails the runtime's
        // `max >= 1` check is reported there.
        (Some(max), name) => {
            let span = max.span();
            match name {
                Some(name) => quote_spanned!(span=> #k::StaticLimiter::new(#name, #max)),
                None => quote_spanned!(span=> #k::StaticLimiter::private(#label, #max)),
            }
        }
        (None, name) if l.adaptive.is_some() => {
            let max = quote!(#k::AdaptiveOptions::DEFAULT_MAX);
            match name {
                Some(name) => quote!(#k::StaticLimiter::new(#name, #max)),
                None => quote!(#k::StaticLimiter::private(#label, #max)),
            }
        }
        (None, Some(name)) => quote!(#k::StaticLimiter::uncapped(#name)),
        (None, None) => quote!(#k::StaticLimiter::uncapped(#label).unshared()),
    };
    let mut options = TokenStream::new();
    if let Some(a) = &l.adaptive {
        let min = a.min.as_ref().map(|m| quote!(.min(#m)));
        let initial = a.initial.as_ref().map(|i| quote!(.initial(#i)));
        options.extend(quote!(.adaptive(#k::AdaptiveOptions::new() #min #initial)));
    }
    if let Some(rate) = l.rate {
        let rate = rate.to_tokens(k);
        let burst = l.burst.map(|b| quote!(.with_burst(#b)));
        options.extend(quote!(.rate(#rate #burst)));
    }
    if let Some(reserve) = &l.reserve {
        options.extend(quote!(.reserve(#reserve)));
    }
    if let Some(wait) = l.wait {
        let wait = wait.to_tokens();
        options.extend(quote!(.wait(#wait)));
    }
    if let Some(queue) = l.queue {
        options.extend(quote!(.queue(#queue)));
    }
    quote! {
        static __LIMITED: #k::StaticLimiter = #decl #options #at;
    }
}

/// `let __limit_permit = ...;`: waits for the right to start. With `wait`
/// or `queue`, a refusal leaves through `exit` (`return` or `break`) with
/// the error converted to the function's return type, spanned there so a
/// type that cannot carry it gets one error at the user's return type.
fn permit_step(
    k: &syn::Path,
    l: &Limited,
    permit: &Ident,
    output: &ReturnType,
    exit: &TokenStream,
) -> TokenStream {
    let Some(option) = &l.refuses else {
        // No option of its own refuses a call, but a name shared through a
        // server that fails closed may, if the output can carry the error.
        let ty = match output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) if !mentions_impl_trait(ty) => ty.to_token_stream(),
            ReturnType::Type(..) => return quote!(let #permit = __LIMITED.acquire().await;),
        };
        return quote! {
            let #permit = {
                #[allow(unused_imports)]
                use #k::__private::{RefuseNever as _, RefuseResult as _};
                let __limit_refuse = &#k::__private::Refuse::<#ty>::NEW;
                match __limit_refuse.start(&__LIMITED).await {
                    ::core::result::Result::Ok(__limit_ok) => __limit_ok,
                    ::core::result::Result::Err(__limit_err) => #exit __limit_refuse.refused(__limit_err),
                }
            };
        };
    };
    let refuse = if option == "wait" {
        quote!(WaitResult)
    } else {
        quote!(QueueResult)
    };
    let span = match output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    // The trait's own function, its `Self` inferred from the return type,
    // with every token spanned there: one error at the user's return type.
    let converted = respan(quote!(#k::__private::#refuse::refused(__limit_err)), span);
    quote! {
        let #permit = match __LIMITED.acquire_declared().await {
            ::core::result::Result::Ok(__limit_ok) => __limit_ok,
            ::core::result::Result::Err(__limit_err) => #exit #converted,
        };
    }
}

fn timeout_static(k: &syn::Path, t: &Timeout, fn_name: &str, at: TokenStream) -> TokenStream {
    let label = fn_path(fn_name);
    let mut calls = TokenStream::new();
    if let Some(d) = t.attempt {
        let d = d.to_tokens();
        calls.extend(quote!(.attempt(#d)));
    }
    if let Some(d) = t.total {
        let d = d.to_tokens();
        calls.extend(quote!(.total(#d)));
    }
    quote! {
        static __TIMEOUT: #k::StaticTimeout = #k::StaticTimeout::new(#label)#calls #at;
    }
}

fn breaker_static(k: &syn::Path, b: &Breaker, fn_name: &str, at: TokenStream) -> TokenStream {
    let name = match &b.name {
        Some(n) => n.to_token_stream(),
        None => fn_path(fn_name),
    };
    let mut calls = TokenStream::new();
    if let Some(r) = b.failure_rate {
        let r = proc_macro2::Literal::f64_suffixed(r);
        calls.extend(quote!(.failure_rate(#r)));
    }
    if let Some(n) = &b.min_calls {
        calls.extend(quote!(.min_calls(#n)));
    }
    if let Some(d) = b.window {
        let d = d.to_tokens();
        calls.extend(quote!(.window(#d)));
    }
    if let Some(d) = b.open_for {
        let d = d.to_tokens();
        calls.extend(quote!(.open_for(#d)));
    }
    if let Some(n) = &b.half_open {
        calls.extend(quote!(.half_open(#n)));
    }
    quote! {
        static __BREAKER: #k::StaticBreaker =
            #k::StaticBreaker::new(#name, #k::BreakerConfig::new()#calls) #at;
    }
}

/// The breaker around one attempt: `admit` before the permit (an open
/// breaker takes no permit and joins no queue; its refusal leaves through
/// `exit`), `record` after the body (a timed-out attempt always counts as
/// a failure; a limiter refusal leaves before it, so it never counts).
fn breaker_step(
    k: &syn::Path,
    b: &Breaker,
    exit: &TokenStream,
    ret_span: Span,
) -> (TokenStream, TokenStream) {
    let refused = respan(
        quote!(#k::__private::BreakerResult::refused(__limit_err)),
        ret_span,
    );
    let admit = quote! {
        let __limit_trial = match __BREAKER.admit() {
            ::core::result::Result::Ok(__limit_trial) => __limit_trial,
            ::core::result::Result::Err(__limit_err) => #exit #refused,
        };
    };
    let failure = b.failure.as_ref().map_or_else(
        || quote!(#k::__private::every_error),
        ToTokens::to_token_stream,
    );
    let failed = respan(
        quote!(#k::__private::breaker_failed(&__limit_outcome, #failure)),
        ret_span,
    );
    let record = quote! {
        __limit_trial.finish(__limit_timed_out || #failed);
    };
    (admit, record)
}

/// Tells an adaptive limiter how the attempt ended, giving its permit back:
/// a timed-out attempt or an `overload` error is a drop, a success a
/// latency sample, any other error nothing.
fn adaptive_signal(k: &syn::Path, a: &Adaptive, permit: &Ident, ret_span: Span) -> TokenStream {
    let outcome = match &a.overload {
        // Needs a `Result`: checked at the user's return type.
        Some(overload) => {
            quote_spanned!(ret_span=> #k::__private::adaptive_outcome(&__limit_outcome, #overload))
        }
        // Any output: a `Result`'s errors are ignored, anything else is a
        // success.
        None => quote!({
            #[allow(unused_imports)]
            use #k::__private::{ObservedAny as _, ObservedResult as _};
            (&#k::__private::Observed(&__limit_outcome)).outcome()
        }),
    };
    quote! {
        #permit.record(if __limit_timed_out {
            #k::Outcome::Overloaded
        } else {
            #outcome
        });
    }
}

/// `tokens`, every one of them spanned at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut t| {
            if let proc_macro2::TokenTree::Group(g) = &t {
                let mut inner = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                inner.set_span(span);
                t = proc_macro2::TokenTree::Group(inner);
            } else {
                t.set_span(span);
            }
            t
        })
        .collect()
}

/// `concat!(module_path!(), "::name")`: how limiters, retry and coalesce
/// counters name the function.
fn fn_path(fn_name: &str) -> TokenStream {
    let suffix = format!("::{fn_name}");
    quote!(::core::concat!(::core::module_path!(), #suffix))
}

fn retry_static(k: &syn::Path, r: &Retry, fn_name: &str) -> TokenStream {
    let mut calls = TokenStream::new();
    if let Some(a) = &r.attempts {
        calls.extend(quote!(.attempts(#a)));
    }
    if let Some(d) = r.initial {
        let d = d.to_tokens();
        calls.extend(quote!(.initial(#d)));
    }
    if let Some(m) = r.multiplier {
        let m = proc_macro2::Literal::f64_suffixed(m);
        calls.extend(quote!(.multiplier(#m)));
    }
    if let Some(d) = r.max_delay {
        let d = d.to_tokens();
        calls.extend(quote!(.max_delay(#d)));
    }
    if let Some(j) = r.jitter {
        let j = format_ident!("{}", j.variant());
        calls.extend(quote!(.jitter(#k::retry::Jitter::#j)));
    }
    if let Some(d) = r.max_elapsed {
        let d = d.to_tokens();
        calls.extend(quote!(.max_elapsed(#d)));
    }
    if r.policy.is_some() && r.attempts.is_none() {
        // With a policy, the policy alone decides when to stop.
        calls.extend(quote!(.attempts(::core::primitive::u32::MAX)));
    }
    let name = fn_path(fn_name);
    quote! {
        static __RETRY: #k::retry::StaticRetry = {
            static __COUNTERS: #k::retry::RetryCounters = #k::retry::RetryCounters::new();
            #k::retry::StaticRetry::new(#name, #k::retry::RetryPolicy::new()#calls, &__COUNTERS)
        };
    }
}

/// Shadows every owned argument with a fresh clone, inside one attempt,
/// and every `&mut` argument with a reborrow, so that the attempt's body
/// can be an `async move` block: it then holds its values itself, rather
/// than pointers into the call's future. Shared references are `Copy`. A
/// `mut` on an owned argument moves from the signature to its clone.
///
/// Returns `false` if some argument cannot be handed to one attempt that
/// way (a destructuring pattern, a receiver taken by value or by `&mut`):
/// the attempt's body must then borrow the arguments instead.
fn fresh_clones(k: &syn::Path, f: &mut ItemFn) -> (TokenStream, bool) {
    let mut out = TokenStream::new();
    let mut owns = true;
    for arg in &mut f.sig.inputs {
        let pt = match arg {
            FnArg::Receiver(r) => {
                let shared = match r.colon_token {
                    None => r.reference.is_some() && r.mutability.is_none(),
                    Some(_) => matches!(&*r.ty, Type::Reference(t) if t.mutability.is_none()),
                };
                owns &= shared;
                continue;
            }
            FnArg::Typed(pt) => pt,
        };
        if matches!(*pt.pat, Pat::Wild(_)) {
            continue;
        }
        let Pat::Ident(PatIdent {
            by_ref: None,
            mutability,
            ident,
            subpat: None,
            ..
        }) = &mut *pt.pat
        else {
            owns = false;
            continue;
        };
        let span = ident.span();
        match &*pt.ty {
            Type::Reference(r) if r.mutability.is_none() => {}
            Type::Reference(_) => {
                let mutability = mutability.take();
                out.extend(quote_spanned! {span=>
                    let #mutability #ident = &mut *#ident;
                });
            }
            _ => {
                let mutability = mutability.take();
                out.extend(quote_spanned! {span=>
                    let #mutability #ident = #k::__private::clone_arg(&#ident);
                });
            }
        }
    }
    (out, owns)
}

/// Gives each destructured argument (`(a, b): (u32, u32)`) a name of its
/// own, hygienic (`arg0`, ... in rustdoc; the body cannot see it), and
/// destructures it as the body's first statement instead: the default
/// `#[coalesce]` key then holds the whole argument, and `#[retry]` gives
/// each attempt a fresh clone of it, as for any argument. Not done under a
/// `key = ...` expression, which may name the pattern's bindings.
fn name_patterns(f: &mut ItemFn) {
    let mut lets = Vec::new();
    for (i, arg) in f.sig.inputs.iter_mut().enumerate() {
        let FnArg::Typed(pt) = arg else { continue };
        match &*pt.pat {
            Pat::Wild(_) => continue,
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => continue,
            _ => {}
        }
        let name = Ident::new(&format!("arg{i}"), Span::mixed_site());
        let pat = std::mem::replace(
            &mut *pt.pat,
            Pat::Ident(PatIdent {
                attrs: Vec::new(),
                by_ref: None,
                mutability: None,
                ident: name.clone(),
                subpat: None,
            }),
        );
        lets.push(syn::parse_quote!(let #pat = #name;));
    }
    f.block.stmts.splice(0..0, lets);
}

fn retry_loop(
    k: &syn::Path,
    r: &Retry,
    clones: &TokenStream,
    attempt: &TokenStream,
    output: &ReturnType,
) -> TokenStream {
    let when = r
        .when
        .as_ref()
        .map_or_else(|| quote!(#k::retry::any_error), ToTokens::to_token_stream);
    let hint = r
        .delay_hint
        .as_ref()
        .map_or_else(|| quote!(#k::retry::no_hint), ToTokens::to_token_stream);
    let on_retry = r
        .on_retry
        .as_ref()
        .map_or_else(|| quote!(#k::retry::no_hook), ToTokens::to_token_stream);
    // The schedule is made at the first failure, so a call whose first
    // attempt succeeds keeps nothing of it in its future.
    let schedule = r
        .policy
        .as_ref()
        .map(|p| quote!(|| #k::__private::backoff_policy(#p),));
    let check = if schedule.is_some() {
        quote!(check_with)
    } else {
        quote!(check)
    };
    // The outcome is named at the return type, so a function that does not
    // return a `Result` gets the runtime's message there.
    let outcome_span = match output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    let outcome = quote_spanned!(outcome_span=> __limit_outcome);
    quote!({
        let mut __limit_retry = __RETRY.start();
        loop {
            let __limit_outcome = {
                #clones
                #attempt
            };
            // The sleep is outside the `match`, so that neither the outcome
            // nor the `Step` is kept in the future across it.
            let __limit_delay = match __RETRY.#check(&mut __limit_retry, #schedule #outcome, #when, #hint, #on_retry) {
                #k::retry::Step::Done(__limit_out) => break __limit_out,
                #k::retry::Step::Retry(__limit_delay) => __limit_delay,
            };
            #k::retry::sleep(__limit_delay).await;
        }
    })
}

/// Where messages about the function's output point: its return type (or
/// its name, for a function returning `()`).
fn output_span(f: &ItemFn) -> Span {
    match &f.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => f.sig.ident.span(),
    }
}

/// The key: the `key` option, or every argument but the receiver, owned,
/// plus the receiver's address for methods.
fn coalesce_key(k: &syn::Path, c: &Coalesce, f: &ItemFn, boxed: bool) -> TokenStream {
    if let Some(key) = &c.key {
        let span = key.span();
        return quote_spanned!(span=> #k::__private::key_expr(#key));
    }
    let mut parts = Vec::new();
    for arg in &f.sig.inputs {
        match arg {
            FnArg::Receiver(r) => {
                // Under `#[async_trait]` the receiver was moved into
                // `__self` (by its prelude) before this runs.
                let this = match boxed {
                    true => quote!(__self),
                    false => quote!(self),
                };
                let this = if r.reference.is_some() || r.colon_token.is_some() {
                    quote!(&*#this)
                } else {
                    quote!(&#this)
                };
                parts.push(quote!(#k::__private::receiver_id(#this)));
            }
            FnArg::Typed(pt) => {
                let Pat::Ident(PatIdent { ident, .. }) = &*pt.pat else {
                    // Destructured arguments have no single name to key on.
                    continue;
                };
                let span = pt.span();
                parts.push(if matches!(*pt.ty, Type::Reference(_)) {
                    quote_spanned!(span=> #k::__private::key_part_owned(&*#ident))
                } else {
                    quote_spanned!(span=> #k::__private::key_part(&#ident))
                });
            }
        }
    }
    quote!((#(#parts,)*))
}
