//! Connection hygiene: slow and idle clients are cut, open connections are bounded, the
//! request timeout has its own code and is counted, request ids are bounded, every error is
//! problem+json, and duplicate JSON keys are refused.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixtures::Exchange;
use crate::harness::{TestApp, spawn_app, spawn_app_with, test_settings};

/// Reads until the server closes the connection (or `within` passes): what it sent, and
/// whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return (String::from_utf8_lossy(&seen).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into_owned(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
        }
    }
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_client_sending_its_headers_slowly_is_cut_after_the_header_timeout(pool: PgPool) {
    let mut settings = test_settings();
    settings.header_read_timeout_ms = 600;
    settings.idle_timeout_ms = 600;
    let app = spawn_app_with(pool, settings, axum::Router::new()).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    let started = Instant::now();
    // A header one byte every 100 ms, never finished: only the header timeout can end it.
    let head =
        b"GET /healthz HTTP/1.1\r\nHost: gavel\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for byte in head.iter().cycle().take(60) {
        if stream.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_millis(500)).await;
    assert!(cut || closed, "the slow client was never cut");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut after {:?}",
        started.elapsed()
    );
    assert!(!answer.contains("200 OK"), "{answer}");
    app.shut_down().await.unwrap();
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(pool: PgPool) {
    let mut settings = test_settings();
    settings.header_read_timeout_ms = 5000;
    settings.idle_timeout_ms = 300;
    let app = spawn_app_with(pool, settings, axum::Router::new()).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gavel\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "the idle connection stayed open");
    // Closed by the idle timeout, well before the header timeout.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    app.shut_down().await.unwrap();
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn connections_beyond_the_bound_are_not_served(pool: PgPool) {
    let mut settings = test_settings();
    settings.max_connections = 2;
    settings.header_read_timeout_ms = 10_000;
    settings.idle_timeout_ms = 10_000;
    let app = spawn_app_with(pool, settings, axum::Router::new()).await;
    let first = TcpStream::connect(app.address).await.unwrap();
    let _second = TcpStream::connect(app.address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut third = TcpStream::connect(app.address).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gavel\r\n\r\n")
        .await;
    let (answer, closed) = read_until_closed(&mut third, Duration::from_secs(2)).await;
    assert!(
        closed && answer.is_empty(),
        "served beyond the bound: {answer:?}"
    );

    // A slot that frees serves the next client.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut next = TcpStream::connect(app.address).await.unwrap();
        let _ = next
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: gavel\r\nConnection: close\r\n\r\n")
            .await;
        let (answer, _) = read_until_closed(&mut next, Duration::from_secs(2)).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.shut_down().await.unwrap();
}

/// The count of `gavel_http_requests_total` for `route` and `status` in /metrics.
async fn requests_counted(app: &TestApp, route: &str, status: u16) -> u64 {
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels = [format!("route=\"{route}\""), format!("status=\"{status}\"")];
    metrics
        .lines()
        .filter(|line| line.starts_with("gavel_http_requests_total{"))
        .filter(|line| labels.iter().all(|label| line.contains(label.as_str())))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_request_timeout_answers_request_timeout_and_is_counted(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let mut settings = test_settings();
    settings.request_timeout_ms = 300;
    let app = spawn_app_with(pool, settings, axum::Router::new()).await;
    let route = "/v1/admin/partners";
    let before = requests_counted(&app, route, 503).await;

    // Half a body, then nothing: the request's time runs out while its body is read.
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "POST {route} HTTP/1.1\r\nHost: gavel\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{{\"name\": ",
        exchange.admin_key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    let (head, body) = answer.split_once("\r\n\r\n").expect("an answer");
    assert!(head.starts_with("HTTP/1.1 503"), "{answer}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(head.contains("retry-after: 1"), "{head}");
    let problem: Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["code"], "request_timeout", "{problem}");
    assert!(
        !problem["title"].as_str().unwrap().contains("database"),
        "{problem}"
    );
    assert_eq!(requests_counted(&app, route, 503).await, before + 1);
    app.shut_down().await.unwrap();
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_request_id_is_echoed_when_bounded_and_replaced_otherwise(pool: PgPool) {
    let app = spawn_app(pool).await;
    let echoed = |value: Vec<u8>| {
        let (client, url) = (app.client.clone(), app.url("/healthz"));
        async move {
            let response = client
                .get(url)
                .header(
                    "x-request-id",
                    reqwest::header::HeaderValue::from_bytes(&value).unwrap(),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.headers()["x-request-id"].as_bytes().to_vec()
        }
    };
    let fine = b"req-2026-12-03.abc_XYZ:42".to_vec();
    assert_eq!(echoed(fine.clone()).await, fine);
    let longest = vec![b'a'; 128];
    assert_eq!(echoed(longest.clone()).await, longest);
    for refused in [
        vec![b'a'; 60 * 1024],
        vec![b'a'; 129],
        "caf\u{e9}".as_bytes().to_vec(),
    ] {
        let answer = echoed(refused.clone()).await;
        assert_ne!(answer, refused);
        assert!(answer.len() <= 128, "{} bytes", answer.len());
        let answer = String::from_utf8(answer).unwrap();
        assert!(uuid::Uuid::parse_str(&answer).is_ok(), "{answer}");
    }
    app.shut_down().await.unwrap();
}

/// Asserts a problem+json answer and returns its body.
async fn problem_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "status {status}"
    );
    (status, response.json().await.unwrap())
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn extractor_rejections_are_problem_json_on_every_route(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let app = spawn_app(pool).await;
    let admin = |method: reqwest::Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .bearer_auth(&exchange.admin_key)
    };
    let buyer = exchange.buyer(1000).await;
    for path in [
        "/v1/admin/partners",
        "/v1/admin/buyers",
        "/v1/admin/offers",
        "/v1/admin/campaigns",
        "/v1/admin/contracts",
        "/v1/admin/sales",
        &format!("/v1/admin/buyers/{buyer}/ledger"),
    ] {
        for query in ["?limit=10&limit=20", "?limit=ten", "?limit=-1"] {
            let response = admin(reqwest::Method::GET, &format!("{path}{query}"))
                .send()
                .await
                .unwrap();
            let (status, problem) = problem_of(response).await;
            assert!((400..500).contains(&status), "{path}{query}: {status}");
            assert!(problem["code"].is_string(), "{problem}");
            assert!(!problem.to_string().contains("ten"), "{problem}");
        }
    }
    // A path id that does not parse.
    let response = admin(reqwest::Method::GET, "/v1/admin/buyers/not-an-id-xyzzy")
        .send()
        .await
        .unwrap();
    let (status, problem) = problem_of(response).await;
    assert!((400..500).contains(&status), "{status}");
    assert!(!problem.to_string().contains("xyzzy"), "{problem}");
    // A report with a bad parameter.
    let response = admin(
        reqwest::Method::GET,
        "/v1/admin/reports/summary?group_by=offer&group_by=buyer",
    )
    .send()
    .await
    .unwrap();
    problem_of(response).await;
    // A body over the limit, a wrong content type.
    let response = app
        .client
        .post(app.url("/v1/ping"))
        .bearer_auth(&exchange.posting_key)
        .header("content-type", "application/json")
        .body(vec![b' '; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(problem_of(response).await.0, 413);
    let response = app
        .client
        .post(app.url("/v1/ping"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(problem_of(response).await.0, 415);
    app.shut_down().await.unwrap();
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn duplicate_json_keys_are_refused_at_any_depth_and_move_no_money(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let buyer = exchange.buyer(5000).await;
    let app = spawn_app(pool).await;
    let send = |path: String, key: String, body: &'static str| {
        let (client, url) = (app.client.clone(), app.url(&path));
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let response = send(
        format!("/v1/admin/buyers/{buyer}/funds"),
        exchange.admin_key.clone(),
        r#"{"amount": 1, "amount": -1000}"#,
    )
    .await;
    let (status, problem) = problem_of(response).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("malformed_json"))
    );
    assert_eq!(problem["errors"][0]["pointer"], "/amount", "{problem}");
    assert_eq!(
        exchange.buyer_books(buyer).await,
        (5000, 5000),
        "money moved"
    );

    let response = send(
        "/v1/ping".to_owned(),
        exchange.posting_key.clone(),
        r#"{"lead": {"state": "TX", "zip": "75001", "age": 42, "homeowner": true,
            "credit": "good", "prior": {"insurer": "A", "insurer": "B"}, "state": "CA"}}"#,
    )
    .await;
    let (status, problem) = problem_of(response).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("malformed_json"))
    );
    assert_eq!(
        problem["errors"][0]["pointer"], "/lead/prior/insurer",
        "{problem}"
    );
    app.shut_down().await.unwrap();
}
