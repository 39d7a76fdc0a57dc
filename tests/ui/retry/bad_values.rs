use limit_runtime::retry;

#[retry(attempts = 0, multiplier = 0.5, jitter = "random")]
async fn out_of_range() -> Result<(), ()> {
    Ok(())
}

#[retry(attempts = "3", multiplier = -2, jitter = full)]
async fn wrong_types() -> Result<(), ()> {
    Ok(())
}

#[retry(attempt = 3, attempts = 2, attempts = 4, when = true)]
async fn unknown_and_duplicate() -> Result<(), ()> {
    Ok(())
}

#[retry(policy = make_policy(), initial = "1s", jitter = "none")]
async fn policy_and_schedule() -> Result<(), ()> {
    Ok(())
}

fn main() {}
