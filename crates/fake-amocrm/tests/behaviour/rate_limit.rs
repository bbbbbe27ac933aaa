//! The sliding one-second rate limit, its counters and the sticky block.

use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::helpers::*;

fn limited_to(rps: u32, block_after_429s: Option<u32>) -> FakeConfig {
    FakeConfig {
        rps_limit: Some(rps),
        block_after_429s,
        ..FakeConfig::default()
    }
}

#[tokio::test]
async fn a_burst_over_the_limit_gets_non_json_429s_and_is_measured() {
    let amo = FakeAmo::start_with(limited_to(7, None)).await;
    let started = Instant::now();
    let burst = join_all((0..20).map(|_| get(&amo, "/api/v4/contacts"))).await;
    let elapsed = started.elapsed();

    let (mut passed, mut limited) = (0, 0);
    for resp in burst {
        match resp.status() {
            StatusCode::NO_CONTENT => passed += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert!(!content_type(&resp).contains("json"));
                let body = resp.text().await.expect("text body");
                assert!(!body.is_empty() && serde_json::from_str::<Value>(&body).is_err());
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(passed + limited, 20);
    assert_eq!(amo.rate_limited(), limited);
    assert!(
        passed >= 7,
        "the first 7 of a second always pass, got {passed}"
    );
    // On a very slow machine the burst may straddle a window edge and let more through.
    if elapsed < Duration::from_millis(900) {
        assert_eq!((passed, limited), (7, 13), "burst took {elapsed:?}");
        assert_eq!(
            amo.max_requests_in_one_second(),
            20,
            "refused calls count as arrivals"
        );
    }

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let later = get(&amo, "/api/v4/contacts").await;
    assert_eq!(later.status(), StatusCode::NO_CONTENT, "the window slid on");
}

#[tokio::test]
async fn a_client_pacing_itself_is_never_limited_and_the_measure_shows_its_pace() {
    let amo = FakeAmo::start_with(limited_to(7, None)).await;
    for second in 0..2 {
        if second > 0 {
            tokio::time::sleep(Duration::from_millis(1_050)).await;
        }
        let calls = join_all((0..7).map(|_| get(&amo, "/api/v4/contacts"))).await;
        assert!(calls.iter().all(|r| r.status() == StatusCode::NO_CONTENT));
    }
    assert_eq!(amo.rate_limited(), 0);
    assert_eq!(amo.max_requests_in_one_second(), 7);
    assert_eq!(amo.requests(), 14);
}

#[tokio::test]
async fn repeated_429s_block_the_account_with_an_html_403_until_unblocked() {
    let amo = FakeAmo::start_with(limited_to(1, Some(2))).await;
    let statuses = [
        get(&amo, "/api/v4/contacts").await.status(),
        get(&amo, "/api/v4/contacts").await.status(),
        get(&amo, "/api/v4/contacts").await.status(),
    ];
    let limited = StatusCode::TOO_MANY_REQUESTS;
    assert_eq!(statuses, [StatusCode::NO_CONTENT, limited, limited]);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let blocked = get(&amo, "/api/v4/contacts").await;
    assert_eq!(
        blocked.status(),
        StatusCode::FORBIDDEN,
        "sticky after the window slid"
    );
    assert!(blocked.text().await.expect("html").contains("nginx"));
    assert!(amo.is_blocked());

    let lift = format!("{}/_fake/unblock", amo.base_url());
    let lifted = reqwest::Client::new()
        .post(lift)
        .send()
        .await
        .expect("unblock");
    assert_eq!(lifted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get(&amo, "/api/v4/contacts").await.status(),
        StatusCode::NO_CONTENT
    );
}
