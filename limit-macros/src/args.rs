//! Syntax of an attribute's arguments: `key = value, ...`.
//!
//! This stage only splits the tokens; what a key means and which values it
//! takes is decided by the per-attribute validation in `config.rs`.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Token};

/// One `key = value` (or a bare `key`, which validation rejects).
pub struct Opt {
    pub key: Ident,
    pub value: Option<Expr>,
}

impl Parse for Opt {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        // `crate` is a keyword, so parse any identifier.
        let key = Ident::parse_any(input)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Opt { key, value })
    }
}

pub fn parse_opts(tokens: TokenStream) -> syn::Result<Vec<Opt>> {
    let parser = Punctuated::<Opt, Token![,]>::parse_terminated;
    Ok(parser.parse2(tokens)?.into_iter().collect())
}

/// Collects every error so one compile reports them all.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub fn at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }

    pub fn spanned(&mut self, tokens: impl quote::ToTokens, msg: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, msg));
    }

    pub fn into_result(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// An option's value, set at most once. The one place duplicates are
/// rejected (even when the first value was itself invalid).
pub struct Slot<T> {
    seen: bool,
    value: Option<T>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            seen: false,
            value: None,
        }
    }
}

impl<T> Slot<T> {
    /// Validates and stores a value with `parse`, which reports its own
    /// errors and returns `None` for an invalid value.
    pub fn set_with(
        &mut self,
        key: &Ident,
        errors: &mut Errors,
        parse: impl FnOnce(&mut Errors) -> Option<T>,
    ) {
        if self.seen {
            errors.spanned(key, format_args!("duplicate option `{key}`: remove one"));
            return;
        }
        self.seen = true;
        self.value = parse(errors);
    }

    pub fn get(self) -> Option<T> {
        self.value
    }
}
