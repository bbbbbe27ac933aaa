//! Requests anyone could send: invented methods and random paths, for the tests that
//! check they cost the service nothing that stays (metrics series, memory).

use futures::StreamExt;

/// Sends `count` requests with invented methods (and some GETs and POSTs) to random
/// paths under `base`, 64 at a time; panics unless every one is answered.
pub async fn random_requests(
    client: &reqwest::Client,
    base: &str,
    count: usize,
    rng: &mut fastrand::Rng,
) {
    let requests: Vec<_> = (0..count)
        .map(|_| {
            let method: String = match rng.u8(0..4) {
                0 => "GET".into(),
                1 => "POST".into(),
                _ => (0..rng.usize(3..10)).map(|_| rng.uppercase()).collect(),
            };
            let path: String = (0..rng.usize(1..4))
                .map(|_| {
                    let segment: String =
                        (0..rng.usize(1..12)).map(|_| rng.alphanumeric()).collect();
                    format!("/{segment}")
                })
                .collect();
            let path = match rng.u8(0..4) {
                0 => format!("/api/v1{path}"),
                1 => format!("/webhooks/amocrm{path}"),
                _ => path,
            };
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method token");
            client.request(method, format!("{base}{path}")).send()
        })
        .collect();
    let replies: Vec<_> = futures::stream::iter(requests)
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(
        replies.iter().all(Result::is_ok),
        "every request is answered"
    );
}

/// How many `amosync_http_requests_total` series a `/metrics` text holds.
pub fn http_series(metrics: &str) -> usize {
    metrics
        .lines()
        .filter(|line| line.starts_with("amosync_http_requests_total{"))
        .count()
}
