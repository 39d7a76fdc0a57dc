//! The tower layer in a real HTTP stack (cargo feature `tower`:
//! `cargo test --features tower --test tower`): a hyper client under
//! `LimitedLayer` and a `#[limited]` function share one limiter, and the
//! server, on loopback, counts what it sees.
#![cfg(feature = "tower")]

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use limit_runtime::tower::LimitedLayer;
use limit_runtime::{limited, ErrorKind};
use limit_suite::Gauge;
use tower::{ServiceBuilder, ServiceExt};

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A server on 127.0.0.1 whose handler takes `work` and counts how many
/// run at once.
async fn server(work: Duration) -> (Uri, Arc<Gauge>) {
    let seen = Arc::new(Gauge::new());
    let counted = seen.clone();
    let app = Router::new().route(
        "/",
        get(move || {
            let seen = counted.clone();
            async move {
                let _in_flight = seen.enter();
                tokio::time::sleep(work).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/").parse().unwrap(), seen)
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn request(uri: &Uri) -> Request<Empty<Bytes>> {
    Request::get(uri.clone()).body(Empty::new()).unwrap()
}

#[limited(name = "tower-http", max = 4)]
async fn fetch(client: &HttpClient, uri: &Uri) -> StatusCode {
    client.get(uri.clone()).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_and_a_function_of_one_name_share_one_limit() {
    let (uri, seen) = server(Duration::from_millis(40)).await;
    let http = client();
    let service = ServiceBuilder::new()
        .layer(LimitedLayer::new("tower-http", 4))
        .service(http.clone());

    let through_layer = (0..30).map(|_| {
        let service = service.clone();
        let req = request(&uri);
        tokio::spawn(async move { service.oneshot(req).await.unwrap().status() })
    });
    let through_fn = (0..30).map(|_| {
        let (http, uri) = (http.clone(), uri.clone());
        tokio::spawn(async move { fetch(&http, &uri).await })
    });
    let all: Vec<_> = through_layer.chain(through_fn).collect();
    for call in futures::future::join_all(all).await {
        assert_eq!(call.unwrap(), StatusCode::OK);
    }

    // Measured by the server: never more than 4 at once, and 4 reached.
    assert_eq!(seen.peak(), 4);
    let stats = limit_runtime::limiter("tower-http").unwrap().stats();
    assert_eq!(stats.acquired, 60);
    assert_eq!(stats.peak_active, 4);
    assert_eq!((stats.active, stats.waiting), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_that_never_waits_sheds_load_while_a_function_holds_the_limit() {
    let (uri, seen) = server(Duration::from_millis(300)).await;
    let http = client();
    let shed = ServiceBuilder::new()
        .layer(LimitedLayer::new("tower-http-shed", 2).queue(0))
        .service(http.clone());

    #[limited(name = "tower-http-shed", max = 2)]
    async fn slow(client: &HttpClient, uri: &Uri) -> StatusCode {
        client.get(uri.clone()).await.unwrap().status()
    }

    let holders: Vec<_> = (0..2)
        .map(|_| {
            let (http, uri) = (http.clone(), uri.clone());
            tokio::spawn(async move { slow(&http, &uri).await })
        })
        .collect();
    let limiter = shed.limiter().clone();
    while limiter.active() < 2 {
        tokio::task::yield_now().await;
    }
    let err = shed.clone().oneshot(request(&uri)).await.unwrap_err();
    let refused = err.downcast_ref::<limit_runtime::Error>().unwrap();
    assert_eq!(refused.kind(), ErrorKind::QueueFull);
    assert!(refused.to_string().contains("tests/tower.rs"), "{refused}");
    for h in holders {
        assert_eq!(h.await.unwrap(), StatusCode::OK);
    }
    // Free again: the same service goes through.
    assert_eq!(
        shed.oneshot(request(&uri)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(seen.peak(), 2);
}

#[limit_runtime::circuit_breaker(name = "tower-shared-breaker", min_calls = 4)]
async fn charge(ok: bool) -> Result<u32, std::io::Error> {
    if ok {
        Ok(1)
    } else {
        Err(std::io::Error::other("billing is down"))
    }
}

#[tokio::test]
async fn a_breaker_layer_and_a_function_of_one_name_share_one_breaker() {
    use limit_runtime::tower::CircuitBreakerLayer;
    use limit_runtime::BreakerConfig;

    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let billing = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(
            "tower-shared-breaker",
            BreakerConfig::new().min_calls(4),
        ))
        .service(tower::service_fn(move |n: u32| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok::<_, std::io::Error>(n) }
        }));
    assert_eq!(billing.clone().oneshot(7).await.unwrap(), 7);
    for _ in 0..3 {
        assert!(charge(false).await.is_err()); // 3 of 4 calls failed: open
    }
    let err = billing.oneshot(7).await.unwrap_err();
    let refused = err.downcast_ref::<limit_runtime::Error>().unwrap();
    assert_eq!(refused.kind(), ErrorKind::CircuitOpen);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1); // never reached
    let stats = limit_runtime::breaker("tower-shared-breaker")
        .unwrap()
        .stats();
    assert_eq!((stats.calls, stats.failures, stats.refused), (4, 3, 1));
    assert!(charge(true).await.is_err()); // and the function is refused too
}
