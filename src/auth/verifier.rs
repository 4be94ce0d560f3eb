//! Token verification: keys and accepted algorithms fixed at startup, checked per request.

use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;

use super::error::rejection;
use super::scope::split_scope_string;
use super::{AuthError, Scopes};

/// Clock skew tolerated on `exp` and `nbf` unless configured otherwise.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// Where the verification keys come from. The key decides the accepted algorithms.
pub enum KeySource {
    /// A shared HMAC secret: HS256, HS384 and HS512.
    Secret(Vec<u8>),
    /// One public key in PEM (`-----BEGIN PUBLIC KEY-----`, or PKCS#1 `RSA PUBLIC KEY`):
    /// RSA accepts RS256, EC P-256 ES256 (P-384 ES384), Ed25519 EdDSA.
    PublicKeyPem(Vec<u8>),
    /// A JWKS document (`{"keys": [...]}`); each key brings its own algorithm.
    Jwks(String),
}

// Hand-written so that a `Debug` print of the configuration never leaks the secret.
impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Secret([redacted])"),
            Self::PublicKeyPem(pem) => write!(f, "PublicKeyPem({} bytes)", pem.len()),
            Self::Jwks(json) => write!(f, "Jwks({} bytes)", json.len()),
        }
    }
}

/// Everything [`Verifier::new`] needs.
#[derive(Debug)]
pub struct VerifierConfig {
    /// The verification key(s).
    pub keys: KeySource,
    /// When set, tokens must carry exactly this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must list this in `aud`. When unset, `aud` is not checked at all, so
    /// set it whenever the issuer also mints tokens for other services.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl VerifierConfig {
    /// A configuration for `keys` with no issuer or audience check and the default leeway.
    pub fn new(keys: KeySource) -> Self {
        Self {
            keys,
            issuer: None,
            audience: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }
}

/// What a handler learns from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The subject, for logs and audit; authorization never looks at it.
    pub sub: Option<String>,
    /// Expiry, in seconds since the Unix epoch; lets long-lived sessions (WebSocket, SSE)
    /// end when their token does.
    pub exp: u64,
    /// What the token may do.
    pub scopes: Scopes,
}

/// Checks tokens against the keys fixed at startup.
///
/// Immutable after [`Verifier::new`], so it is `Send + Sync` and shared in an `Arc`.
#[derive(Debug)]
pub struct Verifier {
    keys: Keys,
}

#[derive(Debug)]
enum Keys {
    /// A secret or a PEM key: the token's `kid`, if any, is irrelevant.
    Single(Box<VerifyingKey>),
    /// A JWKS: the token's `kid` picks the key.
    Jwks(Vec<(Option<String>, VerifyingKey)>),
}

#[derive(Debug)]
struct VerifyingKey {
    key: DecodingKey,
    /// Holds the accepted algorithms: the key's own, never the token header's.
    validation: Validation,
}

impl Verifier {
    /// Loads the keys and fixes the accepted algorithms.
    ///
    /// # Errors
    /// [`AuthError::Config`] with a one-line reason when the secret is empty, the PEM is not a
    /// supported public key, or the JWKS is not JSON or holds no usable signature key.
    pub fn new(config: VerifierConfig) -> Result<Self, AuthError> {
        let verifying = |key, algorithms: &[Algorithm]| VerifyingKey {
            key,
            validation: validation(&config, algorithms),
        };
        let keys = match &config.keys {
            KeySource::Secret(secret) => {
                if secret.is_empty() {
                    return Err(AuthError::Config("the HMAC secret is empty".into()));
                }
                if secret.len() < 32 {
                    tracing::warn!(
                        bytes = secret.len(),
                        "HMAC secret is shorter than 32 bytes; it can be brute-forced"
                    );
                }
                let algorithms = AlgorithmFamily::Hmac.algorithms().to_vec();
                Keys::Single(Box::new(verifying(
                    DecodingKey::from_secret(secret),
                    &algorithms,
                )))
            }
            KeySource::PublicKeyPem(pem) => {
                let (key, algorithm) = pem_key(pem)?;
                Keys::Single(Box::new(verifying(key, &[algorithm])))
            }
            KeySource::Jwks(json) => Keys::Jwks(
                jwks_keys(json)?
                    .into_iter()
                    .map(|(kid, key, algorithm)| (kid, verifying(key, &[algorithm])))
                    .collect(),
            ),
        };
        Ok(Self { keys })
    }

    /// Verifies signature, algorithm and time/issuer/audience claims, then reads the scopes.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] with the reason; the token itself is never part of it.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        // Unverified, so only used to pick a key; `decode` re-checks `alg` against that key's
        // configured algorithms before any signature work.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::invalid("malformed header or unsupported algorithm"))?;
        // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
        if header.crit.is_some_and(|crit| !crit.is_empty()) {
            return Err(AuthError::invalid("unsupported critical header parameters"));
        }
        let verifying = self.select(header.kid.as_deref())?;
        let raw = jsonwebtoken::decode::<RawClaims>(token, &verifying.key, &verifying.validation)
            .map_err(|err| explain_rejection(token, &err))?
            .claims;
        let exp = raw
            .exp
            .as_ref()
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| AuthError::invalid("missing required claim `exp`"))?;
        let mut items = Vec::new();
        for claim in [&raw.scope, &raw.scp].into_iter().flatten() {
            claim.items_into(&mut items);
        }
        Ok(Claims {
            sub: raw.sub,
            // Finite and non-negative: `decode` already validated it as a timestamp.
            exp: exp as u64,
            scopes: Scopes::from_token(items),
        })
    }

    /// Picks the key for a token. Within a JWKS, a token with a `kid` must name one of its
    /// keys; a token without one is accepted only when the set holds a single usable key
    /// (see the module documentation).
    fn select(&self, kid: Option<&str>) -> Result<&VerifyingKey, AuthError> {
        match (&self.keys, kid) {
            (Keys::Single(only), _) => Ok(only),
            (Keys::Jwks(keys), Some(kid)) => keys
                .iter()
                .find(|(key_id, _)| key_id.as_deref() == Some(kid))
                .map(|(_, verifying)| verifying)
                .ok_or_else(|| AuthError::invalid("unknown key id (kid)")),
            (Keys::Jwks(keys), None) => match keys.as_slice() {
                [(_, only)] => Ok(only),
                _ => Err(AuthError::invalid(
                    "no key id (kid) and the JWKS holds several keys",
                )),
            },
        }
    }
}

/// The claims we read besides those `jsonwebtoken` validates.
#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    // Any JSON: `decode` has validated it as a timestamp already, and a value of another
    // shape must reach its check (and its precise message) instead of failing here.
    exp: Option<serde_json::Value>,
    scope: Option<ScopeClaim>,
    scp: Option<ScopeClaim>,
}

/// `scope` is a space-separated string, `scp` an array; issuers mix them up (Azure AD sends
/// `scp` as a string), so both claims accept both shapes.
#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    /// Split on ASCII spaces only (RFC 6749 §3.3).
    One(String),
    /// Each element is one scope, never split.
    Many(Vec<String>),
}

impl ScopeClaim {
    fn items_into<'a>(&'a self, items: &mut Vec<&'a str>) {
        match self {
            Self::One(text) => items.extend(split_scope_string(text)),
            Self::Many(all) => items.extend(all.iter().map(String::as_str)),
        }
    }
}

/// [`rejection`], but telling a required claim that is present yet malformed (`"exp": -1`,
/// `1e308`, a string) from one that is absent: `jsonwebtoken` reports both as missing.
/// Runs only after the signature verified, so the payload read here is the issuer's.
fn explain_rejection(token: &str, err: &jsonwebtoken::errors::Error) -> AuthError {
    if let jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(claim) = err.kind()
        && let Ok(payload) = jsonwebtoken::dangerous::insecure_decode_claims::<
            serde_json::Map<String, serde_json::Value>,
        >(token)
        && payload.contains_key(claim.as_str())
    {
        let expected = match claim.as_str() {
            "exp" | "nbf" => "must be a whole number of seconds since the epoch, 0 or more",
            _ => "has the wrong type",
        };
        return AuthError::Invalid(format!("invalid claim `{claim}`: {expected}"));
    }
    rejection(err)
}

fn validation(config: &VerifierConfig, algorithms: &[Algorithm]) -> Validation {
    let mut validation = Validation {
        algorithms: algorithms.to_vec(),
        leeway: config.leeway_secs,
        validate_nbf: true,
        // Without a configured audience there is nothing to compare `aud` with.
        validate_aud: config.audience.is_some(),
        ..Validation::default()
    };
    // `jsonwebtoken` checks `iss`/`aud` only when present, so configured ones become required.
    let mut required = vec!["exp"];
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    if let Some(audience) = &config.audience {
        validation.set_audience(&[audience]);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// Reads a public key PEM and finds the one algorithm its type allows.
fn pem_key(pem: &[u8]) -> Result<(DecodingKey, Algorithm), AuthError> {
    let text = String::from_utf8_lossy(pem);
    if !text.contains("-----BEGIN PUBLIC KEY-----")
        && !text.contains("-----BEGIN RSA PUBLIC KEY-----")
    {
        return Err(AuthError::Config(
            "the key file is not a public key PEM (`-----BEGIN PUBLIC KEY-----`); \
             derive one with `openssl pkey -in private.pem -pubout`"
                .into(),
        ));
    }
    // Each parser refuses the other key types, so at most one succeeds.
    DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_ed_pem(pem))
        .ok()
        .and_then(|key| implied_algorithm(&key).map(|algorithm| (key, algorithm)))
        .ok_or_else(|| {
            AuthError::Config(
                "unsupported or corrupt public key PEM (supported: RSA, EC P-256/P-384, Ed25519)"
                    .into(),
            )
        })
}

/// The signature algorithm a public key's type implies, `None` when we cannot use it.
///
/// Going through [`Jwk::from_decoding_key`] also checks the key material: an RSA key must
/// parse, an EC point must have the length of a supported curve.
fn implied_algorithm(key: &DecodingKey) -> Option<Algorithm> {
    match Jwk::from_decoding_key(key, None).ok()?.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Some(Algorithm::EdDSA)
        }
        _ => None,
    }
}

/// Reads a JWKS into `(kid, key, algorithm)` triples.
///
/// Keys we cannot verify with (encryption keys, symmetric `oct` keys, other curves or
/// algorithms) are skipped with a warning rather than failing startup, since identity
/// providers publish such keys next to their signing keys. A key whose declared `alg`
/// contradicts its type is a broken JWKS and fails.
fn jwks_keys(json: &str) -> Result<Vec<(Option<String>, DecodingKey, Algorithm)>, AuthError> {
    let set: JwkSet = serde_json::from_str(json)
        .map_err(|err| AuthError::Config(format!("the JWKS is not valid: {err}")))?;
    let mut keys: Vec<(Option<String>, DecodingKey, Algorithm)> = Vec::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        let name = kid.as_deref().unwrap_or("without kid");
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            continue;
        }
        let Some((key, implied)) = DecodingKey::from_jwk(jwk)
            .ok()
            .and_then(|key| implied_algorithm(&key).map(|algorithm| (key, algorithm)))
        else {
            tracing::warn!(
                kid = name,
                "skipping JWKS key that is malformed or of an unsupported type"
            );
            continue;
        };
        let algorithm = match jwk.common.key_algorithm.map(Algorithm::try_from) {
            None => implied,
            Some(Ok(declared))
                if declared == implied
                    || (declared.family() == AlgorithmFamily::Rsa
                        && implied.family() == AlgorithmFamily::Rsa) =>
            {
                declared
            }
            Some(Ok(declared)) => {
                return Err(AuthError::Config(format!(
                    "JWKS key {name}: `alg` {declared:?} does not match its key type"
                )));
            }
            Some(Err(_)) => {
                tracing::warn!(kid = name, "skipping JWKS key with an unsupported `alg`");
                continue;
            }
        };
        if keys.iter().any(|(other, ..)| *other == kid) {
            return Err(AuthError::Config(format!("JWKS key {name} appears twice")));
        }
        keys.push((kid, key, algorithm));
    }
    if keys.is_empty() {
        return Err(AuthError::Config(
            "the JWKS holds no usable signature key (supported: RSA, EC P-256/P-384, Ed25519)"
                .into(),
        ));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    //! The PEM files in `testdata/` are throwaway keys made once with
    //! `openssl genpkey -algorithm {RSA|EC -pkeyopt ec_paramgen_curve:P-256|ED25519}` and
    //! `openssl pkey -pubout`; they protect nothing.

    use std::time::Duration;

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;
    use crate::auth::{Action, mint_hs256};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const RSA_PRIVATE: &[u8] = include_bytes!("testdata/rsa-private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("testdata/rsa-public.pem");
    const EC_PRIVATE: &[u8] = include_bytes!("testdata/ec-private.pem");
    const EC_PUBLIC: &[u8] = include_bytes!("testdata/ec-public.pem");
    const ED_PRIVATE: &[u8] = include_bytes!("testdata/ed25519-private.pem");
    const ED_PUBLIC: &[u8] = include_bytes!("testdata/ed25519-public.pem");

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    /// Valid claims for ten minutes, with `extra` merged over them (`null` removes a claim).
    fn claims(extra: Value) -> Value {
        let mut claims = json!({"sub": "alice", "exp": now() + 600, "scope": "publish:orders"});
        for (name, value) in extra.as_object().expect("object") {
            match value {
                Value::Null => claims.as_object_mut().expect("object").remove(name),
                _ => claims
                    .as_object_mut()
                    .expect("object")
                    .insert(name.clone(), value.clone()),
            };
        }
        claims
    }

    fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).expect("sign")
    }

    fn verifier(config: VerifierConfig) -> Verifier {
        Verifier::new(config).expect("verifier")
    }

    fn secret_verifier() -> Verifier {
        verifier(VerifierConfig::new(KeySource::Secret(SECRET.to_vec())))
    }

    fn pem_verifier(pem: &[u8]) -> Verifier {
        verifier(VerifierConfig::new(KeySource::PublicKeyPem(pem.to_vec())))
    }

    /// Asserts the token is refused for `reason`, and that the message does not echo it.
    #[track_caller]
    fn assert_invalid(result: Result<Claims, AuthError>, token: &str, reason: &str) {
        match result {
            Err(err @ AuthError::Invalid(_)) => {
                let message = err.to_string();
                assert!(
                    message.contains(reason),
                    "{message:?} should mention {reason:?}"
                );
                assert!(!message.contains(token));
            }
            other => panic!("expected an invalid token error, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_config_error(config: VerifierConfig) {
        match Verifier::new(config) {
            Err(AuthError::Config(message)) => assert!(!message.contains('\n')),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    fn jwk(public_pem: &[u8], alg: Algorithm, kid: Option<&str>) -> Jwk {
        let key = pem_key(public_pem).expect("test key").0;
        let mut jwk = Jwk::from_decoding_key(&key, Some(alg)).expect("jwk");
        jwk.common.key_id = kid.map(str::to_owned);
        jwk
    }

    fn jwks(keys: Vec<Jwk>) -> String {
        serde_json::to_string(&JwkSet { keys }).expect("json")
    }

    #[test]
    fn verifier_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Verifier>();
    }

    #[test]
    fn minted_hs256_token_round_trips() {
        let token = mint_hs256(
            SECRET,
            "alice",
            "publish:orders subscribe:web-*",
            Duration::from_secs(60),
            None,
            None,
        )
        .expect("mint");
        let claims = secret_verifier().verify(&token).expect("verify");
        assert_eq!(claims.sub.as_deref(), Some("alice"));
        assert!(claims.exp > now());
        assert!(claims.scopes.allows(Action::Publish, "orders"));
        assert!(claims.scopes.allows(Action::Subscribe, "web-x"));
        assert!(!claims.scopes.allows(Action::Publish, "web-x"));
    }

    #[test]
    fn a_secret_accepts_hs256_hs384_and_hs512() {
        let key = EncodingKey::from_secret(SECRET);
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign(alg, &key, None, &claims(json!({})));
            secret_verifier().verify(&token).expect("verify");
        }
    }

    #[test]
    fn time_claims() {
        let key = EncodingKey::from_secret(SECRET);
        let v = secret_verifier();
        let expired = sign(
            Algorithm::HS256,
            &key,
            None,
            &claims(json!({"exp": now() - 3600})),
        );
        assert_invalid(v.verify(&expired), &expired, "expired");
        let in_leeway = sign(
            Algorithm::HS256,
            &key,
            None,
            &claims(json!({"exp": now() - 5})),
        );
        v.verify(&in_leeway).expect("within leeway");
        let early = sign(
            Algorithm::HS256,
            &key,
            None,
            &claims(json!({"nbf": now() + 3600})),
        );
        assert_invalid(v.verify(&early), &early, "not valid yet");
        let started = sign(
            Algorithm::HS256,
            &key,
            None,
            &claims(json!({"nbf": now() - 5})),
        );
        v.verify(&started).expect("nbf in the past");
        let no_exp = sign(Algorithm::HS256, &key, None, &claims(json!({"exp": null})));
        assert_invalid(v.verify(&no_exp), &no_exp, "exp");
    }

    #[test]
    fn issuer_and_audience() {
        let mut config = VerifierConfig::new(KeySource::Secret(SECRET.to_vec()));
        config.issuer = Some("tidegate".into());
        config.audience = Some("api".into());
        let v = verifier(config);
        let mint = |iss, aud| {
            mint_hs256(SECRET, "bob", "admin", Duration::from_secs(60), iss, aud).expect("mint")
        };
        v.verify(&mint(Some("tidegate"), Some("api")))
            .expect("matching iss and aud");
        for (token, reason) in [
            (mint(Some("other"), Some("api")), "wrong issuer"),
            (mint(None, Some("api")), "`iss`"),
            (mint(Some("tidegate"), Some("other")), "wrong audience"),
            (mint(Some("tidegate"), None), "`aud`"),
        ] {
            assert_invalid(v.verify(&token), &token, reason);
        }
        // Without a configured audience, `aud` is not checked.
        secret_verifier()
            .verify(&mint(None, Some("anything")))
            .expect("aud ignored");
    }

    #[test]
    fn bad_signature_and_garbage() {
        let v = secret_verifier();
        let other_secret = b"another secret of thirty-two byt";
        let forged = mint_hs256(
            other_secret,
            "eve",
            "admin",
            Duration::from_secs(60),
            None,
            None,
        )
        .expect("mint");
        assert_invalid(v.verify(&forged), &forged, "bad signature");
        for garbage in ["", "abc", "a.b.c", "a.b", "...."] {
            let result = v.verify(garbage);
            assert!(
                matches!(&result, Err(AuthError::Invalid(reason)) if reason.starts_with("malformed")),
                "{garbage:?}: {result:?}"
            );
        }
    }

    #[test]
    fn alg_none_rejected() {
        let valid =
            mint_hs256(SECRET, "eve", "admin", Duration::from_secs(60), None, None).expect("mint");
        let payload = valid.split('.').nth(1).expect("payload");
        // base64url of {"alg":"none","typ":"JWT"}
        let token = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert_invalid(
            secret_verifier().verify(&token),
            &token,
            "unsupported algorithm",
        );
        assert_invalid(
            pem_verifier(RSA_PUBLIC).verify(&token),
            &token,
            "unsupported algorithm",
        );
    }

    #[test]
    fn public_key_pems() {
        for (private, public, alg) in [
            (
                EncodingKey::from_rsa_pem(RSA_PRIVATE),
                RSA_PUBLIC,
                Algorithm::RS256,
            ),
            (
                EncodingKey::from_ec_pem(EC_PRIVATE),
                EC_PUBLIC,
                Algorithm::ES256,
            ),
            (
                EncodingKey::from_ed_pem(ED_PRIVATE),
                ED_PUBLIC,
                Algorithm::EdDSA,
            ),
        ] {
            let token = sign(
                alg,
                &private.expect("private key"),
                None,
                &claims(json!({})),
            );
            let verified = pem_verifier(public).verify(&token).expect("verify");
            assert!(verified.scopes.allows(Action::Publish, "orders"));
            // The other key types must not accept it.
            for other in [RSA_PUBLIC, EC_PUBLIC, ED_PUBLIC]
                .into_iter()
                .filter(|p| *p != public)
            {
                assert_invalid(
                    pem_verifier(other).verify(&token),
                    &token,
                    "algorithm not allowed",
                );
            }
        }
        // An RSA PEM pins RS256, even though the key could check RS512.
        let rs512 = sign(
            Algorithm::RS512,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("key"),
            None,
            &claims(json!({})),
        );
        assert_invalid(
            pem_verifier(RSA_PUBLIC).verify(&rs512),
            &rs512,
            "algorithm not allowed",
        );
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_rejected() {
        let key = EncodingKey::from_secret(RSA_PUBLIC);
        let token = sign(
            Algorithm::HS256,
            &key,
            None,
            &claims(json!({"scope": "admin"})),
        );
        assert_invalid(
            pem_verifier(RSA_PUBLIC).verify(&token),
            &token,
            "algorithm not allowed",
        );
        let jwks = jwks(vec![jwk(RSA_PUBLIC, Algorithm::RS256, Some("r"))]);
        let token = sign(
            Algorithm::HS256,
            &key,
            Some("r"),
            &claims(json!({"scope": "admin"})),
        );
        let v = verifier(VerifierConfig::new(KeySource::Jwks(jwks)));
        assert_invalid(v.verify(&token), &token, "algorithm not allowed");
    }

    #[test]
    fn bad_key_configuration_fails_at_startup() {
        let pem = |bytes: &[u8]| VerifierConfig::new(KeySource::PublicKeyPem(bytes.to_vec()));
        assert_config_error(pem(RSA_PRIVATE));
        assert_config_error(pem(b"not a pem"));
        assert_config_error(pem(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ));
        assert_config_error(VerifierConfig::new(KeySource::Secret(Vec::new())));

        let jwks = |json: &str| VerifierConfig::new(KeySource::Jwks(json.to_owned()));
        assert_config_error(jwks("{"));
        assert_config_error(jwks(r#"{"keys": []}"#));
        // Only a symmetric key: skipped, so nothing usable is left.
        assert_config_error(jwks(
            r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}]}"#,
        ));
        // Declared `alg` contradicting the key type.
        assert_config_error(jwks(&super::tests::jwks(vec![jwk(
            EC_PUBLIC,
            Algorithm::RS256,
            None,
        )])));
        let twice = vec![
            jwk(RSA_PUBLIC, Algorithm::RS256, Some("k")),
            jwk(EC_PUBLIC, Algorithm::ES256, Some("k")),
        ];
        assert_config_error(jwks(&super::tests::jwks(twice)));
    }

    #[test]
    fn jwks_picks_the_key_by_kid() {
        let mut encryption = jwk(RSA_PUBLIC, Algorithm::RS256, Some("enc"));
        encryption.common.public_key_use = Some(PublicKeyUse::Encryption);
        let set = jwks(vec![
            jwk(RSA_PUBLIC, Algorithm::RS256, Some("r")),
            jwk(EC_PUBLIC, Algorithm::ES256, Some("e")),
            jwk(ED_PUBLIC, Algorithm::EdDSA, Some("d")),
            encryption,
        ]);
        let v = verifier(VerifierConfig::new(KeySource::Jwks(set)));
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("key");
        let ec = EncodingKey::from_ec_pem(EC_PRIVATE).expect("key");
        let ed = EncodingKey::from_ed_pem(ED_PRIVATE).expect("key");
        let ok = claims(json!({}));
        for (alg, key, kid) in [
            (Algorithm::RS256, &rsa, "r"),
            (Algorithm::ES256, &ec, "e"),
            (Algorithm::EdDSA, &ed, "d"),
        ] {
            v.verify(&sign(alg, key, Some(kid), &ok)).expect("verify");
        }
        for (token, reason) in [
            (
                sign(Algorithm::RS256, &rsa, Some("nope"), &ok),
                "unknown key id",
            ),
            (
                sign(Algorithm::RS256, &rsa, Some("enc"), &ok),
                "unknown key id",
            ),
            (sign(Algorithm::RS256, &rsa, None, &ok), "several keys"),
            (
                sign(Algorithm::RS256, &rsa, Some("e"), &ok),
                "algorithm not allowed",
            ),
            (
                sign(Algorithm::ES256, &ec, Some("d"), &ok),
                "algorithm not allowed",
            ),
        ] {
            assert_invalid(v.verify(&token), &token, reason);
        }
    }

    #[test]
    fn jwks_with_one_key_accepts_tokens_without_kid() {
        let set = jwks(vec![jwk(ED_PUBLIC, Algorithm::EdDSA, None)]);
        let v = verifier(VerifierConfig::new(KeySource::Jwks(set)));
        let ed = EncodingKey::from_ed_pem(ED_PRIVATE).expect("key");
        v.verify(&sign(Algorithm::EdDSA, &ed, None, &claims(json!({}))))
            .expect("verify");
        let token = sign(Algorithm::EdDSA, &ed, Some("x"), &claims(json!({})));
        assert_invalid(v.verify(&token), &token, "unknown key id");
    }

    #[test]
    fn jwks_alg_may_choose_another_rsa_variant() {
        let set = jwks(vec![jwk(RSA_PUBLIC, Algorithm::PS256, Some("p"))]);
        let v = verifier(VerifierConfig::new(KeySource::Jwks(set)));
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("key");
        v.verify(&sign(Algorithm::PS256, &rsa, Some("p"), &claims(json!({}))))
            .expect("PS256");
        let token = sign(Algorithm::RS256, &rsa, Some("p"), &claims(json!({})));
        assert_invalid(v.verify(&token), &token, "algorithm not allowed");
    }

    #[test]
    fn scopes_from_scope_and_scp_claims() {
        let key = EncodingKey::from_secret(SECRET);
        let v = secret_verifier();
        let scopes_of = |extra: Value| {
            let token = sign(Algorithm::HS256, &key, None, &claims(extra));
            v.verify(&token).expect("verify").scopes.to_string()
        };
        assert_eq!(
            scopes_of(json!({"scope": "openid publish:a email"})),
            "publish:a"
        );
        assert_eq!(
            scopes_of(json!({"scope": null, "scp": ["subscribe:b*", "profile", "admin"]})),
            "subscribe:b* admin"
        );
        assert_eq!(
            scopes_of(json!({"scope": null, "scp": "group:g"})),
            "group:g"
        );
        assert_eq!(
            scopes_of(json!({"scope": "publish:a", "scp": ["group:*"]})),
            "publish:a group:*"
        );
        assert_eq!(scopes_of(json!({"scope": null})), "");
        let token = sign(Algorithm::HS256, &key, None, &claims(json!({"scope": 7})));
        assert_invalid(v.verify(&token), &token, "malformed");
    }
}
