//! The HTTP request counter and latency histogram, labelled from bounded sets only.
//!
//! Every distinct label value is a series kept for the life of the process, so a label
//! a client can choose is memory anyone can allocate: with the raw method as a label,
//! 13,000 requests with invented methods (`FOO1`, `FOO2`, …) once grew `/metrics` to
//! 178 MB. Here the endpoint is the route pattern (`UNMATCHED` when none matched), the
//! method one of the nine RFC 9110 methods or `OTHER`, and the status a registered
//! HTTP status code or `other`: the series count has a ceiling whatever arrives.

use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::NAMESPACE;

/// The endpoint of a request no route pattern matched (scanners, typos).
pub const UNMATCHED: &str = "UNMATCHED";

#[derive(Clone)]
pub(super) struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub(super) fn register(registry: &Registry) -> Result<HttpMetrics, prometheus::Error> {
        let labels = ["endpoint", "method", "status"];
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "Total number of HTTP requests").namespace(NAMESPACE),
            &labels,
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_requests_duration_seconds",
                "HTTP request duration in seconds, until the response is ready",
            )
            .namespace(NAMESPACE),
            &labels,
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(HttpMetrics { requests, duration })
    }

    pub(super) fn names(&self) -> Vec<String> {
        let mut descs = self.requests.desc();
        descs.extend(self.duration.desc());
        descs.into_iter().map(|d| d.fq_name.clone()).collect()
    }

    pub(super) fn observe(
        &self,
        endpoint: &str,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let labels = [endpoint, method_label(method), status_label(&status)];
        self.requests.with_label_values(&labels).inc();
        self.duration
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

/// The method as a label: the RFC 9110 methods by name, anything else `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("OTHER", |known| match *known {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::OPTIONS => "OPTIONS",
            Method::CONNECT => "CONNECT",
            _ => "TRACE",
        })
}

/// A registered status code as itself (`404`); any other number is `other`.
pub fn status_label(status: &StatusCode) -> &str {
    if status.canonical_reason().is_some() {
        status.as_str()
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_rfc_9110_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        assert_eq!(method_label(&Method::TRACE), "TRACE");
        for invented in ["FOO1", "get", "PROPFIND", "X"] {
            let method = Method::from_bytes(invented.as_bytes()).expect("a token");
            assert_eq!(method_label(&method), "OTHER", "{invented}");
        }
    }

    #[test]
    fn every_registered_status_is_its_own_label_and_others_share_one() {
        for code in 100..1000u16 {
            let Ok(status) = StatusCode::from_u16(code) else {
                continue;
            };
            let label = status_label(&status);
            if status.canonical_reason().is_some() {
                assert_eq!(label, code.to_string(), "{code}");
            } else {
                assert_eq!(label, "other", "{code}");
            }
        }
    }
}
