use limit_runtime::limited;

#[limited(max = 1)]
fn not_async() {}

#[limited(max = 1)]
const fn constant() {}

#[limited(max = 1)]
struct NotAFunction;

#[limited(max = 1)]
impl NotAFunction {}

trait Declared {
    #[limited(max = 1)]
    async fn no_body(&self);
}

fn main() {
    // The functions are still emitted: calling them adds no error.
    not_async();
    constant();
}
