//! A string that never shows itself in `Debug` or `Display` output.
//!
//! Database URLs (which carry passwords) and Kafka client options (which carry
//! SASL credentials) are held as [`Secret`]s so a logged config cannot leak them.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Call sites are the few places that hand it to a client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// librdkafka options by their dotted names. A nested table flattens into
/// dotted keys: the environment variable
/// `TIDEMILL__PIPELINES__P__KAFKA__OPTIONS__SASL.PASSWORD` reaches the loader
/// as `options.sasl.password` (a table `sasl` holding `password`), and means
/// the option `sasl.password`, as `"sasl.password" = "…"` in the file does.
/// Numbers and booleans are passed on as their text.
pub fn flat_options<'de, D>(d: D) -> Result<BTreeMap<String, Secret>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(String),
        Int(i64),
        Bool(bool),
        Table(BTreeMap<String, Value>),
    }
    fn flatten(prefix: &str, table: BTreeMap<String, Value>, out: &mut BTreeMap<String, Secret>) {
        for (key, value) in table {
            let key = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            let text = match value {
                Value::Text(s) => s,
                Value::Int(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Table(t) => {
                    flatten(&key, t, out);
                    continue;
                }
            };
            out.insert(key, Secret::new(text));
        }
    }
    let mut out = BTreeMap::new();
    flatten("", BTreeMap::<String, Value>::deserialize(d)?, &mut out);
    Ok(out)
}

/// Renders a URL with its passwords replaced, for logs and `tidemill check`:
/// the one in the userinfo and any query parameter that carries one
/// (`password`, `sslpassword`, anything named like a secret, token or key
/// passphrase). File paths (`sslkey=/path`) are not secrets and stay.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}:***@{host}")
        }
        None => authority.to_string(),
    };
    let query = query.map_or(String::new(), |q| format!("?{}", redact_query(q)));
    format!("{scheme}://{authority}{path}{query}")
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_param(key) => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_secret_param(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "credential"]
        .iter()
        .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redact_url_hides_only_the_password() {
        assert_eq!(
            redact_url("postgres://app:pw@db:5432/x?sslmode=require"),
            "postgres://app:***@db:5432/x?sslmode=require"
        );
        assert_eq!(redact_url("sqlite://data.db"), "sqlite://data.db");
        assert_eq!(
            redact_url("mysql://app@db/x?ssl-mode=REQUIRED&ssl-ca=/ca.pem"),
            "mysql://app:***@db/x?ssl-mode=REQUIRED&ssl-ca=/ca.pem"
        );
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn redact_url_hides_passwords_in_the_query_string() {
        assert_eq!(
            redact_url(
                "postgres://db/x?user=app&password=pw&sslmode=verify-full&sslpassword=kp&sslkey=/k.pem"
            ),
            "postgres://db/x?user=app&password=***&sslmode=verify-full&sslpassword=***&sslkey=/k.pem"
        );
        assert_eq!(
            redact_url("postgres://app:pw@db?PassWord=pw"),
            "postgres://app:***@db?PassWord=***"
        );
    }

    #[test]
    fn nested_option_tables_flatten_into_dotted_librdkafka_names() {
        #[derive(Deserialize)]
        struct K {
            #[serde(deserialize_with = "flat_options")]
            options: BTreeMap<String, Secret>,
        }
        let k: K = serde_json::from_str(
            r#"{"options": {"security.protocol": "SASL_SSL", "fetch.min.bytes": 1,
                "sasl": {"password": "pw"},
                "ssl": {"endpoint": {"identification": {"algorithm": "https"}}}}}"#,
        )
        .expect("options");
        let flat: Vec<(&str, &str)> = k
            .options
            .iter()
            .map(|(key, v)| (key.as_str(), v.expose()))
            .collect();
        assert_eq!(
            flat,
            [
                ("fetch.min.bytes", "1"),
                ("sasl.password", "pw"),
                ("security.protocol", "SASL_SSL"),
                ("ssl.endpoint.identification.algorithm", "https"),
            ]
        );
    }
}
