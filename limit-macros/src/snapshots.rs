//! Expansion snapshots: what each attribute generates for the sources in
//! `tests/expand/*.rs`, formatted with `prettyplease` and compared with the
//! committed `tests/expand/*.expanded.rs`. Every change to generated code
//! is then a reviewed diff. `LIMIT_SNAPSHOTS=overwrite cargo test -p
//! limit-macros` rewrites them.
//!
//! The expansion runs through the same entry point as the compiler's call
//! (`crate::entry`), on `proc_macro2` tokens: no external tool is needed.

use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Attribute, ImplItem, Item, Meta, TraitItem};

use crate::item::Kind;

/// Expands the first of our attributes on a function (the others are
/// collected by the expansion itself, as the compiler would).
fn expand_fn(
    attrs: &mut Vec<Attribute>,
    rest: impl FnOnce(&[Attribute]) -> TokenStream,
) -> Option<TokenStream> {
    let pos = attrs.iter().position(|a| {
        a.path()
            .segments
            .last()
            .is_some_and(|s| Kind::ALL.iter().any(|k| s.ident == k.name()))
    })?;
    let attr = attrs.remove(pos);
    let name = attr.path().segments.last().unwrap().ident.to_string();
    let kind = *Kind::ALL.iter().find(|k| k.name() == name).unwrap();
    let args = match &attr.meta {
        Meta::List(list) => list.tokens.clone(),
        _ => TokenStream::new(),
    };
    Some(crate::entry(kind, args, rest(attrs)))
}

/// Expands a function-like item (free function, impl or trait method) in
/// place, if one of our attributes is on it.
fn expand_in_place<T>(item: &mut T, attrs: impl Fn(&mut T) -> &mut Vec<Attribute>)
where
    T: Clone + ToTokens + syn::parse::Parse,
{
    let mut taken = std::mem::take(attrs(item));
    let body = item.clone();
    let out = expand_fn(&mut taken, |a| {
        let mut g = body;
        *attrs(&mut g) = a.to_vec();
        g.into_token_stream()
    });
    match out {
        Some(out) => *item = syn::parse2(out).expect("the expansion parses as the same item"),
        None => *attrs(item) = taken,
    }
}

fn expand_items(items: &mut [Item]) {
    for item in items {
        match item {
            Item::Fn(f) => expand_in_place(f, |f| &mut f.attrs),
            Item::Impl(i) => {
                for ii in &mut i.items {
                    if let ImplItem::Fn(m) = ii {
                        expand_in_place(m, |m| &mut m.attrs);
                    }
                }
            }
            Item::Trait(t) => {
                for ti in &mut t.items {
                    if let TraitItem::Fn(m) = ti {
                        expand_in_place(m, |m| &mut m.attrs);
                    }
                }
            }
            _ => {}
        }
    }
}

fn expand_source(src: &str) -> String {
    let mut file: syn::File = syn::parse_str(src).expect("snapshot source parses");
    expand_items(&mut file.items);
    prettyplease::unparse(&file)
}

fn sources() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expand");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/expand exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "rs")
                && !p.to_string_lossy().ends_with(".expanded.rs")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn expansions_match_their_snapshots() {
    let overwrite = std::env::var("LIMIT_SNAPSHOTS").is_ok_and(|v| v == "overwrite");
    let mut stale = Vec::new();
    let all = sources();
    assert!(all.len() >= 3, "snapshot sources missing: {all:?}");
    for src_path in all {
        let src = std::fs::read_to_string(&src_path).expect("readable source");
        let got = expand_source(&src);
        let snap = src_path.with_extension("expanded.rs");
        let want = std::fs::read_to_string(&snap).unwrap_or_default();
        if got != want {
            if overwrite {
                std::fs::write(&snap, &got).expect("writable snapshot");
            } else {
                let first = got
                    .lines()
                    .zip(want.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| got.lines().count().min(want.lines().count()));
                stale.push(format!(
                    "{}: differs from line {}:\n  got:  {}\n  want: {}",
                    snap.display(),
                    first + 1,
                    got.lines().nth(first).unwrap_or("<end>"),
                    want.lines().nth(first).unwrap_or("<end>"),
                ));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "expansion snapshots are stale (review, then refresh with LIMIT_SNAPSHOTS=overwrite cargo test -p limit-macros):\n{}",
        stale.join("\n")
    );
}

#[test]
fn expanding_is_what_the_attribute_does() {
    // A sanity check of the harness itself: the attribute is consumed, the
    // function keeps its name, and a static limiter appears.
    let out = expand_source("#[limited(name = \"x\", max = 2)] async fn f() -> u32 { 1 }");
    assert!(!out.contains("#[limited"), "{out}");
    assert!(out.contains("async fn f() -> u32"), "{out}");
    assert!(out.contains("StaticLimiter::new("), "{out}");
    assert!(out.contains("\"x\""), "{out}");
}
