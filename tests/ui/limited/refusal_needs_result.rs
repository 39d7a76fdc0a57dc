use limit_runtime::limited;

#[derive(Debug)]
struct MyError;

#[limited(name = "a", max = 2, wait = "1s")]
async fn unit_return() {}

#[limited(name = "b", max = 2, queue = 10)]
async fn not_a_result() -> u32 {
    1
}

#[limited(name = "c", max = 2, wait = "1s", queue = 10)]
async fn error_without_from() -> Result<u32, MyError> {
    Ok(1)
}

fn main() {}
