use std::sync::atomic::AtomicU32;

use limit_renamed_test::{coalesced, limited, retried};

#[tokio::test(start_paused = true)]
async fn expansions_work_with_a_renamed_runtime_and_shadowed_names() {
    assert_eq!(limited(1).await, 2);
    let n = AtomicU32::new(0);
    assert_eq!(retried(&n, "x".to_owned()).await, Ok(2));
    assert_eq!(coalesced(4, "ab").await, Ok(6));
}
