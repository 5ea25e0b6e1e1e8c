//! Database TLS: the files a connection URL names are checked before the
//! first connection, and TLS failures are said in plain words.
//!
//! Contract:
//! - TLS is configured in `sink.url` exactly as libpq and MySQL clients spell
//!   it (`sslmode`, `sslrootcert`, `sslcert`, `sslkey` for PostgreSQL;
//!   `ssl-mode`, `ssl-ca`, `ssl-cert`, `ssl-key` for MySQL/MariaDB). sqlx reads
//!   them; OpenSSL (the one librdkafka links too) does the handshake.
//! - A named file that cannot be read fails start-up naming the parameter and
//!   the path ([`check_files`]); the driver would only say "No such file".
//! - A certificate the client does not trust, a host name the certificate does
//!   not cover, or a client certificate the server refuses is [`explain`]ed in
//!   one sentence and is fatal: retrying cannot make a certificate valid.

/// URL parameters that name a file (both spellings sqlx accepts).
const FILE_PARAMS: [&str; 9] = [
    "sslrootcert",
    "ssl-root-cert",
    "sslca",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "ssl-client-cert",
];

/// A file named by a TLS parameter of the URL that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("TLS file {path} (URL parameter {param}) cannot be read: {error}")]
pub struct FileError {
    pub param: String,
    pub path: String,
    pub error: std::io::Error,
}

/// Checks that every file the URL's TLS parameters name can be read.
pub fn check_files(url: &str) -> Result<(), FileError> {
    let Some((_, query)) = url.split_once('?') else {
        return Ok(());
    };
    for pair in query.split('&') {
        let Some((param, value)) = pair.split_once('=') else {
            continue;
        };
        if !FILE_PARAMS.contains(&param) {
            continue;
        }
        let path = percent_decode(value);
        if let Err(error) = std::fs::File::open(&path) {
            return Err(FileError {
                param: param.to_string(),
                path,
                error,
            });
        }
    }
    Ok(())
}

/// Decodes `%XX` escapes (a path in a URL may carry them); other bytes pass.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Says what went wrong when `err` is a TLS failure that retrying cannot fix.
pub fn explain(err: &sqlx::Error) -> Option<&'static str> {
    let text = match err {
        sqlx::Error::Tls(e) => e.to_string(),
        sqlx::Error::Io(e) => e.to_string(),
        _ => return None,
    };
    explain_text(&text)
}

/// With TLS 1.3 a server that refuses the client certificate may just close
/// the connection once the client sent it: the client sees a reset, not the
/// alert. Said as such when the URL (redacted or not) names a client certificate.
pub fn explain_reset(url: &str, err: &sqlx::Error) -> Option<&'static str> {
    let sqlx::Error::Io(e) = err else {
        return None;
    };
    let reset = matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
    );
    let has_cert = url.contains("sslcert=") || url.contains("ssl-cert=");
    (reset && has_cert).then_some(
        "TLS: the server closed the connection after the handshake; it most likely refused the client certificate (sslcert / ssl-cert)",
    )
}

fn explain_text(text: &str) -> Option<&'static str> {
    if text.contains("hostname mismatch") || text.contains("IP address mismatch") {
        Some("TLS: the server certificate does not cover the host in the URL (hostname mismatch)")
    } else if text.contains("certificate verify failed") {
        Some("TLS: server certificate not trusted by the CA the URL names (sslrootcert / ssl-ca)")
    } else if text.contains("alert unknown ca")
        || text.contains("alert bad certificate")
        || text.contains("alert certificate required")
        || text.contains("alert certificate unknown")
    {
        Some("TLS: the server refused the client certificate (sslcert / ssl-cert): it does not trust its CA or it is missing")
    } else if text.contains("key values mismatch") {
        Some("TLS: the client key does not belong to the client certificate (sslkey / ssl-key)")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_file_is_named_with_its_parameter() {
        let url = "postgres://u:p@h/db?sslmode=verify-full&sslrootcert=/nonexistent/a%20b.pem";
        let err = check_files(url).expect_err("the file does not exist");
        assert_eq!(err.param, "sslrootcert");
        assert_eq!(err.path, "/nonexistent/a b.pem");
        assert!(err.to_string().contains("/nonexistent/a b.pem"));
    }

    #[test]
    fn urls_without_tls_files_pass() {
        check_files("postgres://u:p@h/db").expect("no query");
        check_files("mysql://u:p@h/db?ssl-mode=REQUIRED&charset=utf8mb4").expect("no files");
    }

    #[test]
    fn openssl_failures_are_said_in_words() {
        let untrusted = "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889: (self-signed certificate in certificate chain)";
        assert!(explain_text(untrusted)
            .expect("explained")
            .contains("not trusted"));
        let mismatch = "certificate verify failed: (hostname mismatch)";
        assert!(explain_text(mismatch)
            .expect("explained")
            .contains("hostname mismatch"));
        let refused = "error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca";
        assert!(explain_text(refused)
            .expect("explained")
            .contains("client certificate"));
        assert_eq!(explain_text("Connection refused (os error 111)"), None);
    }

    #[test]
    fn a_reset_after_sending_a_client_certificate_points_at_it() {
        let reset = || sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into());
        let with_cert = "postgres://u@h/db?sslmode=verify-full&sslcert=/c.crt&sslkey=/c.key";
        assert!(explain_reset(with_cert, &reset())
            .expect("explained")
            .contains("client certificate"));
        assert_eq!(explain_reset("postgres://u@h/db", &reset()), None);
    }
}
