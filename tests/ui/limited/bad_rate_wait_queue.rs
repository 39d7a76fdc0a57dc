use limit_runtime::limited;

#[limited(name = "a", rate = "0/s")]
async fn zero_rate() {}

#[limited(name = "b", rate = "10/x")]
async fn bad_unit() {}

#[limited(name = "c", rate = "ten/s")]
async fn not_a_number() {}

#[limited(name = "d", rate = "10/s", burst = 0)]
async fn zero_burst() {}

#[limited(name = "e", max = 2, queue = -1)]
async fn negative_queue() -> std::io::Result<()> {
    Ok(())
}

#[limited(name = "f", max = 2, wait = "2 seconds")]
async fn bad_wait() -> std::io::Result<()> {
    Ok(())
}

#[limited(name = "g", max = 2, burst = 5)]
async fn burst_without_rate() {}

#[limited(name = "h", rate = "5/s", reserve = 1)]
async fn reserve_without_max() {}

#[limited(name = "i", max = 4, reserve = 4)]
async fn reserve_not_below_max() {}

#[limited(name = "j")]
async fn neither_max_nor_rate() {}

fn main() {}
