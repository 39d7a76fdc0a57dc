use limit_runtime::limited;

#[limited(name = "a", max = 10, min = 2)]
async fn min_without_adaptive() {}

#[limited(name = "b", max = 10, initial = 4, overload = |_: &std::io::Error| true)]
async fn initial_and_overload_without_adaptive() -> std::io::Result<()> {
    Ok(())
}

#[limited(name = "c", adaptive = true)]
async fn adaptive_with_a_value() {}

#[limited(name = "d", adaptive, min = 20, max = 10)]
async fn min_above_max() {}

#[limited(name = "e", adaptive, min = 2, initial = 1)]
async fn initial_below_min() {}

#[limited(name = "f", adaptive, initial = 2000)]
async fn initial_above_default_max() {}

#[limited(name = "g", adaptive, min = 0)]
async fn zero_min() {}

fn main() {}
