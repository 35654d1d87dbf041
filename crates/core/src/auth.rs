//! The credentials CMC can present: an `api_key` body parameter and HTTP
//! BASIC auth. Both are compared in constant time, and neither appears in
//! `Debug` output or logs.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use http::HeaderValue;
use subtle::ConstantTimeEq;

/// A secret string: shown as `<redacted>` by `Debug`.
///
/// ```
/// let key = cmc_webhook_core::auth::Secret::new("s3cret");
/// assert_eq!(format!("{key:?}"), "<redacted>");
/// assert_eq!(key.expose(), "s3cret");
/// ```
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(Arc::from(secret.into()))
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::REDACTED)
    }
}

/// Whether any of `secrets` equals `given`, looking at every secret (no
/// early exit that would tell which one matched).
fn any_matches<'a>(secrets: impl IntoIterator<Item = &'a Secret>, given: &[u8]) -> bool {
    secrets
        .into_iter()
        .fold(subtle::Choice::from(0), |acc, s| {
            acc | s.0.as_bytes().ct_eq(given)
        })
        .into()
}

/// The API keys a webhook body may carry in `api_key`; several, so that a
/// key can be rotated (configure the new key in CMC while both are
/// accepted, then drop the old one).
///
/// ```
/// use cmc_webhook_core::auth::ApiKeys;
///
/// let keys = ApiKeys::new(["old-key", "new-key"]);
/// assert!(keys.verify(Some("new-key")));
/// assert!(!keys.verify(Some("other")));
/// assert!(!keys.verify(None));
/// assert!(!format!("{keys:?}").contains("key\""));
/// ```
#[derive(Clone, Debug)]
pub struct ApiKeys(Arc<[Secret]>);

impl ApiKeys {
    /// The accepted keys.
    pub fn new<I, K>(keys: I) -> ApiKeys
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        ApiKeys(keys.into_iter().map(Secret::new).collect())
    }

    /// Whether `given` (the body's `api_key`) is one of the keys.
    pub fn verify(&self, given: Option<&str>) -> bool {
        match given {
            Some(given) => any_matches(self.0.iter(), given.as_bytes()),
            None => false,
        }
    }

    /// The position of the key `given` is, looking at every key in
    /// constant time (no early exit that would tell which one matched by
    /// its timing); the last when several are equal.
    pub(crate) fn position(&self, given: &str) -> Option<usize> {
        let given = given.as_bytes();
        let mut found = subtle::CtOption::new(0u64, subtle::Choice::from(0));
        for (i, key) in self.0.iter().enumerate() {
            let hit = key.0.as_bytes().ct_eq(given);
            let this = subtle::CtOption::new(i as u64, hit);
            found = subtle::ConditionallySelectable::conditional_select(&found, &this, hit);
        }
        Option::<u64>::from(found).map(|i| i as usize)
    }

    /// The keys, to join the keys of several sources.
    pub(crate) fn secrets(&self) -> &[Secret] {
        &self.0
    }

    /// Keys already wrapped.
    pub(crate) fn from_secrets(keys: Vec<Secret>) -> ApiKeys {
        ApiKeys(keys.into())
    }

    /// These keys and `key`.
    pub(crate) fn with(&self, key: String) -> ApiKeys {
        ApiKeys(self.0.iter().cloned().chain([Secret::new(key)]).collect())
    }
}

/// One user name and password for HTTP BASIC auth.
///
/// ```
/// let creds = cmc_webhook_core::auth::BasicCredentials::new("cmc", "pa55word");
/// assert_eq!(creds.user(), "cmc");
/// assert!(!format!("{creds:?}").contains("pa55word"));
/// ```
#[derive(Clone)]
pub struct BasicCredentials {
    user: String,
    /// `user:password`, as the header carries it.
    pair: Secret,
}

impl BasicCredentials {
    /// Credentials for `user` with `password`. A user name cannot hold a
    /// colon (the header could not carry it); the layer builder reports it.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> BasicCredentials {
        let user = user.into();
        let pair = Secret::new(format!("{user}:{}", password.into()));
        BasicCredentials { user, pair }
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password.
    pub(crate) fn password(&self) -> &str {
        self.pair
            .expose()
            .get(self.user.len() + 1..)
            .unwrap_or_default()
    }

    /// Whether an `Authorization` header carries one of `credentials`
    /// (`Basic` and the base64 of `user:password`), compared in constant
    /// time: for an endpoint of your own beside the webhooks, such as
    /// metrics.
    ///
    /// ```
    /// use cmc_webhook_core::auth::BasicCredentials;
    /// use http::HeaderValue;
    ///
    /// let allowed = [BasicCredentials::new("prometheus", "pa55word")];
    /// // base64("prometheus:pa55word")
    /// let header = HeaderValue::from_static("Basic cHJvbWV0aGV1czpwYTU1d29yZA==");
    /// assert!(BasicCredentials::any_match(&allowed, Some(&header)));
    /// assert!(!BasicCredentials::any_match(&allowed, None));
    /// ```
    pub fn any_match(
        credentials: &[BasicCredentials],
        authorization: Option<&HeaderValue>,
    ) -> bool {
        basic_matches(credentials, authorization)
    }
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("user", &self.user)
            .field("password", &crate::REDACTED)
            .finish()
    }
}

/// Whether an `Authorization` header carries one of `credentials`.
pub(crate) fn basic_matches(
    credentials: &[BasicCredentials],
    header: Option<&HeaderValue>,
) -> bool {
    let Some(value) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
        return false;
    };
    any_matches(credentials.iter().map(|c| &c.pair), &decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn basic_auth_accepts_any_configured_pair() {
        let creds = [
            BasicCredentials::new("a", "1"),
            BasicCredentials::new("b", "2:x"),
        ];
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(basic_matches(
            &creds,
            Some(&header(&format!("Basic {}", b64("a:1"))))
        ));
        assert!(basic_matches(
            &creds,
            Some(&header(&format!("basic {}", b64("b:2:x"))))
        ));
        assert!(!basic_matches(
            &creds,
            Some(&header(&format!("Basic {}", b64("a:2"))))
        ));
        assert!(!basic_matches(
            &creds,
            Some(&header(&format!("Bearer {}", b64("a:1"))))
        ));
        assert!(!basic_matches(&creds, Some(&header("Basic !!!"))));
        assert!(!basic_matches(&creds, Some(&header("Basic"))));
        assert!(!basic_matches(&creds, None));
        assert!(!basic_matches(
            &[],
            Some(&header(&format!("Basic {}", b64("a:1"))))
        ));
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let keys = ApiKeys::new(["k-123456"]);
        assert!(!format!("{keys:?}").contains("k-123456"));
        assert!(keys.verify(Some("k-123456")));
        assert!(!keys.verify(Some("k-12345")));
        assert!(any_matches([&Secret::new("x")], b"x"));
        let keys = ApiKeys::new(["a", "b", "c"]);
        assert_eq!(keys.position("b"), Some(1));
        assert_eq!(keys.position("c"), Some(2));
        assert_eq!(keys.position("a"), Some(0));
        assert_eq!(keys.position("d"), None);
        assert_eq!(keys.position(""), None);
        assert!(!any_matches([&Secret::new("x")], b"xx"));
    }
}
