use limit_runtime::limited;

#[limited(max = 1 2)]
async fn two_values() {}

#[limited(= 3)]
async fn no_key() {}

#[limited(max: 3)]
async fn colon() {}

#[limited = 3]
async fn name_value() {}

fn main() {}
