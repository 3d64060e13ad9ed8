//! HTTP actions with reqwest. Redirects are never followed: a redirect could lead outside
//! the scope that was checked.

use std::time::Duration;

use super::{ExecError, HttpOutput, Stop, MAX_OUTPUT};

/// The one HTTP client of the daemon.
pub fn client() -> Result<reqwest::Client, ExecError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("tandem/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ExecError::Io(format!("http client: {e}")))
}

/// One request, already scope-checked by the caller.
pub fn request(
    rt: &tokio::runtime::Handle,
    client: &reqwest::Client,
    method: &str,
    url: url::Url,
    body: Option<String>,
    headers: &[(String, String)],
    stop: &Stop<'_>,
) -> Result<HttpOutput, ExecError> {
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| ExecError::Io(format!("`{method}` is not an HTTP method")))?;
    let remaining = stop.remaining();
    if remaining.is_zero() {
        return Err(ExecError::Timeout("http request".into()));
    }
    let mut req = client.request(method, url).timeout(remaining);
    let mut has_content_type = false;
    for (k, v) in headers {
        has_content_type |= k.eq_ignore_ascii_case("content-type");
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(b) = body {
        if !has_content_type && (b.starts_with('{') || b.starts_with('[')) {
            req = req.header("content-type", "application/json");
        }
        req = req.body(b);
    }
    rt.block_on(async {
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                ExecError::Timeout("http request".into())
            } else {
                ExecError::Connect(without_url(&e))
            }
        })?;
        let status = resp.status().as_u16() as i64;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ExecError::Io(without_url(&e)))?;
        let cut = bytes.len().min(MAX_OUTPUT);
        Ok(HttpOutput {
            status,
            body: String::from_utf8_lossy(&bytes[..cut]).into_owned(),
        })
    })
}

/// reqwest's messages can contain the URL, which may carry a token in its query; the caller
/// knows the URL already and redacts it.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "URL");
    }
    s
}
