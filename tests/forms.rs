//! Every kind of function the attributes apply to: free functions, inherent
//! methods with each receiver, trait-impl methods, trait default methods,
//! generics, lifetimes and where-clauses. The returned futures stay `Send`.

use std::fmt::Display;
use std::sync::Arc;

use limit_runtime::{coalesce, limited, retry};

struct Client {
    base: String,
    calls: u32,
}

impl Client {
    #[limited(name = "forms-client", max = 2)]
    async fn by_ref(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    #[limited(name = "forms-client", max = 2)]
    async fn by_mut(&mut self) -> u32 {
        self.calls += 1;
        self.calls
    }

    #[limited(name = "forms-client", max = 2)]
    async fn by_value(self) -> String {
        self.base
    }

    #[limited(name = "forms-client", max = 2)]
    async fn by_arc(self: Arc<Self>) -> usize {
        Arc::strong_count(&self)
    }

    #[limited(name = "forms-client", max = 2)]
    #[retry(attempts = 2, initial = "1ms")]
    async fn retried_mut(&mut self, fail_first: bool) -> Result<u32, String> {
        self.calls += 1;
        if fail_first && self.calls == 2 {
            return Err("first".into());
        }
        Ok(self.calls)
    }

    #[coalesce]
    #[limited(max = 1)]
    async fn coalesced(&self, id: u64) -> String {
        format!("{}#{id}", self.base)
    }
}

trait Service {
    async fn get(&self, id: u32) -> u32;

    #[limited(name = "forms-trait-default", max = 1)]
    async fn default_get(&self, id: u32) -> u32 {
        id + 100
    }
}

struct Doubler;

impl Service for Doubler {
    #[limited(name = "forms-trait-impl", max = 1)]
    async fn get(&self, id: u32) -> u32 {
        id * 2
    }
}

#[limited(name = "forms-generic", max = 3)]
async fn generic<'a, T, const N: usize>(items: &'a [T; N], sep: &str) -> String
where
    T: Display + Sync,
{
    items
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

#[limited(max = 1)]
async fn borrows<'a>(s: &'a str) -> &'a str {
    s.trim()
}

#[limited(max = 1)]
async fn impl_arg(x: impl Display) -> String {
    x.to_string()
}

#[limited(max = 1)]
async fn question_mark(s: &str) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    let n: u32 = s.parse()?;
    if n == 0 {
        return Err("zero".into());
    }
    Ok(n)
}

#[limited(max = 1)]
async fn destructured((a, b): (u32, u32), mut c: u32) -> u32 {
    c += 1;
    a + b + c
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[tokio::test]
async fn methods_with_every_receiver() {
    let mut c = Client {
        base: "http://x".into(),
        calls: 0,
    };
    assert_eq!(c.by_ref("a").await, "http://x/a");
    assert_eq!(c.by_mut().await, 1);
    assert_eq!(c.retried_mut(true).await, Ok(3));
    assert_eq!(c.coalesced(4).await, "http://x#4");
    let arc = Arc::new(Client {
        base: "b".into(),
        calls: 0,
    });
    assert_eq!(arc.clone().by_arc().await, 2);
    assert_eq!(c.by_value().await, "http://x");
}

#[tokio::test]
async fn trait_impl_and_default_methods() {
    assert_eq!(Doubler.get(4).await, 8);
    assert_eq!(Doubler.default_get(4).await, 104);
}

#[tokio::test]
async fn generics_lifetimes_where_clauses_and_patterns() {
    assert_eq!(generic(&[1, 2, 3], "-").await, "1-2-3");
    assert_eq!(generic(&["a", "b"], "+").await, "a+b");
    assert_eq!(borrows("  hi ").await, "hi");
    assert_eq!(impl_arg(5).await, "5");
    assert_eq!(question_mark("12").await.unwrap(), 12);
    assert!(question_mark("x").await.is_err());
    assert!(question_mark("0").await.is_err());
    assert_eq!(destructured((1, 2), 3).await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_are_send_and_spawnable() {
    let c = Arc::new(Client {
        base: "s".into(),
        calls: 0,
    });
    let c2 = c.clone();
    let t1 = tokio::spawn(assert_send(async move { c2.by_ref("p").await }));
    let t2 = tokio::spawn(assert_send(async move { generic(&[1u8], ",").await }));
    let t3 = tokio::spawn(assert_send(async move { Doubler.get(1).await }));
    let c3 = c.clone();
    let t4 = tokio::spawn(assert_send(async move { c3.coalesced(9).await }));
    assert_eq!(t1.await.unwrap(), "s/p");
    assert_eq!(t2.await.unwrap(), "1");
    assert_eq!(t3.await.unwrap(), 2);
    assert_eq!(t4.await.unwrap(), "s#9");
}
