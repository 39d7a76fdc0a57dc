//! Methods of `#[async_trait]` impls and traits.
//!
//! `#[async_trait]` sits on the impl (or trait), so it expands before the
//! attributes on its methods: ours then see, instead of the `async fn`,
//!
//! ```text
//! fn f<'life0, 'async_trait>(&'life0 self, x: X)
//!     -> Pin<Box<dyn Future<Output = T> + Send + 'async_trait>>
//! where ...
//! {
//!     Box::pin(async move {
//!         if let Some(__ret) = None::<T> { return __ret; }   // inference
//!         let __self = self;                                  // the arguments,
//!         let x = x;                                          // moved in
//!         let __ret: T = { body, with `self` written `__self` };
//!         __ret
//!     })
//! }
//! ```
//!
//! (`let _: () = { body };` for a method returning `()`; no `Send` with
//! `#[async_trait(?Send)]`; the same boxing written by hand,
//! `Box::pin(async move { body })`, is recognised too.) [`unwrap`] turns that back into the
//! `async fn f(&self, x: X) -> T { body }` the expansion expects, keeping
//! the prelude aside, and [`Wrapper::rewrap`] puts the expanded body back
//! in the prelude's place: the arguments are bound once, before the whole
//! pipeline, so a retried attempt reuses `__self` as a plain method reuses
//! `self`. If our attribute expands first (an ordinary `async fn`),
//! `#[async_trait]` boxes the expansion like any other body.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{
    Block, Expr, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Signature, Stmt, Type,
    TypeParamBound,
};

/// The boxing an `#[async_trait]` method had around its body: restored
/// around the expanded body.
pub struct Wrapper {
    sig: Signature,
    prelude: Vec<Stmt>,
    /// `let __ret: T` or `let _: ()`, the binding the body was assigned
    /// to; `None`: the body was the whole async block.
    binding: Option<Pat>,
    /// What followed the binding (`__ret`), if anything.
    tail: Vec<Stmt>,
}

/// If `f` is a method as `#[async_trait]` writes it, turns it into the
/// `async fn` it was written as and returns what to put back.
pub fn unwrap(f: &mut ItemFn) -> Option<Wrapper> {
    if f.sig.asyncness.is_some() {
        return None;
    }
    let output = boxed_future_output(&f.sig.output)?;
    let [Stmt::Expr(Expr::Call(call), None)] = &f.block.stmts[..] else {
        return None;
    };
    let is_box_pin = matches!(&*call.func, Expr::Path(p)
        if p.path.segments.len() == 2
            && p.path.segments[0].ident == "Box"
            && p.path.segments[1].ident == "pin");
    let [Expr::Async(inner)] = &call.args.iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    if !is_box_pin || inner.capture.is_none() {
        return None;
    }
    // The body is the last `let` whose pattern is `__ret` or `_`; without
    // one (the same shape written by hand), the whole async block.
    let stmts = &inner.block.stmts;
    let binding = stmts.iter().enumerate().rev().find_map(|(at, s)| match s {
        Stmt::Local(local) if is_binding(&local.pat) => {
            Some((at, local.pat.clone(), &local.init.as_ref()?.expr))
        }
        _ => None,
    });
    let (wrapper, body) = match binding {
        Some((at, pat, body)) => {
            let body: Block = match &**body {
                Expr::Block(b) if b.attrs.is_empty() && b.label.is_none() => b.block.clone(),
                other => syn::parse_quote!({ #other }),
            };
            let wrapper = Wrapper {
                sig: f.sig.clone(),
                prelude: stmts[..at].to_vec(),
                binding: Some(pat),
                tail: stmts[at + 1..].to_vec(),
            };
            (wrapper, body)
        }
        None => {
            let wrapper = Wrapper {
                sig: f.sig.clone(),
                prelude: Vec::new(),
                binding: None,
                tail: Vec::new(),
            };
            (wrapper, inner.block.clone())
        }
    };
    f.sig.asyncness = Some(Default::default());
    f.sig.output = match output {
        Some(ty) => ReturnType::Type(Default::default(), Box::new(ty)),
        None => ReturnType::Default,
    };
    *f.block = body;
    Some(wrapper)
}

impl Wrapper {
    /// The method as `#[async_trait]` wrote it, with `expanded` (the
    /// function our attributes produced from [`unwrap`]'s `async fn`) as
    /// its body.
    pub fn rewrap(self, expanded: TokenStream) -> TokenStream {
        let Ok(mut f) = syn::parse2::<ItemFn>(expanded.clone()) else {
            return expanded;
        };
        let Wrapper {
            sig,
            prelude,
            binding,
            tail,
        } = self;
        let block = &f.block;
        f.sig = sig;
        let boxed = match binding {
            Some(binding) => quote!({
                ::std::boxed::Box::pin(async move {
                    #(#prelude)*
                    let #binding = #block;
                    #(#tail)*
                })
            }),
            None => quote!({ ::std::boxed::Box::pin(async move #block) }),
        };
        f.block = Box::new(syn::parse2(boxed).expect("generated block parses"));
        f.into_token_stream()
    }
}

/// `__ret: T` or `_: ()`.
fn is_binding(pat: &Pat) -> bool {
    let Pat::Type(typed) = pat else { return false };
    match &*typed.pat {
        Pat::Ident(id) => id.ident == "__ret",
        Pat::Wild(_) => true,
        _ => false,
    }
}

/// For `Pin<Box<dyn Future<Output = T> + ...>>`: `Some(Some(T))`, or
/// `Some(None)` for `Output = ()`.
fn boxed_future_output(output: &ReturnType) -> Option<Option<Type>> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let pinned = single_generic(ty, "Pin")?;
    let boxed = single_generic(pinned, "Box")?;
    let Type::TraitObject(object) = boxed else {
        return None;
    };
    object.bounds.iter().find_map(|b| {
        let TypeParamBound::Trait(t) = b else {
            return None;
        };
        let last = t.path.segments.last()?;
        if last.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        args.args.iter().find_map(|a| match a {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(match &assoc.ty {
                Type::Tuple(t) if t.elems.is_empty() => None,
                ty => Some(ty.clone()),
            }),
            _ => None,
        })
    })
}

/// `T` of `Name<T>` (any path ending in `Name`).
fn single_generic<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) if args.args.len() == 1 => Some(t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_boxed_shape_and_restores_it() {
        let mut f: ItemFn = syn::parse_quote! {
            fn get<'life0, 'async_trait>(&'life0 self, id: u64)
                -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = Result<u64, E>> + ::core::marker::Send + 'async_trait>>
            where 'life0: 'async_trait, Self: 'async_trait
            {
                Box::pin(async move {
                    if let ::core::option::Option::Some(__ret) = ::core::option::Option::None::<Result<u64, E>> {
                        #[allow(unreachable_code)]
                        return __ret;
                    }
                    let __self = self;
                    let id = id;
                    let __ret: Result<u64, E> = { Ok(__self.base + id) };
                    #[allow(unreachable_code)]
                    __ret
                })
            }
        };
        let w = unwrap(&mut f).expect("recognised");
        assert!(f.sig.asyncness.is_some());
        assert_eq!(
            f.sig.output.to_token_stream().to_string(),
            quote!(-> Result<u64, E>).to_string()
        );
        assert_eq!(
            f.block.to_token_stream().to_string(),
            quote!({ Ok(__self.base + id) }).to_string()
        );
        let back = w.rewrap(f.to_token_stream()).to_string();
        assert!(back.contains("Box :: pin (async move"), "{back}");
        assert!(back.contains("let __self = self ;"), "{back}");
        assert!(!back.contains("async fn"), "{back}");
    }

    #[test]
    fn recognises_unit_methods_and_not_send_ones() {
        let mut f: ItemFn = syn::parse_quote! {
            fn ping<'life0, 'async_trait>(&'life0 self)
                -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = ()> + 'async_trait>>
            {
                Box::pin(async move {
                    let __self = self;
                    let _: () = { __self.count() };
                })
            }
        };
        unwrap(&mut f).expect("recognised");
        assert!(matches!(f.sig.output, ReturnType::Default));
    }

    #[test]
    fn recognises_the_shape_written_by_hand() {
        let mut f: ItemFn = syn::parse_quote! {
            fn get<'a>(&'a self, id: u64) -> Pin<Box<dyn Future<Output = u64> + Send + 'a>> {
                Box::pin(async move { self.base + id })
            }
        };
        let w = unwrap(&mut f).expect("recognised");
        assert_eq!(
            f.block.to_token_stream().to_string(),
            quote!({ self.base + id }).to_string()
        );
        let back = w.rewrap(f.to_token_stream()).to_string();
        assert!(
            back.contains("Box :: pin (async move { self . base + id })"),
            "{back}"
        );
    }

    #[test]
    fn leaves_other_functions_alone() {
        let mut f: ItemFn = syn::parse_quote! {
            fn plain(&self) -> Pin<Box<dyn Future<Output = u32> + Send>> {
                Box::pin(std::future::ready(1))
            }
        };
        assert!(unwrap(&mut f).is_none());
        let mut f: ItemFn = syn::parse_quote! {
            fn not_moved(&self) -> Pin<Box<dyn Future<Output = u32> + Send + '_>> {
                Box::pin(async { 1 })
            }
        };
        assert!(unwrap(&mut f).is_none());
        let mut f: ItemFn = syn::parse_quote!(
            fn sync(&self) -> u32 {
                1
            }
        );
        assert!(unwrap(&mut f).is_none());
    }
}
