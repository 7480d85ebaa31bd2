//! Registry auth parsing and blob verification.

use super::*;
use crate::sources::oci::auth::parse_challenge;

#[test]
fn bearer_challenges_parse() {
    let params = parse_challenge(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/caddy:pull""#,
    )
    .unwrap();
    assert_eq!(params["realm"], "https://auth.docker.io/token");
    assert_eq!(params["scope"], "repository:library/caddy:pull");
    assert!(parse_challenge("Basic realm=\"x\"").is_none());
    assert_eq!(
        percent_encode("repository:a/b:pull"),
        "repository%3Aa%2Fb%3Apull"
    );
}

#[test]
fn a_blob_with_the_wrong_bytes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob");
    let good = format!("sha256:{}", hex::encode(Sha256::digest(b"layer")));
    copy_verified(&mut &b"layer"[..], &dest, &good).unwrap();
    let error = copy_verified(&mut &b"other"[..], &dest, &good).unwrap_err();
    assert!(matches!(error, ImageError::Damaged(_)), "{error}");
    assert!(!dest.exists());
}
