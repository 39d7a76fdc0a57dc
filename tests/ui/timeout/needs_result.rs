use limit_runtime::timeout;

#[derive(Debug)]
struct MyError;

#[timeout("1s")]
async fn unit() {}

#[timeout("1s")]
async fn plain() -> u32 {
    1
}

#[timeout(total = "1s")]
async fn without_from() -> Result<u32, MyError> {
    Ok(1)
}

fn main() {}
