use std::sync::Arc;

use limit_runtime::coalesce;

#[derive(Clone)]
struct Region(f64);

#[coalesce]
async fn by_region(id: u64, region: Region) -> Arc<String> {
    let _ = (id, region);
    Arc::new(String::new())
}

#[coalesce(key = region.clone())]
async fn keyed(id: u64, region: Region) -> Arc<String> {
    let _ = (id, region);
    Arc::new(String::new())
}

#[coalesce(key = std::rc::Rc::new(id))]
async fn not_send(id: u64) -> u64 {
    id
}

fn main() {}
