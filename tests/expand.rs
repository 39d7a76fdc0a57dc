//! Expansion snapshots: what `cargo expand` shows for representative uses.
//! Every change to generated code shows up as a diff of
//! `tests/expand/*.expanded.rs` (`MACROTEST=overwrite` refreshes them).
//! Needs `cargo-expand` (`.ci/run` installs it).

#[test]
fn expansions() {
    macrotest::expand("tests/expand/*.rs");
}
