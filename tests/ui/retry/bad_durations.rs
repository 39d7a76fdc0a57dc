use limit_runtime::retry;

#[retry(initial = "10", max_delay = "10 parsecs", max_elapsed = "fast")]
async fn words() -> Result<(), ()> {
    Ok(())
}

#[retry(initial = 100, max_delay = "1.2.3s")]
async fn not_strings() -> Result<(), ()> {
    Ok(())
}

fn main() {}
