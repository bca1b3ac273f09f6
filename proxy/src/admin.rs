//! The admin listener's routes: liveness, readiness, Prometheus metrics and reload.
//! It is a separate loopback listener; none of this is reachable on the bot port.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;

use crate::app::App;

/// Answers one admin request.
pub async fn handle<B>(app: Arc<App>, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.uri().path() == "/reload" {
        if request.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "POST /reload\n");
        }
        let outcome = tokio::task::spawn_blocking(move || app.reload("admin")).await;
        return match outcome {
            Ok(Ok(reloaded)) => {
                let mut body = format!("reloaded: generation {}\n", reloaded.generation);
                for setting in reloaded.needs_restart {
                    body.push_str(&format!("{setting} changed; it takes effect at restart\n"));
                }
                owned_text(StatusCode::OK, body)
            }
            Ok(Err(error)) => owned_text(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("reload refused; the running configuration stays:\n{error}\n"),
            ),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "reload failed\n"),
        };
    }
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if app.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        "/metrics" => {
            let mut response = text(StatusCode::OK, "");
            *response.body_mut() = Full::new(Bytes::from(app.render_metrics()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    owned_text(status, body.to_owned())
}

fn owned_text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
