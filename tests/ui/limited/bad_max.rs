use limit_runtime::limited;

#[limited(max = 0)]
async fn zero() {}

#[limited(max = -1)]
async fn negative() {}

#[limited(max = 1.5)]
async fn float() {}

#[limited(max = "10")]
async fn string() {}

#[limited(max = 99999999999999999999999)]
async fn too_big() {}

#[limited(name = "address")]
async fn missing() {}

#[limited]
async fn nothing() {}

const ZERO: usize = 0;

#[limited(max = ZERO)]
async fn zero_const() {}

const WRONG_TYPE: u8 = 3;

#[limited(max = WRONG_TYPE)]
async fn wrong_type() {}

fn main() {}
