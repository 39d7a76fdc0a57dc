use limit_runtime::coalesce;

#[coalesce(keys = id)]
async fn unknown(id: u64) -> u64 {
    id
}

#[coalesce(key)]
async fn bare(id: u64) -> u64 {
    id
}

#[coalesce(key = id, key = id)]
async fn duplicate(id: u64) -> u64 {
    id
}

#[coalesce]
fn not_async(id: u64) -> u64 {
    id
}

#[coalesce]
#[coalesce]
async fn twice(id: u64) -> u64 {
    id
}

fn main() {}
