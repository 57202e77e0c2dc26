//! One EMF line per request (`adapters::emf::request_line`): which operation, the API code it
//! answered, how long it took. A layer on the finished router, so no handler knows of it.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::{self, Next},
    response::Response,
    Router,
};

use crate::{
    adapters::emf::{request_line, Sink},
    http::{error::ApiCode, strip_format_suffix},
};

struct Meter {
    sink: Sink,
    namespace: String,
}

/// `router` writing a request line to `sink` for every request it answers.
pub fn with_metrics(router: Router, sink: Sink, namespace: impl Into<String>) -> Router {
    let meter = Arc::new(Meter { sink, namespace: namespace.into() });
    router.layer(middleware::from_fn_with_state(meter, record))
}

async fn record(State(meter): State<Arc<Meter>>, req: Request, next: Next) -> Response {
    let operation = req.extensions().get::<MatchedPath>().map_or("other", |p| operation(p.as_str())).to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let code = resp.extensions().get::<ApiCode>().map_or(resp.status().as_u16(), |c| c.0);
    (meter.sink)(&request_line(&meter.namespace, &operation, code, start.elapsed()));
    resp
}

/// The endpoint group of a routed path: `/2fa/send.json` → `send`, `/2fa/limits/{sid}` →
/// `limits`, `/2fa/usage/records/{subresource}` → `usage`.
fn operation(path: &str) -> &str {
    let rest = path.strip_prefix("/2fa/").unwrap_or(path);
    strip_format_suffix(rest.split('/').next().unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::operation;

    #[test]
    fn operations_are_the_first_segment_without_its_format() {
        assert_eq!(operation("/2fa/send.json"), "send");
        assert_eq!(operation("/2fa/verify"), "verify");
        assert_eq!(operation("/2fa/limits/search/{sid}"), "limits");
        assert_eq!(operation("/2fa/usage/records/{subresource}"), "usage");
        assert_eq!(operation("/2fa/search.xml"), "search");
    }
}
