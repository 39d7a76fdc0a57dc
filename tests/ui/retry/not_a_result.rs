use limit_runtime::retry;

#[retry]
async fn returns_a_number() -> u32 {
    1
}

#[retry]
async fn returns_nothing() {}

type Alias = Option<u8>;

#[retry(attempts = 2)]
async fn returns_an_alias() -> Alias {
    None
}

fn main() {}
