//! Compile-fail tests: every misuse of an attribute is a spanned error that
//! says what to write instead. `TRYBUILD=overwrite cargo test --test ui`
//! refreshes the `.stderr` snapshots after a reviewed change.

#[test]
fn limited() {
    trybuild::TestCases::new().compile_fail("tests/ui/limited/*.rs");
}

#[test]
fn retry() {
    trybuild::TestCases::new().compile_fail("tests/ui/retry/*.rs");
}

#[test]
fn coalesce() {
    trybuild::TestCases::new().compile_fail("tests/ui/coalesce/*.rs");
}

#[test]
fn timeout() {
    trybuild::TestCases::new().compile_fail("tests/ui/timeout/*.rs");
}

#[test]
fn circuit_breaker() {
    trybuild::TestCases::new().compile_fail("tests/ui/circuit_breaker/*.rs");
}
