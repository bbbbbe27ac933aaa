//! Logging: one slog root writing JSON lines to stdout, and what the request context
//! middleware (`controllers::observe`) gives every request: an id, a child logger,
//! the client's address as trusted proxies report it.

use std::net::IpAddr;

use actix_web::dev::ServiceRequest;
use actix_web::{HttpMessage, HttpRequest};
use slog::{o, Drain, Logger};

use crate::redact::Redactor;

mod buffered;

pub use buffered::LogOutput;
use buffered::{LineWriter, PartialLine};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Builds the root logger on stdout. Keep the output alive until exit: dropping it
/// writes out the lines still buffered.
pub fn init(level: slog::Level) -> (Logger, LogOutput<std::io::Stdout>) {
    init_on(std::io::stdout(), level, Redactor::default())
}

/// `init`, with `redactor`'s secrets masked in every line written: whatever text a
/// record carries (a remote error quoting a token back), no configured secret leaves.
pub fn init_redacting(
    level: slog::Level,
    redactor: Redactor,
) -> (Logger, LogOutput<std::io::Stdout>) {
    init_on(std::io::stdout(), level, redactor)
}

/// `init` on any output. Each record is serialised by the thread that logs it and
/// handed to the output's buffer as one line (see `buffered`).
pub fn init_on<W: std::io::Write + Send + 'static>(
    out: W,
    level: slog::Level,
    redactor: Redactor,
) -> (Logger, LogOutput<W>) {
    let output = LogOutput::new(out);
    let writer = output.line_writer().redacting(redactor);
    let torn = writer.partial_line();
    let drain = JsonLines {
        json: std::sync::Mutex::new(json_lines(writer).set_flush(true).build()),
        torn,
    };
    // The level is checked before the lock.
    let drain = drain.filter_level(level).fuse();
    (Logger::root(drain, o!("service" => "amosync")), output)
}

/// The log's format: one JSON object per line, with `ts`, `level` and `msg`.
fn json_lines<W: std::io::Write>(writer: W) -> slog_json::JsonBuilder<W> {
    slog_json::Json::new(writer)
        .add_default_keys()
        .set_newlines(true)
}

/// slog-json behind a lock. A record that fails to serialise (a value whose
/// `Display` fails, say) is lost, never a panic, and never leaves half a line.
struct JsonLines<W: std::io::Write + Send + 'static> {
    json: std::sync::Mutex<slog_json::Json<LineWriter<W>>>,
    torn: PartialLine,
}

impl<W: std::io::Write + Send + 'static> Drain for JsonLines<W> {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let json = self
            .json
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if json.log(record, values).is_err() {
            self.torn.discard();
        }
        Ok(())
    }
}

/// A synchronous JSON-lines logger on any writer, in the format `init` writes; tests
/// capture what the service logs with it.
pub fn json_logger<W: std::io::Write + Send + 'static>(writer: W, level: slog::Level) -> Logger {
    let drain = std::sync::Mutex::new(json_lines(writer).build())
        .fuse()
        .filter_level(level)
        .fuse();
    Logger::root(drain, o!("service" => "amosync"))
}

/// The request's id and logger, stored in the request extensions by the middleware.
#[derive(Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub logger: Logger,
}

/// Networks whose forwarding headers are believed (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<ipnet::IpNet>);

impl TrustedProxies {
    fn trusts(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client's address: the peer itself, unless the peer is a trusted proxy, in
    /// which case the nearest untrusted hop of `X-Forwarded-For` (or `X-Real-IP`).
    /// A client talking to amosync directly cannot spoof its address this way.
    pub fn client_ip(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: Option<&str>,
        real_ip: Option<&str>,
    ) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(&peer) {
            return Some(peer);
        }
        let hops: Vec<IpAddr> = forwarded_for
            .unwrap_or_default()
            .split(',')
            .filter_map(|hop| hop.trim().parse().ok())
            .collect();
        if let Some(hop) = hops.iter().rev().find(|hop| !self.trusts(hop)) {
            return Some(*hop);
        }
        hops.first()
            .copied()
            .or_else(|| real_ip.and_then(|ip| ip.trim().parse().ok()))
            .or(Some(peer))
    }
}

/// The client's address as `TrustedProxies::client_ip` found it, stored by the
/// request middleware (`/metrics` serves internal networks only).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

/// The authenticated API client, stored by the auth middleware for the access line.
#[derive(Clone)]
pub struct ClientId(pub String);

/// The logger for this request (falls back to the app logger outside the middleware).
pub fn request_logger(req: &HttpRequest, fallback: &Logger) -> Logger {
    req.extensions()
        .get::<RequestContext>()
        .map(|ctx| ctx.logger.clone())
        .unwrap_or_else(|| fallback.clone())
}

/// Takes the id nginx (or a client) set in `X-Request-Id` when it looks like one,
/// otherwise makes one. It is echoed and logged, so only 1 to 128 characters of the
/// set ids are made of (letters, digits, `._~:+/=-`) are kept, as nginx's map does:
/// no quotes, spaces or markup reach a log line or a client's screen.
pub fn request_id_of(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id)
}

pub fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~:+/=-".contains(&b))
}

/// A random (v4) UUID from a thread-local generator: a request id must be unique,
/// not unguessable, and the system's generator costs a system call per request.
fn new_request_id() -> String {
    let bytes = fastrand::u128(..).to_le_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .simple()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies(vec![
            "172.16.0.0/12".parse().expect("net"),
            "127.0.0.1/32".parse().expect("net"),
        ])
    }

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("captured").extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_service_logs_one_json_object_per_line_at_its_level_and_no_lower() {
        let out = Captured::default();
        let (logger, output) = init_on(out.clone(), slog::Level::Info, Redactor::default());
        let child = logger.new(o!("request_id" => "r-1"));
        slog::debug!(child, "not wanted");
        slog::info!(child, "request"; "http.status" => 200_u16, "client.id" => Some("shop"));
        slog::warn!(logger, "second \"quoted\"\nline");
        drop(output);
        let text = String::from_utf8(out.0.lock().expect("captured").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["msg"], "request");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["service"], "amosync");
        assert_eq!(lines[0]["request_id"], "r-1");
        assert_eq!(lines[0]["http.status"], 200);
        assert_eq!(lines[0]["client.id"], "shop");
        assert!(lines[0]["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')));
        assert_eq!(lines[1]["msg"], "second \"quoted\"\nline");
        assert_eq!(lines[1]["level"], "WARN");
    }

    /// A value that cannot be written, as a `Display` that fails would be.
    struct Unwritable;

    impl slog::Value for Unwritable {
        fn serialize(
            &self,
            _: &slog::Record,
            _: slog::Key,
            _: &mut dyn slog::Serializer,
        ) -> slog::Result {
            Err(slog::Error::Other)
        }
    }

    #[test]
    fn a_record_that_fails_half_way_leaves_no_part_of_itself_in_the_log() {
        let out = Captured::default();
        let (logger, output) = init_on(out.clone(), slog::Level::Info, Redactor::default());
        slog::info!(logger, "broken"; "fine" => "written first", "bad" => Unwritable);
        slog::info!(logger, "next");
        drop(output);
        let text = String::from_utf8(out.0.lock().expect("captured").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON line");
        assert_eq!(line["msg"], "next");
    }

    #[test]
    fn configured_secrets_never_reach_the_output() {
        let out = Captured::default();
        let secret = "webhook-secret-0123456789abcdef";
        let (logger, output) = init_on(out.clone(), slog::Level::Info, Redactor::new([secret]));
        let echoed = format!("AmoCRM answered 400: hook https://x/webhooks/amocrm/{secret}");
        slog::warn!(logger, "request failed"; "error" => echoed);
        drop(output);
        let text = String::from_utf8(out.0.lock().expect("captured").clone()).expect("utf-8");
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("/webhooks/amocrm/***"), "{text}");
    }

    #[test]
    fn request_ids_keep_to_a_safe_charset_and_length() {
        for good in ["abc-123", "0f8e2a", "Root=1-5f:a/b+c=", &"x".repeat(128)] {
            assert!(valid_request_id(good), "{good}");
        }
        for bad in ["", "a b", "<script>", "a\"b", "тест", &"x".repeat(129)] {
            assert!(!valid_request_id(bad), "{bad}");
        }
    }

    #[test]
    fn forwarded_addresses_count_only_when_the_peer_is_a_trusted_proxy() {
        let p = proxies();
        assert_eq!(
            p.client_ip(ip("172.18.0.3"), Some("203.0.113.7"), None),
            ip("203.0.113.7")
        );
        assert_eq!(
            p.client_ip(ip("198.51.100.9"), Some("203.0.113.7"), Some("1.2.3.4")),
            ip("198.51.100.9")
        );
        // A client-supplied first hop is skipped when a trusted chain follows it.
        assert_eq!(
            p.client_ip(
                ip("127.0.0.1"),
                Some("6.6.6.6, 203.0.113.7, 172.18.0.2"),
                None
            ),
            ip("203.0.113.7")
        );
        assert_eq!(
            p.client_ip(ip("127.0.0.1"), None, Some("203.0.113.8")),
            ip("203.0.113.8")
        );
        assert_eq!(p.client_ip(ip("127.0.0.1"), None, None), ip("127.0.0.1"));
        assert_eq!(p.client_ip(None, Some("203.0.113.7"), None), None);
    }
}
