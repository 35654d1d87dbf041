//! Standard Webhooks signatures: `webhook-signature` is `v1,` and the
//! base64 of HMAC-SHA256 over `id.timestamp.body`, once per secret
//! (several during a rotation), separated by spaces.

use std::fmt;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The prefix of a Standard Webhooks secret.
pub const PREFIX: &str = "whsec_";

/// The fewest bytes a secret may hold (the specification's libraries make
/// 24 or 32; fewer than 16 can be guessed too easily).
pub const MIN_SECRET_BYTES: usize = 16;

/// Standard base64, with or without its `=` padding (as the libraries
/// read secrets).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One signing secret: `whsec_` and base64, or the base64 alone. Its
/// `Debug` form never shows it.
///
/// ```
/// use cmc_receiver::relay::sign::SigningSecret;
///
/// let secret: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse()?;
/// assert_eq!(format!("{secret:?}"), "SigningSecret(24 bytes)");
/// assert!("whsec_".parse::<SigningSecret>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Clone)]
pub struct SigningSecret {
    key: hmac::Key,
    len: usize,
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningSecret({} bytes)", self.len)
    }
}

impl std::str::FromStr for SigningSecret {
    type Err = String;

    /// Reads a secret; the error never quotes it.
    fn from_str(s: &str) -> Result<SigningSecret, String> {
        let encoded = s.strip_prefix(PREFIX).unwrap_or(s);
        if encoded.trim().is_empty() {
            return Err("a relay secret is empty (expected whsec_ and base64)".to_owned());
        }
        let bytes = LENIENT.decode(encoded).map_err(|_| {
            "a relay secret is not base64 after its whsec_ prefix (the value is not shown)"
                .to_owned()
        })?;
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "a relay secret holds {} bytes, fewer than {MIN_SECRET_BYTES}: make one with \
                 `openssl rand -base64 32` and prefix it with whsec_",
                bytes.len()
            ));
        }
        Ok(SigningSecret {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            len: bytes.len(),
        })
    }
}

/// Signs with every secret it holds, for the `webhook-signature` header.
///
/// ```
/// use cmc_receiver::relay::sign::Signer;
///
/// let signer = Signer::new(vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse()?])?;
/// assert_eq!(
///     signer.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#),
///     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
/// );
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone)]
pub struct Signer {
    secrets: Vec<SigningSecret>,
}

impl Signer {
    /// A signer with these secrets (at least one).
    pub fn new(secrets: Vec<SigningSecret>) -> Result<Signer, String> {
        if secrets.is_empty() {
            return Err("the relay needs a secret: CMC_RELAY_SECRET or --relay-secret-file".into());
        }
        Ok(Signer { secrets })
    }

    /// The secrets in a list separated by commas, spaces or line ends (as
    /// `CMC_RELAY_SECRET` holds them), each checked.
    pub fn parse_list(list: &str) -> Result<Vec<SigningSecret>, String> {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect()
    }

    /// How many secrets sign.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether it holds no secret (never, once built).
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The `webhook-signature` value of a message: `v1,<base64>` per
    /// secret, separated by spaces.
    pub fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let prefix = format!("{id}.{timestamp}.");
        let mut out = String::with_capacity(self.secrets.len() * 48);
        for (i, secret) in self.secrets.iter().enumerate() {
            let mut context = hmac::Context::with_key(&secret.key);
            context.update(prefix.as_bytes());
            context.update(body);
            let tag = context.sign();
            if i > 0 {
                out.push(' ');
            }
            out.push_str("v1,");
            base64::engine::general_purpose::STANDARD.encode_string(tag.as_ref(), &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_with_and_without_prefix_or_padding_are_the_same_key() {
        let body = b"{}";
        let sign = |s: &str| {
            Signer::new(vec![s.parse().unwrap()])
                .unwrap()
                .signature("id", 1, body)
        };
        let with = sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(with, sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        // 32 bytes: base64 with one `=` of padding, read with or without it.
        let padded = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(padded.ends_with('='));
        assert_eq!(
            sign(&format!("whsec_{padded}")),
            sign(&format!("whsec_{}", padded.trim_end_matches('=')))
        );
    }

    #[test]
    fn bad_secrets_are_refused_without_being_shown() {
        for bad in ["", "whsec_", "whsec_not base64!", "whsec_c2hvcnQ=", "   "] {
            let e = bad.parse::<SigningSecret>().unwrap_err();
            let value = bad.trim_start_matches(PREFIX).trim();
            assert!(value.is_empty() || !e.contains(value), "{e}");
        }
        assert!(Signer::new(Vec::new()).is_err());
    }

    #[test]
    fn several_secrets_give_several_signatures() {
        let list = Signer::parse_list(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .unwrap();
        let signer = Signer::new(list).unwrap();
        let signature = signer.signature(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        let parts: Vec<&str> = signature.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(parts[1].starts_with("v1,") && parts[1] != parts[0]);
    }
}
