//! Request latency by route template, into the process's metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use lectern_seams::metrics::metrics;

/// Records a request's latency under its route template (never the raw path, which
/// carries ids and tokens), method and status. A `route_layer`: the template is known
/// once the router has matched.
pub async fn record_latency(req: Request, next: Next) -> Response {
    // A clone shares the template's text: nothing is copied per request.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let started = Instant::now();
    let res = next.run(req).await;
    metrics()
        .http_latency
        .with_label_values(&[
            route.as_ref().map_or("unmatched", MatchedPath::as_str),
            method.as_str(),
            res.status().as_str(),
        ])
        .observe(started.elapsed().as_secs_f64());
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use lectern_seams::metrics::render;
    use tower::ServiceExt;

    fn count(route: &str, method: &str, status: &str) -> u64 {
        metrics()
            .http_latency
            .with_label_values(&[route, method, status])
            .get_sample_count()
    }

    #[tokio::test]
    async fn latency_is_recorded_under_the_route_template_not_the_path() {
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/test-latency/{id}",
                get(|| async { "ok" }).post(|| async { StatusCode::CREATED }),
            )
            .route_layer(axum::middleware::from_fn(record_latency));
        let before = (
            count("/test-latency/{id}", "GET", "200"),
            count("/test-latency/{id}", "POST", "201"),
        );
        for (method, path) in [
            ("GET", "/test-latency/1"),
            ("GET", "/test-latency/2"),
            ("POST", "/test-latency/3"),
        ] {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        assert_eq!(count("/test-latency/{id}", "GET", "200"), before.0 + 2);
        assert_eq!(count("/test-latency/{id}", "POST", "201"), before.1 + 1);
        assert_eq!(count("/test-latency/1", "GET", "200"), 0);
        assert!(render().contains("lectern_http_request_duration_seconds_bucket{method=\"GET\",route=\"/test-latency/{id}\",status=\"200\",le=\"0.001\"}"));
    }
}
