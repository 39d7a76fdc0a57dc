use limit_runtime::limited;

// Four mistakes in one attribute: all four are reported.
#[limited(nme = "a", max = 0, max = 2, name = 1)]
async fn many() -> u32 {
    1
}

fn main() {
    // `many` is still emitted, so this call adds no error.
    let _ = many();
}
