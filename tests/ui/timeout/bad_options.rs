use limit_runtime::timeout;

#[timeout]
async fn no_duration() -> std::io::Result<()> {
    Ok(())
}

#[timeout("2 seconds")]
async fn bad_duration() -> std::io::Result<()> {
    Ok(())
}

#[timeout(attempt = "0s", totl = "10s")]
async fn zero_and_unknown() -> std::io::Result<()> {
    Ok(())
}

#[timeout("2s", attempt = "3s")]
async fn twice() -> std::io::Result<()> {
    Ok(())
}

#[timeout(2)]
async fn not_a_string() -> std::io::Result<()> {
    Ok(())
}

fn main() {}
