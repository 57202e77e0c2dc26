//! CloudWatch embedded metric format (EMF): one JSON line per event, written to stdout in a
//! Lambda, where CloudWatch Logs turns it into metrics. No client, no network, no dependency
//! beyond serde_json: a line costs the request a `println!`.
//!
//! - `request_line`: every API request (`http::metrics::layer`): `Requests`, `Failures`
//!   (answered anything but 200) and `Latency`, by `Operation` and by `Operation` + `Code`.
//! - `MeteredDispatcher`: every delivery attempt: `Dispatches`, `DispatchFailures` and
//!   `DispatchLatency`, by `Channel` and by `Channel` + `Outcome`.
//!
//! Lines carry no destination, code, token or message text: only the names above.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use crate::{
    domain::{callbacks::UrlRules, otp::Channel, voice::Voice},
    ports::{DispatchError, DispatchReceipt, Dispatcher, OutboundMessage},
};

/// The CloudWatch namespace of every metric (`TWOFA_METRICS_NAMESPACE` in the functions).
pub const NAMESPACE: &str = "twofa";

/// Where the lines go: stdout in a Lambda, a buffer in tests.
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// Each line on its own on stdout (a line is written whole under the stdout lock).
pub fn stdout_sink() -> Sink {
    Arc::new(|line: &str| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    })
}

/// Metrics with their units, dimension sets and values: one EMF line.
pub struct Line<'a> {
    pub namespace: &'a str,
    /// Dimension sets, each a list of dimension names (all given in `dimensions`).
    pub dimension_sets: &'a [&'a [&'a str]],
    pub dimensions: &'a [(&'a str, &'a str)],
    /// (name, unit, value).
    pub metrics: &'a [(&'a str, &'a str, f64)],
}

impl Line<'_> {
    pub fn render(&self) -> String {
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let definitions: Vec<Value> =
            self.metrics.iter().map(|(name, unit, _)| json!({ "Name": name, "Unit": unit })).collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": self.dimension_sets,
                    "Metrics": definitions,
                }],
            }),
        );
        for (name, value) in self.dimensions {
            root.insert((*name).into(), json!(value));
        }
        for (name, _, value) in self.metrics {
            root.insert((*name).into(), json!(value));
        }
        Value::Object(root).to_string()
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// The line of one API request: `operation` (`send`, `verify`, `cancel`, `limits`, …), the API
/// code it answered, how long it took.
pub fn request_line(namespace: &str, operation: &str, code: u16, took: Duration) -> String {
    let code = code.to_string();
    Line {
        namespace,
        dimension_sets: &[&["Operation"], &["Operation", "Code"]],
        dimensions: &[("Operation", operation), ("Code", &code)],
        metrics: &[
            ("Requests", "Count", 1.0),
            ("Failures", "Count", if code == "200" { 0.0 } else { 1.0 }),
            ("Latency", "Milliseconds", millis(took)),
        ],
    }
    .render()
}

/// The line of one delivery on `channel`: `ok`, `rejected` (the provider refused this
/// message), `unavailable` (no route could be reached) or `unconfirmed` (a route did not answer
/// in time), the route that sent or refused it when one did, and how long it took.
pub fn dispatch_line(namespace: &str, channel: Channel, outcome: &str, route: Option<&str>, took: Duration) -> String {
    let with_route: [(&str, &str); 3] =
        [("Channel", channel.as_str()), ("Outcome", outcome), ("Route", route.unwrap_or_default())];
    let (dimension_sets, dimensions): (&[&[&str]], &[(&str, &str)]) = match route {
        Some(_) => (&[&["Channel"], &["Channel", "Outcome"], &["Channel", "Route"]], &with_route),
        None => (&[&["Channel"], &["Channel", "Outcome"]], &with_route[..2]),
    };
    Line {
        namespace,
        dimension_sets,
        dimensions,
        metrics: &[
            ("Dispatches", "Count", 1.0),
            ("DispatchFailures", "Count", if outcome == "ok" { 0.0 } else { 1.0 }),
            ("DispatchLatency", "Milliseconds", millis(took)),
        ],
    }
    .render()
}

/// A dispatcher that times every delivery of the one it wraps and writes a `dispatch_line`.
/// A wrapper, so the send use case knows nothing of metrics.
pub struct MeteredDispatcher {
    inner: Arc<dyn Dispatcher>,
    sink: Sink,
    namespace: String,
}

impl MeteredDispatcher {
    pub fn new(inner: Arc<dyn Dispatcher>, sink: Sink, namespace: impl Into<String>) -> Self {
        MeteredDispatcher { inner, sink, namespace: namespace.into() }
    }
}

#[async_trait]
impl Dispatcher for MeteredDispatcher {
    fn delivers(&self, channel: Channel) -> bool {
        self.inner.delivers(channel)
    }

    fn callback_url_rules(&self) -> UrlRules {
        self.inner.callback_url_rules()
    }

    fn receipt_key(&self, name: &str) -> Option<&[u8]> {
        self.inner.receipt_key(name)
    }

    async fn voices(&self) -> Result<Arc<Vec<Voice>>, DispatchError> {
        self.inner.voices().await
    }

    async fn dispatch(&self, msg: &OutboundMessage<'_>) -> Result<DispatchReceipt, DispatchError> {
        let start = Instant::now();
        let result = self.inner.dispatch(msg).await;
        let (outcome, route) = match &result {
            Ok(r) => ("ok", r.route.as_deref()),
            Err(DispatchError::Rejected { route, .. }) => ("rejected", route.as_deref()),
            Err(DispatchError::Unavailable) => ("unavailable", None),
            Err(DispatchError::Unconfirmed) => ("unconfirmed", None),
        };
        (self.sink)(&dispatch_line(&self.namespace, msg.channel, outcome, route, start.elapsed()));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_is_emf_with_its_dimensions_and_values_at_the_top() {
        let line: Value =
            serde_json::from_str(&request_line("ns", "verify", 474, Duration::from_micros(1500))).unwrap();
        let cw = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "ns");
        assert_eq!(cw["Dimensions"], json!([["Operation"], ["Operation", "Code"]]));
        assert_eq!(cw["Metrics"][2], json!({ "Name": "Latency", "Unit": "Milliseconds" }));
        assert!(line["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
        assert_eq!((line["Operation"].clone(), line["Code"].clone()), (json!("verify"), json!("474")));
        assert_eq!((line["Requests"].clone(), line["Failures"].clone()), (json!(1.0), json!(1.0)));
        assert_eq!(line["Latency"], json!(1.5));
    }
}
