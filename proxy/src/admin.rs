//! The admin routes, on two channels. The admin listener (loopback TCP) serves
//! liveness, readiness, metrics, reload and freeze: nothing that can loosen what bots
//! may do, because in a shared network namespace a bot can reach it. The control
//! socket (a Unix socket only keyward's uid can open) serves the same and, besides,
//! what must stay with the operator: unfreezing, and explaining a request with live
//! prices and budgets. None of this is reachable on the bot port.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;

use crate::app::App;
use crate::explain::{self, Asked};
use crate::killswitch;

/// Which door a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The metrics listener (any address): metrics and liveness, nothing else.
    Metrics,
    /// The admin listener (loopback TCP).
    Listener,
    /// The control socket (Unix, keyward's uid only).
    Control,
}

/// Answers one admin request.
pub async fn handle(
    app: Arc<App>,
    request: Request<Incoming>,
    channel: Channel,
) -> Response<Full<Bytes>> {
    let query = request.uri().query().unwrap_or_default().to_owned();
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_owned())
    };
    let account = param("account");
    if channel == Channel::Metrics {
        return match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => metrics(&app, &request),
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (_, "/metrics" | "/healthz") => text(StatusCode::METHOD_NOT_ALLOWED, "wrong method\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        };
    }
    match (request.method().clone(), request.uri().path()) {
        (Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (Method::GET, "/readyz") if app.is_ready() => text(StatusCode::OK, "ready\n"),
        (Method::GET, "/readyz") if !app.shared_state_available() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "shared state unavailable\n",
        ),
        (Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        (Method::GET, "/metrics") => metrics(&app, &request),
        (Method::GET, "/frozen") => json(StatusCode::OK, &serde_json::json!(app.freeze.state())),
        (Method::POST, "/reload") => reload(app).await,
        (Method::POST, "/freeze") => {
            let cancel = param("cancel").is_some_and(|v| v == "1" || v == "true");
            let by = match channel {
                Channel::Listener | Channel::Metrics => "operator (admin listener)",
                Channel::Control => "operator",
            };
            match killswitch::freeze(&app, account.as_deref(), cancel, by).await {
                Ok(frozen) if frozen.failed > 0 => json(StatusCode::BAD_GATEWAY, &frozen.report),
                Ok(frozen) => json(StatusCode::OK, &frozen.report),
                Err((status, message)) => owned_text(status, format!("{message}\n")),
            }
        }
        (Method::POST, "/unfreeze") if channel == Channel::Control => {
            match killswitch::unfreeze(&app, account.as_deref()).await {
                Ok(report) => json(StatusCode::OK, &report),
                Err((status, message)) => owned_text(status, format!("{message}\n")),
            }
        }
        (Method::POST, "/unfreeze" | "/explain") if channel == Channel::Listener => text(
            StatusCode::FORBIDDEN,
            "only through the control socket (`keyward unfreeze`, `keyward explain` as keyward's user)\n",
        ),
        (Method::POST, "/explain") => live_explain(app, request).await,
        (
            _,
            "/healthz" | "/readyz" | "/metrics" | "/frozen" | "/reload" | "/freeze" | "/unfreeze",
        ) => text(StatusCode::METHOD_NOT_ALLOWED, "wrong method\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// OpenMetrics for a scraper that asks for it (Prometheus does), the classic text
/// format otherwise.
fn metrics(app: &App, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let openmetrics = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/openmetrics-text"));
    let text = crate::exposition::render(app);
    let (body, content_type) = if openmetrics {
        (text, crate::exposition::CONTENT_TYPE)
    } else {
        (
            crate::exposition::to_prometheus_text(&text),
            crate::exposition::PROMETHEUS_TEXT,
        )
    };
    let mut response = owned_text(StatusCode::OK, body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn reload(app: Arc<App>) -> Response<Full<Bytes>> {
    let outcome = tokio::task::spawn_blocking(move || app.reload("admin")).await;
    match outcome {
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
    }
}

/// `keyward explain` against the running keyward: its fresh prices for the bot's
/// symbols, its budgets and open orders.
async fn live_explain(app: Arc<App>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(request.into_body(), 64 * 1024).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return text(StatusCode::BAD_REQUEST, "the question is too large\n"),
    };
    let Ok(asked) = serde_json::from_slice::<Asked>(&body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected {\"bot\", \"request\", \"body\", \"headers\"}\n",
        );
    };
    let snapshot = app.snapshot();
    let Some(bot) = snapshot.config.policy.bot(&asked.bot) else {
        return owned_text(
            StatusCode::NOT_FOUND,
            format!("no bot named `{}`\n", asked.bot),
        );
    };
    let symbols: Vec<_> = bot.symbols().into_iter().cloned().collect();
    let prices = if bot.mode() == keyward_policy::Mode::DryRun {
        app.prices
            .cached(bot.account(), std::time::Duration::MAX, &symbols)
    } else {
        crate::housekeeping::fresh_prices(&app, &snapshot, bot.account(), &symbols).await
    };
    let view = explain::Running {
        app: &app,
        prices,
        now: SystemTime::now(),
    };
    match explain::explain(&snapshot.config, &asked, Some(&view)) {
        Ok(text) => owned_text(
            StatusCode::OK,
            format!("{text}live:     prices and budgets of the running keyward\n"),
        ),
        Err(message) => owned_text(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{}\n",
                message.replace("{config}", "the running configuration")
            ),
        ),
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = owned_text(status, format!("{value:#}\n"));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
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
