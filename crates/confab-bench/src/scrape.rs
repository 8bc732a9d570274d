//! Read a Prometheus text endpoint (`/metrics`) with a plain HTTP/1.1 GET over a
//! loopback TCP stream, and pick metric values out of it.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response read.
const MAX_BODY: u64 = 32 << 20;

/// `http://host:port/path` → (host, port, path). Only plain http.
fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// metrics URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let bad_port = || format!("{url}: bad port");
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        let (h, p) = r
            .split_once(']')
            .ok_or_else(|| format!("{url}: unterminated [ipv6]"))?;
        let port = match p {
            "" => 80,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .ok_or_else(bad_port)?,
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad_port())?),
            None => (authority.to_owned(), 80),
        }
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((host, port, path.to_owned()))
}

/// Decode a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body: no chunk size line")?;
        let line = std::str::from_utf8(&body[..eol]).map_err(|_| "chunk size: not text")?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_hex, 16).map_err(|_| format!("chunk size {size_hex:?}"))?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size {
            return Err("chunked body: truncated".into());
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or(&[]);
    }
}

/// Split a raw HTTP response into its status code and (decoded) body.
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of HTTP headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "HTTP headers: not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    let body = String::from_utf8(body).map_err(|_| "body: not UTF-8")?;
    Ok((status, body))
}

/// GET `url` (loopback only) and return the body of a 200 answer.
pub async fn get(url: &str, wait: Duration) -> Result<String, String> {
    let (host, port, path) = split_url(url)?;
    crate::check_loopback(&[format!("http://{}", authority(&host, port))]).await?;
    let fetch = async {
        let mut s = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("{url}: connect: {e}"))?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
            authority(&host, port)
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("{url}: write: {e}"))?;
        let mut raw = Vec::new();
        (&mut s)
            .take(MAX_BODY)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("{url}: read: {e}"))?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(wait, fetch)
        .await
        .map_err(|_| format!("{url}: no answer within {wait:?}"))??;
    let (status, body) = parse_response(&raw).map_err(|e| format!("{url}: {e}"))?;
    if status != 200 {
        return Err(format!("{url}: HTTP {status}"));
    }
    Ok(body)
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Sum of every sample of metric `name` (all label sets) in a Prometheus text
/// exposition; `None` when the metric has no sample (a counter never incremented
/// is not rendered by the exporter).
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(labels) = rest.strip_prefix('{') {
            match labels.rfind('}') {
                Some(end) => &labels[end + 1..],
                None => continue,
            }
        } else if rest.starts_with(' ') {
            rest
        } else {
            continue; // another metric with this prefix
        };
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:3000/metrics").unwrap(),
            ("127.0.0.1".into(), 3000, "/metrics".into())
        );
        assert_eq!(
            split_url("http://[::1]:9/m").unwrap(),
            ("::1".into(), 9, "/m".into())
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost".into(), 80, "/".into())
        );
        assert!(split_url("https://127.0.0.1/metrics").is_err());
        assert!(split_url("http://127.0.0.1:x/metrics").is_err());
        assert!(split_url("http://:80/").is_err());
    }

    #[test]
    fn parses_responses() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_response(r).unwrap(), (200, "hello".into()));
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), (200, "hello world".into()));
        let r = b"HTTP/1.1 404 Not Found\r\n\r\n";
        assert_eq!(parse_response(r).unwrap().0, 404);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn sums_metrics() {
        let t = "# HELP confab_slow_consumers_total x\n\
                 # TYPE confab_slow_consumers_total counter\n\
                 confab_slow_consumers_total 3\n\
                 confab_slow_consumers_total_other 100\n\
                 confab_send_failed_total{path=\"fanout\"} 2\n\
                 confab_send_failed_total{path=\"reply\"} 5\n";
        assert_eq!(metric_sum(t, "confab_slow_consumers_total"), Some(3.0));
        assert_eq!(metric_sum(t, "confab_send_failed_total"), Some(7.0));
        assert_eq!(metric_sum(t, "confab_connections"), None);
    }
}
