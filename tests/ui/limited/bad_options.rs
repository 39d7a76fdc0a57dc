use limit_runtime::limited;

#[limited(name = 5, max = 1)]
async fn name_not_a_string() {}

#[limited(name = "", max = 1)]
async fn empty_name() {}

#[limited(maxx = 3)]
async fn unknown_option() {}

#[limited(max = 1, max = 2)]
async fn duplicate_option() {}

#[limited(max)]
async fn bare_key() {}

#[limited(crate = 5, max = 1)]
async fn crate_not_a_string() {}

#[limited(max = 1)]
#[limited(max = 2)]
async fn duplicate_attribute() {}

fn main() {}
