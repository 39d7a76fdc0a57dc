use limit_runtime::circuit_breaker;

#[circuit_breaker(failure_rate = 0, min_calls = 0, half_open = 0)]
async fn zeros() -> std::io::Result<()> {
    Ok(())
}

#[circuit_breaker(failure_rate = 1.5, window = "soon", open_for = "0s")]
async fn out_of_range() -> std::io::Result<()> {
    Ok(())
}

#[circuit_breaker(name = "", failur = is_bad, failure = true)]
async fn misnamed() -> std::io::Result<()> {
    Ok(())
}

fn is_bad(_: &std::io::Error) -> bool {
    true
}

#[derive(Debug)]
struct MyError;

#[circuit_breaker]
async fn without_from() -> Result<u32, MyError> {
    Ok(1)
}

#[circuit_breaker]
async fn unit() {}

fn main() {}
