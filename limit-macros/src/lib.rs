//! Attribute macros of `limit`. Use them through `limit-runtime`, which
//! re-exports them and documents them.

use proc_macro::TokenStream;

#[proc_macro_attribute]
pub fn limited(args: TokenStream, item: TokenStream) -> TokenStream {
    let _ = args;
    item
}
