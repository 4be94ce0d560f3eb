//! Public-key verification: RS256, ES256 and EdDSA from a PEM file and from a JWKS file,
//! with keys made by the `openssl` CLI; and the HS/RS algorithm confusion.

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::support::{
    KeyPair, Server, TEST_SECRET, alg_none, assert_forbidden, assert_status, assert_unauthorized,
    claims, keys, now, public_jwk, sign, test_token, write_file,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rsa,
    Ec,
    Ed,
}

const KINDS: [Kind; 3] = [Kind::Rsa, Kind::Ec, Kind::Ed];

impl Kind {
    fn alg(self) -> Algorithm {
        match self {
            Kind::Rsa => Algorithm::RS256,
            Kind::Ec => Algorithm::ES256,
            Kind::Ed => Algorithm::EdDSA,
        }
    }

    fn kty(self) -> &'static str {
        match self {
            Kind::Rsa => "RSA",
            Kind::Ec => "EC",
            Kind::Ed => "OKP",
        }
    }

    fn kid(self) -> &'static str {
        match self {
            Kind::Rsa => "rsa-1",
            Kind::Ec => "ec-1",
            Kind::Ed => "ed-1",
        }
    }

    /// The key the server trusts, and another of the same type it does not.
    fn pairs(self) -> (&'static KeyPair, &'static KeyPair) {
        let keys = keys();
        match self {
            Kind::Rsa => (&keys.rsa, &keys.rsa_other),
            Kind::Ec => (&keys.ec, &keys.ec_other),
            Kind::Ed => (&keys.ed, &keys.ed_other),
        }
    }

    fn encoding_key(self, pair: &KeyPair) -> EncodingKey {
        match self {
            Kind::Rsa => EncodingKey::from_rsa_pem(&pair.private),
            Kind::Ec => EncodingKey::from_ec_pem(&pair.private),
            Kind::Ed => EncodingKey::from_ed_pem(&pair.private),
        }
        .unwrap_or_else(|err| panic!("{self:?} private key from openssl: {err}"))
    }

    fn trusted_key(self) -> EncodingKey {
        self.encoding_key(self.pairs().0)
    }

    fn untrusted_key(self) -> EncodingKey {
        self.encoding_key(self.pairs().1)
    }
}

/// A server verifying with the public key in `pem`, written to a file.
async fn pem_file_server(pem: &[u8]) -> Server {
    let dir = TempDir::new().expect("temp dir");
    let path = write_file(dir.path(), "public.pem", pem);
    Server::start(&["--jwt-public-key", &path]).await
}

/// A server verifying with the public key of `kind` from a PEM file.
async fn pem_server(kind: Kind) -> Server {
    pem_file_server(&kind.pairs().0.public).await
}

/// An admin token signed by `key` with `alg`, without a `kid`.
fn admin_token(alg: Algorithm, key: &EncodingKey) -> String {
    sign(alg, key, None, &claims("admin"))
}

/// Asserts that `server` lets `token` list the topics.
async fn assert_accepted(server: &Server, token: &str, what: &str) {
    assert_status(server.get("/v1/topics", token).await, 200, what).await;
}

/// Asserts that `server` refuses `token` with the SPEC's 401 (see [`assert_unauthorized`]).
async fn assert_refused(server: &Server, token: &str, what: &str) {
    assert_unauthorized(server.get("/v1/topics", token).await, Some(token), what).await;
}

async fn check_pem_kind(kind: Kind) {
    let server = pem_server(kind).await;
    let what = format!("{:?} PEM server", kind.alg());
    let key = kind.trusted_key();

    let admin = admin_token(kind.alg(), &key);
    assert_accepted(&server, &admin, &what).await;
    assert_status(server.create_topic(&admin, "pk").await, 201, &what).await;
    // A `kid` is irrelevant with a single PEM key.
    let with_kid = sign(kind.alg(), &key, Some("whatever"), &claims("admin"));
    assert_accepted(&server, &with_kid, &what).await;

    // Scopes apply as with HS256.
    let publisher = sign(kind.alg(), &key, None, &claims("publish:pk"));
    assert_status(server.publish(&publisher, "pk").await, 200, &what).await;
    assert_forbidden(server.fetch(&publisher, "pk").await, &what).await;

    let mut expired = claims("admin");
    expired["exp"] = json!(now() - 3600);
    let mut refused = vec![
        (
            "same algorithm, another key".to_owned(),
            admin_token(kind.alg(), &kind.untrusted_key()),
        ),
        ("expired".to_owned(), sign(kind.alg(), &key, None, &expired)),
        (
            "HS256 with the test secret".to_owned(),
            test_token(&claims("admin")),
        ),
        ("alg none".to_owned(), alg_none(&claims("admin"))),
    ];
    for other in KINDS.into_iter().filter(|other| *other != kind) {
        refused.push((
            format!("{:?} token", other.alg()),
            admin_token(other.alg(), &other.trusted_key()),
        ));
    }
    for (case, token) in refused {
        assert_refused(&server, &token, &format!("{what}: {case}")).await;
    }
}

#[tokio::test]
async fn rs256_token_verified_from_pem() {
    check_pem_kind(Kind::Rsa).await;
}

#[tokio::test]
async fn es256_token_verified_from_pem() {
    check_pem_kind(Kind::Ec).await;
}

#[tokio::test]
async fn eddsa_token_verified_from_pem() {
    check_pem_kind(Kind::Ed).await;
}

fn jwk(kind: Kind, kid: Option<&str>, alg: bool) -> Value {
    let mut jwk = public_jwk(kind.kty(), kind.pairs().0);
    jwk.insert("use".into(), json!("sig"));
    if let Some(kid) = kid {
        jwk.insert("kid".into(), json!(kid));
    }
    if alg {
        let name = match kind.alg() {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            _ => "EdDSA",
        };
        jwk.insert("alg".into(), json!(name));
    }
    Value::Object(jwk)
}

async fn jwks_server(keys: Vec<Value>) -> Server {
    let dir = TempDir::new().expect("temp dir");
    let jwks = json!({ "keys": keys }).to_string();
    let path = write_file(dir.path(), "jwks.json", jwks.as_bytes());
    Server::start(&["--jwks-file", &path]).await
}

#[tokio::test]
async fn jwks_file_picks_the_key_by_kid() {
    let server = jwks_server(
        KINDS
            .into_iter()
            .map(|kind| jwk(kind, Some(kind.kid()), true))
            .collect(),
    )
    .await;
    for kind in KINDS {
        let what = format!("JWKS, {:?} with kid {}", kind.alg(), kind.kid());
        let token = sign(
            kind.alg(),
            &kind.trusted_key(),
            Some(kind.kid()),
            &claims("admin"),
        );
        assert_accepted(&server, &token, &what).await;
        let name = format!("jwks-{}", kind.kid());
        assert_status(server.create_topic(&token, &name).await, 201, &what).await;

        let reader = sign(
            kind.alg(),
            &kind.trusted_key(),
            Some(kind.kid()),
            &claims(&format!("subscribe:{name}")),
        );
        assert_status(server.fetch(&reader, &name).await, 200, &what).await;
        assert_forbidden(server.publish(&reader, &name).await, &what).await;
    }

    let rsa_pem = &keys().rsa.public;
    let mut refused = vec![
        (
            "unknown kid".to_owned(),
            sign(
                Algorithm::RS256,
                &Kind::Rsa.trusted_key(),
                Some("nope"),
                &claims("admin"),
            ),
        ),
        (
            // With several keys, picking one without a kid would be a guess (documented in
            // src/auth/mod.rs).
            "no kid, several keys".to_owned(),
            admin_token(Algorithm::RS256, &Kind::Rsa.trusted_key()),
        ),
        (
            "HS256 signed with the RSA public key, kid rsa-1".to_owned(),
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(rsa_pem),
                Some("rsa-1"),
                &claims("admin"),
            ),
        ),
        (
            "HS256 with the test secret, kid rsa-1".to_owned(),
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
                Some("rsa-1"),
                &claims("admin"),
            ),
        ),
        ("alg none".to_owned(), alg_none(&claims("admin"))),
    ];
    for kind in KINDS {
        refused.push((
            format!("{:?} by another key, kid {}", kind.alg(), kind.kid()),
            sign(
                kind.alg(),
                &kind.untrusted_key(),
                Some(kind.kid()),
                &claims("admin"),
            ),
        ));
        // The right key, but a kid naming a key of another type.
        for other in KINDS.into_iter().filter(|other| *other != kind) {
            refused.push((
                format!("{:?} with kid {}", kind.alg(), other.kid()),
                sign(
                    kind.alg(),
                    &kind.trusted_key(),
                    Some(other.kid()),
                    &claims("admin"),
                ),
            ));
        }
    }
    for (case, token) in refused {
        assert_refused(&server, &token, &format!("JWKS: {case}")).await;
    }
}

#[tokio::test]
async fn jwks_with_one_key_without_kid_or_alg() {
    let server = jwks_server(vec![jwk(Kind::Ed, None, false)]).await;
    let token = admin_token(Algorithm::EdDSA, &Kind::Ed.trusted_key());
    assert_accepted(&server, &token, "EdDSA, no kid").await;
    let token = admin_token(Algorithm::EdDSA, &Kind::Ed.untrusted_key());
    assert_refused(&server, &token, "EdDSA by another key").await;
    // The alg is implied by the key type, never taken from the token.
    let token = admin_token(Algorithm::ES256, &Kind::Ec.trusted_key());
    assert_refused(&server, &token, "ES256 token").await;
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let pem = &keys().rsa.public;
    let server = pem_file_server(pem).await;

    // Control: the real RS256 token works, so refusals below are about the algorithm.
    let genuine = admin_token(Algorithm::RS256, &Kind::Rsa.trusted_key());
    assert_accepted(&server, &genuine, "RS256").await;

    let pem_text = String::from_utf8(pem.clone()).expect("PEM is text");
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("PEM file bytes", pem.clone()),
        (
            "PEM without trailing newline",
            pem_text.trim_end().as_bytes().to_vec(),
        ),
        ("DER", keys().rsa.public_der()),
    ];
    for (what, secret) in &secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = admin_token(alg, &EncodingKey::from_secret(secret));
            let context = format!("{alg:?} with the public key ({what}) as secret");
            assert_refused(&server, &token, &context).await;
        }
    }
}

#[tokio::test]
async fn rs256_from_a_pkcs1_rsa_public_key_pem() {
    let pkcs1 = super::support::openssl(
        &["rsa", "-pubin", "-RSAPublicKey_out"],
        Some(&keys().rsa.public),
    );
    assert!(
        String::from_utf8_lossy(&pkcs1).contains("-----BEGIN RSA PUBLIC KEY-----"),
        "openssl wrote PKCS#1"
    );
    let server = pem_file_server(&pkcs1).await;
    let token = admin_token(Algorithm::RS256, &Kind::Rsa.trusted_key());
    assert_accepted(&server, &token, "PKCS#1 PEM").await;
    let token = admin_token(Algorithm::RS256, &Kind::Rsa.untrusted_key());
    assert_refused(&server, &token, "PKCS#1 PEM, another key").await;
}

/// An unusable key must stop the server at startup, not make it refuse (or accept)
/// every token later.
#[tokio::test]
async fn unusable_key_files_fail_at_startup() {
    use tidegate::config::Config;
    use tidegate::startup::Application;

    let dir = TempDir::new().expect("temp dir");
    let private = write_file(dir.path(), "private.pem", &keys().rsa.private);
    let garbage = write_file(
        dir.path(),
        "garbage.pem",
        b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
    );
    let empty_jwks = write_file(dir.path(), "empty.json", br#"{"keys": []}"#);
    let only_oct = write_file(
        dir.path(),
        "oct.json",
        br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "s"}]}"#,
    );
    let not_json = write_file(dir.path(), "jwks.txt", b"keys: none");
    let missing = dir.path().join("absent.pem");
    let missing = missing.to_str().expect("utf-8");
    for (flag, path) in [
        ("--jwt-public-key", private.as_str()),
        ("--jwt-public-key", garbage.as_str()),
        ("--jwt-public-key", missing),
        ("--jwks-file", empty_jwks.as_str()),
        ("--jwks-file", only_oct.as_str()),
        ("--jwks-file", not_json.as_str()),
        ("--jwks-file", missing),
    ] {
        let data_dir = TempDir::new().expect("temp dir");
        let config = Config::from_args([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir.path().to_str().expect("utf-8"),
            flag,
            path,
        ])
        .expect("flags parse");
        let name = std::path::Path::new(path)
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or(path);
        match Application::build(&config) {
            Ok(_) => panic!("{flag} {name} should not start"),
            Err(err) => {
                let message = err.to_string();
                assert!(
                    !message.is_empty() && !message.contains('\n'),
                    "{flag} {name}: one-line error, got {message:?}"
                );
            }
        }
        // No HS secret is generated behind the configured key's back.
        assert!(
            !data_dir.path().join("jwt-secret").exists(),
            "{flag} {name}: a jwt-secret was generated"
        );
    }
}
