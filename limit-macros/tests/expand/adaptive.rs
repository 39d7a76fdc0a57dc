use limit_runtime::limited;

#[derive(Debug)]
pub struct S3Error;

impl S3Error {
    fn is_throttle(&self) -> bool {
        true
    }
}

// Adaptive: the body's outcome tells the limiter how the service is doing.
#[limited(name = "s3", adaptive, min = 2, max = 256, overload = S3Error::is_throttle)]
pub async fn put_object(key: String) -> Result<usize, S3Error> {
    Ok(key.len())
}

// Without `overload`, a `Result`'s errors are ignored; other outputs are
// successes.
#[limited(name = "thumbnails", adaptive)]
pub async fn thumbnail(id: u64) -> u64 {
    id
}

fn main() {}
