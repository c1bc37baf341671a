//! What an operator sees: the Prometheus endpoint exports the documented
//! series and they move; gRPC health reports SERVING.

use chatpay_tests::LocalNetwork;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(net: &LocalNetwork, i: usize) -> String {
    let mut s = tokio::net::TcpStream::connect(net.metrics_addr(i))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exported_and_move() {
    let net = LocalNetwork::start(4).await;
    net.wait_for(&[0, 1, 2, 3], 3, Duration::from_secs(30))
        .await;
    let first = scrape(&net, 0).await;
    for series in [
        "chatpay_round",
        "chatpay_last_voted_round",
        "chatpay_timeouts_total",
        "chatpay_qcs_formed_total",
        "chatpay_tcs_formed_total",
        "chatpay_catching_up",
        "chatpay_committed_height",
        "chatpay_transfers_committed_total",
        "chatpay_commit_latency_seconds_count",
        "chatpay_mempool_transactions",
        "chatpay_mempool_bytes",
        "chatpay_mempool_parked",
        "chatpay_store_write_seconds_count",
    ] {
        value(&first, series);
    }
    assert!(
        first.contains("chatpay_peer_connected{peer=\"1\"}"),
        "{first}"
    );
    let h = value(&first, "chatpay_committed_height");
    assert!(h >= 3.0);
    net.wait_for(&[0], h as u64 + 3, Duration::from_secs(30))
        .await;
    let second = scrape(&net, 0).await;
    assert!(value(&second, "chatpay_committed_height") >= h + 3.0);
    assert!(value(&second, "chatpay_round") > value(&first, "chatpay_round"));
    assert!(
        value(&second, "chatpay_store_write_seconds_count")
            > value(&first, "chatpay_store_write_seconds_count")
    );
    assert_eq!(value(&second, "chatpay_catching_up"), 0.0);
    // Streams open for a second count as connected.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !scrape(&net, 0)
        .await
        .contains("chatpay_peer_connected{peer=\"3\"} 1")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "peer 3 never shown connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Kubernetes-style probe: overall health is SERVING.
    let channel = tonic::transport::Channel::from_shared(net.urls()[0].clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    net.shutdown().await;
}
