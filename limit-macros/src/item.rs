//! The annotated item: an `async fn` with a body, and the other `limit`
//! attributes written on it.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Attribute, Item, ItemFn, Meta, TraitItemFn};

use crate::args::{parse_opts, Errors, Opt};
use crate::async_trait::Wrapper;

/// The options of one attribute. `#[timeout("2s")]` is `attempt = "2s"`.
fn parse_args(kind: Kind, tokens: TokenStream) -> syn::Result<Vec<Opt>> {
    if kind == Kind::Timeout {
        let mut iter = tokens.clone().into_iter();
        if let Some(first) = iter.next() {
            if let proc_macro2::TokenTree::Literal(l) = &first {
                if syn::parse2::<syn::LitStr>(first.clone().into()).is_err() {
                    return Err(syn::Error::new(
                        l.span(),
                        "a duration is a string literal with a unit: write #[timeout(\"2s\")] or #[timeout(attempt = \"2s\", total = \"10s\")]",
                    ));
                }
            }
            if let Ok(lit) = syn::parse2::<syn::LitStr>(first.into()) {
                let key = syn::Ident::new("attempt", lit.span());
                let mut opts = vec![Opt {
                    key,
                    value: Some(syn::Expr::Lit(syn::ExprLit {
                        attrs: Vec::new(),
                        lit: syn::Lit::Str(lit),
                    })),
                }];
                let rest: TokenStream = iter.collect();
                let mut rest = rest.into_iter().peekable();
                match rest.next() {
                    None => {}
                    Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == ',' => {
                        opts.extend(parse_opts(rest.collect())?);
                    }
                    Some(other) => return Err(syn::Error::new(
                        other.span(),
                        "write #[timeout(\"2s\")] or #[timeout(attempt = \"2s\", total = \"10s\")]",
                    )),
                }
                return Ok(opts);
            }
        }
    }
    parse_opts(tokens)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Limited,
    Retry,
    Coalesce,
    Timeout,
    CircuitBreaker,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Coalesce,
        Kind::Timeout,
        Kind::Retry,
        Kind::CircuitBreaker,
        Kind::Limited,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Limited => "limited",
            Kind::Retry => "retry",
            Kind::Coalesce => "coalesce",
            Kind::Timeout => "timeout",
            Kind::CircuitBreaker => "circuit_breaker",
        }
    }

    fn from_attr(attr: &Attribute) -> Option<Kind> {
        let last = attr.path().segments.last()?;
        Kind::ALL.into_iter().find(|k| last.ident == k.name())
    }
}

/// One of our attributes with its options, syntax only.
pub struct Attr {
    pub kind: Kind,
    /// The path as written, for attributes found on the function (the one
    /// being expanded has none): the expansion mentions it so that the
    /// user's `use` of it does not look unused.
    pub path: Option<syn::Path>,
    /// Where "missing option" errors point.
    pub span: Span,
    pub opts: Vec<Opt>,
}

/// Parses the item an attribute is written on. `Err` means the item is not a
/// function with a body: the caller emits the error and the item unchanged.
/// A method as `#[async_trait]` wrote it comes back as the `async fn` it was
/// written as, with the [`Wrapper`] to put its expansion back in.
pub fn parse_fn(
    kind: Kind,
    item: TokenStream,
) -> Result<(ItemFn, Option<Wrapper>, Errors), syn::Error> {
    let name = kind.name();
    let mut errors = Errors::default();
    if let Ok(mut f) = syn::parse2::<ItemFn>(item.clone()) {
        let wrapper = crate::async_trait::unwrap(&mut f);
        if let Some(c) = &f.sig.constness {
            errors.spanned(
                c,
                format_args!("#[{name}] cannot be used on a `const fn`: remove `const` and make it an `async fn`"),
            );
        } else if f.sig.asyncness.is_none() {
            errors.spanned(
                f.sig.fn_token,
                format_args!("#[{name}] applies to an `async fn`: write `async fn`"),
            );
        }
        return Ok((f, wrapper, errors));
    }
    if let Ok(f) = syn::parse2::<TraitItemFn>(item.clone()) {
        let at = f
            .semi_token
            .map(|s| s.span())
            .unwrap_or_else(|| f.sig.span());
        return Err(syn::Error::new(
            at,
            format_args!(
                "#[{name}] needs a function body: put it on the method's default body or on its implementations"
            ),
        ));
    }
    let what = match syn::parse2::<Item>(item.clone()) {
        Ok(item) => describe(&item),
        Err(_) => None,
    };
    let (span, what) = match what {
        Some((span, what)) => (span, what),
        None => (
            item.clone()
                .into_iter()
                .next()
                .map_or_else(Span::call_site, |t| t.span()),
            "this item",
        ),
    };
    Err(syn::Error::new(
        span,
        format_args!("#[{name}] applies to an `async fn` with a body, not to {what}"),
    ))
}

/// The keyword of a non-function item, and what to call it.
fn describe(item: &Item) -> Option<(Span, &'static str)> {
    Some(match item {
        Item::Struct(i) => (i.struct_token.span, "a struct"),
        Item::Enum(i) => (i.enum_token.span, "an enum"),
        Item::Union(i) => (i.union_token.span, "a union"),
        Item::Const(i) => (i.const_token.span, "a const"),
        Item::Static(i) => (i.static_token.span, "a static"),
        Item::Impl(i) => (i.impl_token.span, "an impl block (put it on the methods)"),
        Item::Trait(i) => (i.trait_token.span, "a trait (put it on the methods)"),
        Item::Mod(i) => (i.mod_token.span, "a module"),
        Item::Type(i) => (i.type_token.span, "a type alias"),
        Item::Use(i) => (i.use_token.span, "a use declaration"),
        Item::ForeignMod(i) => (i.abi.extern_token.span, "an extern block"),
        Item::Macro(i) => (i.mac.path.span(), "a macro invocation"),
        _ => return None,
    })
}

/// Gathers the attribute being expanded and the other `limit` attributes
/// on the function, removing the latter from `f.attrs`: the first one to
/// expand builds the whole pipeline, whatever the written order.
pub fn collect(kind: Kind, args: TokenStream, f: &mut ItemFn, errors: &mut Errors) -> Vec<Attr> {
    let mut attrs = Vec::new();
    match parse_args(kind, args) {
        Ok(opts) => attrs.push(Attr {
            kind,
            path: None,
            span: Span::call_site(),
            opts,
        }),
        Err(e) => errors.push(e),
    }
    let mut seen = vec![kind];
    let mut kept = Vec::with_capacity(f.attrs.len());
    for attr in f.attrs.drain(..) {
        let Some(other) = Kind::from_attr(&attr) else {
            kept.push(attr);
            continue;
        };
        let span = attr
            .path()
            .segments
            .last()
            .map_or_else(Span::call_site, |s| s.ident.span());
        if seen.contains(&other) {
            errors.at(
                span,
                format_args!(
                    "duplicate #[{}] attribute: merge their options into one",
                    other.name()
                ),
            );
            continue;
        }
        seen.push(other);
        let tokens = match &attr.meta {
            Meta::Path(_) => TokenStream::new(),
            Meta::List(list) => list.tokens.clone(),
            Meta::NameValue(nv) => {
                errors.spanned(
                    nv.eq_token.into_token_stream(),
                    format_args!("write #[{}(option = value, ...)]", other.name()),
                );
                continue;
            }
        };
        match parse_args(other, tokens) {
            Ok(opts) => attrs.push(Attr {
                kind: other,
                path: Some(attr.path().clone()),
                span,
                opts,
            }),
            Err(e) => errors.push(e),
        }
    }
    f.attrs = kept;
    attrs
}
