//! Shared helpers: minting tokens, in-process servers with any auth flags, the 401 checks,
//! and `openssl` key generation.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use tempfile::TempDir;
use tidegate::config::Config;
use tidegate::startup::Application;
use tokio_util::sync::CancellationToken;

pub use crate::harness::TEST_SECRET;

/// Issuer and audience of the servers started with [`Server::start_with_iss_aud`].
pub const ISSUER: &str = "https://issuer.tidegate.test";
pub const AUDIENCE: &str = "tidegate-it";

// ---------------------------------------------------------------------------------------
// Tokens

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Unpadded base64url (RFC 4648 §5), as JWTs use.
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Claims valid for an hour with `scope`, no `iss`/`aud`.
pub fn claims(scope: &str) -> Value {
    let now = now();
    json!({"sub": "it-user", "scope": scope, "iat": now, "exp": now + 3600})
}

/// [`claims`] plus the `iss` and `aud` that [`Server::start_with_iss_aud`] requires.
pub fn claims_iss_aud(scope: &str) -> Value {
    let mut claims = claims(scope);
    claims["iss"] = json!(ISSUER);
    claims["aud"] = json!(AUDIENCE);
    claims
}

pub fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign test token")
}

/// An HS256 token with `secret`.
pub fn hs256(secret: &[u8], claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(secret),
        None,
        claims,
    )
}

/// An HS256 token with [`TEST_SECRET`].
pub fn test_token(claims: &Value) -> String {
    hs256(TEST_SECRET.as_bytes(), claims)
}

/// An unsigned token: header `{"alg":"none","typ":"JWT"}`, the claims, an empty signature.
pub fn alg_none(claims: &Value) -> String {
    alg_none_with_header(r#"{"alg":"none","typ":"JWT"}"#, claims)
}

pub fn alg_none_with_header(header: &str, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64url(header.as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

// ---------------------------------------------------------------------------------------
// In-process servers

/// A server in this process with exactly the auth flags given (the harness always adds
/// `--jwt-secret`, which conflicts with `--jwt-public-key` and `--jwks-file`).
pub struct Server {
    pub base_url: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    _data_dir: TempDir,
}

impl Server {
    pub async fn start(auth_args: &[&str]) -> Server {
        let data_dir = TempDir::new().expect("temp dir");
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir.path().to_str().expect("utf-8 temp path"),
            "--workers",
            "2",
        ];
        args.extend_from_slice(auth_args);
        let config = Config::from_args(&args)
            .unwrap_or_else(|err| panic!("config {args:?} should parse: {err}"));
        let app = Application::build(&config)
            .unwrap_or_else(|err| panic!("server with {args:?} should start: {err}"));
        let base_url = format!("http://{}", app.local_addr());
        let shutdown = app.shutdown_token();
        tokio::spawn(app.run());
        Server {
            base_url,
            client: reqwest::Client::new(),
            shutdown,
            _data_dir: data_dir,
        }
    }

    /// Verifies with [`TEST_SECRET`].
    pub async fn start_hs() -> Server {
        Server::start(&["--jwt-secret", TEST_SECRET]).await
    }

    /// Verifies with [`TEST_SECRET`] and requires [`ISSUER`] and [`AUDIENCE`].
    pub async fn start_with_iss_aud() -> Server {
        Server::start(&[
            "--jwt-secret",
            TEST_SECRET,
            "--jwt-issuer",
            ISSUER,
            "--jwt-audience",
            AUDIENCE,
        ])
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// A request with `Authorization: Bearer <token>` when a token is given.
    pub fn req(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn send(&self, method: Method, path: &str, token: &str) -> Response {
        self.req(method.clone(), path, Some(token))
            .send()
            .await
            .unwrap_or_else(|err| panic!("{method} {path}: {err}"))
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.send(Method::GET, path, token).await
    }

    pub async fn create_topic(&self, admin: &str, name: &str) -> Response {
        self.req(Method::POST, "/v1/topics", Some(admin))
            .json(&json!({"name": name, "partitions": 1}))
            .send()
            .await
            .expect("create topic")
    }

    pub async fn publish(&self, token: &str, topic: &str) -> Response {
        self.req(
            Method::POST,
            &format!("/v1/topics/{topic}/records"),
            Some(token),
        )
        .json(&json!({"records": [{"value": {"n": 1}}]}))
        .send()
        .await
        .expect("publish")
    }

    pub async fn fetch(&self, token: &str, topic: &str) -> Response {
        self.get(
            &format!("/v1/topics/{topic}/partitions/0/records?offset=0"),
            token,
        )
        .await
    }

    /// Names from `GET /v1/topics`, sorted; asserts 200.
    pub async fn list_names(&self, token: &str) -> Vec<String> {
        let response = self.get("/v1/topics", token).await;
        assert_eq!(response.status(), 200, "listing topics");
        topic_names(&crate::harness::json_body(response).await)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Sorted names of a `GET /v1/topics` body.
pub fn topic_names(body: &Value) -> Vec<String> {
    let mut names: Vec<String> = body["topics"]
        .as_array()
        .unwrap_or_else(|| panic!("topics array in {body}"))
        .iter()
        .map(|topic| {
            topic["name"]
                .as_str()
                .unwrap_or_else(|| panic!("topic name in {body}"))
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------
// Checking refusals

/// Checks a 401 as the SPEC wants it: `WWW-Authenticate: Bearer…`, the error shape, and no
/// echo of the token. `Err` carries a description of what is wrong.
pub async fn check_unauthorized(response: Response, token: Option<&str>) -> Result<(), String> {
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .map(|value| value.to_str().unwrap_or("<not ASCII>").to_owned());
    let body = response.text().await.unwrap_or_default();
    if status != 401 {
        return Err(format!("status {status}, expected 401; body {body}"));
    }
    match &challenge {
        Some(value) if value.starts_with("Bearer") => {}
        other => return Err(format!("WWW-Authenticate {other:?}, expected `Bearer…`")),
    }
    check_error_shape(&body)?;
    if let Some(token) = token.filter(|token| token.len() > 8)
        && body.contains(token)
    {
        return Err(format!("the 401 body echoes the token: {body}"));
    }
    Ok(())
}

pub async fn assert_unauthorized(response: Response, token: Option<&str>, context: &str) {
    if let Err(problem) = check_unauthorized(response, token).await {
        panic!("{context}: {problem}");
    }
}

/// Checks a 403 with the SPEC's error shape.
pub async fn check_forbidden(response: Response) -> Result<(), String> {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if status != 403 {
        return Err(format!("status {status}, expected 403; body {body}"));
    }
    check_error_shape(&body)
}

pub async fn assert_forbidden(response: Response, context: &str) {
    if let Err(problem) = check_forbidden(response).await {
        panic!("{context}: {problem}");
    }
}

pub async fn assert_status(response: Response, status: u16, context: &str) {
    let actual = response.status().as_u16();
    if actual != status {
        let body = response.text().await.unwrap_or_default();
        panic!("{context}: status {actual}, expected {status}; body {body}");
    }
}

/// `{"error": {"code": "snake_case", "message": "non-empty"}}`.
pub fn check_error_shape(body: &str) -> Result<(), String> {
    let value: Value =
        serde_json::from_str(body).map_err(|err| format!("body is not JSON ({err}): {body}"))?;
    let code = value["error"]["code"].as_str().unwrap_or_default();
    let snake_case = !code.is_empty()
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !snake_case {
        return Err(format!("error.code is not a snake_case string in {body}"));
    }
    if value["error"]["message"]
        .as_str()
        .is_none_or(|message| message.is_empty())
    {
        return Err(format!("error.message is not a non-empty string in {body}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Keys from the openssl CLI

/// Runs `openssl <args>` with `input` on stdin; returns stdout, panics on failure.
pub fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl (is /usr/bin/openssl installed?)");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write to openssl");
    }
    let output = child.wait_with_output().expect("openssl output");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A private key (PKCS#8 PEM) and its public key (SPKI PEM).
pub struct KeyPair {
    pub private: Vec<u8>,
    pub public: Vec<u8>,
}

impl KeyPair {
    fn generate(genpkey_args: &[&str]) -> KeyPair {
        let mut args = vec!["genpkey"];
        args.extend_from_slice(genpkey_args);
        let private = openssl(&args, None);
        let public = openssl(&["pkey", "-pubout"], Some(&private));
        KeyPair { private, public }
    }

    /// The public key as DER (SubjectPublicKeyInfo).
    pub fn public_der(&self) -> Vec<u8> {
        openssl(&["pkey", "-pubin", "-outform", "DER"], Some(&self.public))
    }
}

/// Two keys of each type, so "right type, wrong key" can be tested.
pub struct TestKeys {
    pub rsa: KeyPair,
    pub rsa_other: KeyPair,
    pub ec: KeyPair,
    pub ec_other: KeyPair,
    pub ed: KeyPair,
    pub ed_other: KeyPair,
}

/// Generated once per test binary (RSA key generation takes a while), in parallel.
pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        const RSA: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
        const EC: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
        const ED: &[&str] = &["-algorithm", "ED25519"];
        std::thread::scope(|scope| {
            let spawn = |args: &'static [&'static str]| scope.spawn(|| KeyPair::generate(args));
            let handles = [
                spawn(RSA),
                spawn(RSA),
                spawn(EC),
                spawn(EC),
                spawn(ED),
                spawn(ED),
            ];
            let [rsa, rsa_other, ec, ec_other, ed, ed_other] =
                handles.map(|handle| handle.join().expect("key generation"));
            TestKeys {
                rsa,
                rsa_other,
                ec,
                ec_other,
                ed,
                ed_other,
            }
        })
    })
}

fn hex_decode(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd hex length: {hex}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// The public JWK of `pair` (no `kid`/`alg`/`use`), from openssl's view of the key:
/// RSA `n`/`e` from `openssl rsa -modulus/-text`, EC `x`/`y` and OKP `x` from the DER.
pub fn public_jwk(kty: &str, pair: &KeyPair) -> serde_json::Map<String, Value> {
    let jwk = match kty {
        "RSA" => {
            let modulus = String::from_utf8(openssl(
                &["rsa", "-pubin", "-noout", "-modulus"],
                Some(&pair.public),
            ))
            .expect("utf-8");
            let n = hex_decode(
                modulus
                    .trim()
                    .strip_prefix("Modulus=")
                    .expect("Modulus= line"),
            );
            let text = String::from_utf8(openssl(
                &["rsa", "-pubin", "-noout", "-text"],
                Some(&pair.public),
            ))
            .expect("utf-8");
            let exponent: u64 = text
                .lines()
                .find_map(|line| line.trim().strip_prefix("Exponent: "))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|digits| digits.parse().ok())
                .unwrap_or_else(|| panic!("no exponent in {text}"));
            let e: Vec<u8> = exponent
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            json!({"kty": "RSA", "n": b64url(&n), "e": b64url(&e)})
        }
        "EC" => {
            // SEQUENCE { AlgorithmIdentifier(ecPublicKey, P-256), BIT STRING 04‖X‖Y }
            let der = pair.public_der();
            assert_eq!(der.len(), 91, "P-256 SPKI length");
            assert_eq!(der[26], 0x04, "uncompressed point");
            json!({"kty": "EC", "crv": "P-256", "x": b64url(&der[27..59]), "y": b64url(&der[59..91])})
        }
        "OKP" => {
            let der = pair.public_der();
            assert_eq!(der.len(), 44, "Ed25519 SPKI length");
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(&der[12..])})
        }
        other => panic!("unknown kty {other}"),
    };
    match jwk {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

/// Writes `contents` to `dir/name` and returns the path as a string.
pub fn write_file(dir: &Path, name: &str, contents: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write file");
    path.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn b64url_matches_rfc_4648_vectors() {
    for (input, expected) in [
        ("", ""),
        ("f", "Zg"),
        ("fo", "Zm8"),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg"),
        ("fooba", "Zm9vYmE"),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(b64url(input.as_bytes()), expected, "{input:?}");
    }
    // The URL-safe alphabet: 0xfb 0xff → "-_8" (standard base64 would be "+/8").
    assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
}
