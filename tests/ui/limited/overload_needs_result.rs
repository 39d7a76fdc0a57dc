use limit_runtime::limited;

fn is_overload(_: &std::io::Error) -> bool {
    true
}

#[limited(name = "a", adaptive, overload = is_overload)]
async fn not_a_result() -> u64 {
    1
}

fn main() {}
