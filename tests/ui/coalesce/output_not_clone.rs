use limit_runtime::coalesce;

struct Config;

#[coalesce]
async fn load(tenant: &str) -> Config {
    let _ = tenant;
    Config
}

fn main() {}
