//! Minimal HTTP and HTTPS clients for the tests' API queries.

use crate::*;

/// A plain HTTP GET on loopback; returns status and body.
pub fn blocking_get(url: &str) -> Result<(u16, String)> {
    blocking_get_with(url, None)
}

/// A plain HTTP GET on loopback with an optional bearer token; returns status and
/// body.
pub fn blocking_get_with(url: &str, bearer: Option<&str>) -> Result<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut request = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(30));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let r = request.send().await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    })
}

/// An HTTPS GET of `path` from `addr` (certificate name `localhost`) trusting only
/// the CA in `ca_pem`, with an optional bearer token; returns status and body.
/// HTTP/1.1 by hand over tokio-rustls: reqwest here is built without TLS.
pub fn https_get(
    addr: &str,
    path: &str,
    ca_pem: &Path,
    bearer: Option<&str>,
) -> Result<(u16, String)> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem)? {
        roots.add(cert?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let response = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
        let mut stream = connector
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let auth = bearer.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n{auth}connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        // A TLS close without close_notify still ends the response.
        if let Err(e) = stream.read_to_end(&mut response).await
            && response.is_empty()
        {
            return Err(anyhow::Error::from(e));
        }
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    })?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no end of headers")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_string()
        },
    ))
}

fn dechunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("short chunk")?);
        body = rest.get(size + 2..).context("short chunk")?;
    }
}

pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
