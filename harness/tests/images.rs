//! Images from real sources: a reference registry (Debian's
//! `docker-registry`) on 127.0.0.1 filled with skopeo, a `docker save`
//! archive and an OCI layout made the same way — all pulled through the
//! code that pulls from Docker Hub. Layers are cached by digest, verified
//! by sha256, flattened into an ext4 file system; the manifest digest is
//! pinned in the lock; what is out of reach is `unavailable`, quickly.

mod common;

use common::{LocalRegistry, TempProject};
use kmatrix::events::Events;
use kmatrix::provision::Provisioner;
use kmatrix::sources::cache::Cache;
use kmatrix::sources::oci::build::{write_layout, ImageSpec};
use kmatrix::sources::oci::source::ImageError;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn skopeo(args: &[&str]) {
    let output = Command::new("skopeo")
        .args(args)
        .output()
        .expect("Debian's skopeo (scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Copies the layout's `v1` image into the registry as `name`; its reference.
fn push(registry: &LocalRegistry, layout: &Path, name: &str) -> String {
    let reference = registry.reference(name);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{reference}"),
    ]);
    reference
}

/// A small root filesystem and its OCI layout (tag `v1`).
fn layout(dir: &Path, architecture: Option<&str>) -> PathBuf {
    layout_saying(dir, architecture, "hello from the image\n")
}

/// The same, with `hello` as /etc/hello (another image, another digest).
fn layout_saying(dir: &Path, architecture: Option<&str>, hello: &str) -> PathBuf {
    let root = dir.join("rootfs");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("etc/hello"), hello).unwrap();
    fs::copy("/bin/true", root.join("usr/bin/true")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    let layout = dir.join("layout");
    write_layout(
        &root,
        &ImageSpec {
            entrypoint: vec!["/usr/bin/true".into()],
            cmd: vec!["--version".into()],
            env: vec!["PATH=/usr/bin".into()],
            working_dir: Some("/".into()),
            architecture: architecture.map(str::to_string),
            uncompressed: false,
        },
        &layout,
        "v1",
    )
    .unwrap();
    layout
}

/// `cat PATH` inside an ext4 image, with debugfs (no mount needed).
fn read_in_ext4(image: &Path, path: &str) -> String {
    let output = Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(image)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn provision(
    project: &TempProject,
    cache: &Path,
    reference: &str,
) -> (
    anyhow::Result<kmatrix::provision::ImageArtifact>,
    kmatrix_metadata::CacheStats,
) {
    let catalog = project.catalog();
    let cache = Cache::open(cache).unwrap();
    let provisioner = Provisioner::new(&cache, &catalog, false, Events::none()).unwrap();
    let image = provisioner.image(reference);
    (image, cache.stats())
}

fn unavailable(result: anyhow::Result<kmatrix::provision::ImageArtifact>) -> String {
    let error = result.expect_err("the image is out of reach");
    match error.downcast_ref::<ImageError>() {
        Some(ImageError::Unavailable(why)) => why.clone(),
        other => panic!("expected unavailable, got {other:?}: {error:#}"),
    }
}

#[test]
fn a_registry_image_is_pulled_pinned_cached_and_verified() {
    let registry = LocalRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let reference = push(&registry, &layout(dir.path(), None), "kmatrix/hello:v1");
    let project = TempProject::new();
    let cache = dir.path().join("cache");

    let (image, stats) = provision(&project, &cache, &reference);
    let image = image.unwrap();
    assert!(image.digest.starts_with("sha256:"));
    assert_eq!(image.entrypoint, ["/usr/bin/true"]);
    assert_eq!(
        read_in_ext4(&image.disk, "/etc/hello"),
        "hello from the image\n"
    );
    assert!(stats.made >= 2, "a layer and a file system: {stats:?}");
    let lock = fs::read_to_string(project.root().join("images/kmatrix.lock")).unwrap();
    assert!(
        lock.contains(&format!("image:{reference}")) && lock.contains(&image.digest),
        "{lock}"
    );

    // A second time nothing is downloaded: the registry is gone, the pin and
    // the cache answer.
    drop(registry);
    let (again, stats) = provision(&project, &cache, &reference);
    assert_eq!(again.unwrap().digest, image.digest);
    assert_eq!(stats.made, 0, "{stats:?}");
}

/// A tag moved in the registry after it was pinned: kmatrix fetches the
/// pinned manifest by digest, never the tag's new image, and the lock stays.
#[test]
fn a_moved_tag_still_gives_the_pinned_image() {
    let registry = LocalRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let reference = push(&registry, &layout(dir.path(), None), "kmatrix/moving:v1");
    let project = TempProject::new();
    let (image, _) = provision(&project, &dir.path().join("cache"), &reference);
    let pinned = image.unwrap().digest;
    let lock_path = project.root().join("images/kmatrix.lock");
    let lock = fs::read(&lock_path).unwrap();

    let other = dir.path().join("other");
    fs::create_dir_all(&other).unwrap();
    let moved = push(
        &registry,
        &layout_saying(&other, None, "the tag moved\n"),
        "kmatrix/moving:v1",
    );
    assert_eq!(moved, reference);
    // A fresh cache: the bytes must come from the registry again.
    let (again, stats) = provision(&project, &dir.path().join("cache2"), &reference);
    let again = again.unwrap();
    assert!(stats.made >= 2, "fetched again: {stats:?}");
    assert_eq!(again.digest, pinned, "the pinned manifest, not the tag's");
    assert_eq!(
        read_in_ext4(&again.disk, "/etc/hello"),
        "hello from the image\n"
    );
    assert_eq!(fs::read(&lock_path).unwrap(), lock, "the lock is untouched");
}

#[test]
fn a_corrupted_cached_layer_is_fetched_again() {
    let registry = LocalRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let reference = push(&registry, &layout(dir.path(), None), "kmatrix/hello:v1");
    let project = TempProject::new();
    let cache = dir.path().join("cache");
    provision(&project, &cache, &reference).0.unwrap();
    // Damage the cached layer and drop the file system made from it.
    let layers: Vec<PathBuf> = fs::read_dir(cache.join("layers"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("blob"))
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(layers.len(), 1);
    fs::write(&layers[0], b"not the layer any more").unwrap();
    fs::remove_dir_all(cache.join("images")).unwrap();
    let (image, stats) = provision(&project, &cache, &reference);
    let image = image.unwrap();
    assert_eq!(
        read_in_ext4(&image.disk, "/etc/hello"),
        "hello from the image\n"
    );
    assert_eq!(
        stats.made, 2,
        "the layer fetched again, the file system remade: {stats:?}"
    );
}

#[test]
fn archives_and_layouts_are_sources_too() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout(dir.path(), None);
    let archive = dir.path().join("hello.tar");
    skopeo(&[
        "copy",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker-archive:{}:kmatrix/hello:v1", archive.display()),
    ]);
    let project = TempProject::new();
    let cache = dir.path().join("cache");
    for reference in [
        format!("docker-archive:{}", archive.display()),
        format!("oci:{}:v1", layout.display()),
    ] {
        let (image, _) = provision(&project, &cache, &reference);
        let image = image.unwrap_or_else(|e| panic!("{reference}: {e:#}"));
        assert_eq!(
            read_in_ext4(&image.disk, "/etc/hello"),
            "hello from the image\n",
            "{reference}"
        );
        assert_eq!(image.cmd, ["--version"], "{reference}");
    }
}

#[test]
fn out_of_reach_images_are_unavailable_within_seconds() {
    let registry = LocalRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let project = TempProject::new();
    let cache = dir.path().join("cache");

    // Nothing listens on port 1.
    let why = unavailable(provision(&project, &cache, "127.0.0.1:1/kmatrix/hello:v1").0);
    assert!(why.contains("unreachable"), "{why}");

    // A tag the registry never had.
    let why = unavailable(provision(&project, &cache, &registry.reference("kmatrix/hello:nope")).0);
    assert!(why.contains("no such tag"), "{why}");

    // An image for another architecture.
    let arm = layout(&dir.path().join("arm"), Some("arm64"));
    let reference = push(&registry, &arm, "kmatrix/arm:v1");
    let why = unavailable(provision(&project, &cache, &reference).0);
    assert!(why.contains("arm64") && why.contains("x86_64"), "{why}");
}

/// A token service as the distribution spec describes it: any client gets
/// a short-lived RS256 JWT (signed with openssl) for what its scope asks.
struct TokenService {
    port: u16,
    issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenService {
    fn start(dir: &Path) -> TokenService {
        let key = dir.join("key.pem");
        let cert = dir.join("cert.pem");
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=kmatrix-test-tokens",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl (scripts/setup.sh installs it)");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = base64(&der, false);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = issued.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = [0u8; 4096];
                let n = std::io::Read::read(&mut stream, &mut request).unwrap_or(0);
                let line = String::from_utf8_lossy(&request[..n])
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let query = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .split_once('?')
                    .map(|(_, q)| q.to_string())
                    .unwrap_or_default();
                let scope = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("scope="))
                    .map(percent_decode)
                    .unwrap_or_default();
                let access: Vec<serde_json::Value> = scope
                    .split(' ')
                    .filter_map(|s| {
                        let mut parts = s.splitn(3, ':');
                        let (kind, name, _) = (parts.next()?, parts.next()?, parts.next()?);
                        Some(serde_json::json!({"type": kind, "name": name, "actions": ["pull", "push"]}))
                    })
                    .collect();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
                let claims = serde_json::json!({
                    "iss": "kmatrix-test-issuer", "sub": "", "aud": "kmatrix-test",
                    "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", counter.load(std::sync::atomic::Ordering::SeqCst)),
                    "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    base64(header.to_string().as_bytes(), true),
                    base64(claims.to_string().as_bytes(), true)
                );
                let mut signer = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(&key)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                std::io::Write::write_all(signer.stdin.as_mut().unwrap(), signing_input.as_bytes())
                    .unwrap();
                let signature = signer.wait_with_output().unwrap().stdout;
                let token = format!("{signing_input}.{}", base64(&signature, true));
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body =
                    serde_json::json!({"token": token, "access_token": token, "expires_in": 300})
                        .to_string();
                let _ = std::io::Write::write_all(
                    &mut stream,
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes(),
                );
            }
        });
        TokenService { port, issued }
    }

    fn registry_auth(&self, cert: &Path) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: kmatrix-test\n    issuer: kmatrix-test-issuer\n    rootcertbundle: {}\n",
            self.port,
            cert.display()
        )
    }
}

fn base64(bytes: &[u8], url: bool) -> String {
    use base64::Engine;
    if url {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    } else {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_registry_that_wants_a_token_gets_an_anonymous_one() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = TokenService::start(dir.path());
    let registry = LocalRegistry::start_with(&tokens.registry_auth(&dir.path().join("cert.pem")));
    // Without a token the registry refuses: auth is really on.
    let plain = ureq::get(&format!("http://127.0.0.1:{}/v2/", registry.port)).call();
    assert!(
        matches!(plain, Err(ureq::Error::StatusCode(401))),
        "the registry must ask for a token: {plain:?}"
    );
    let reference = push(&registry, &layout(dir.path(), None), "kmatrix/hello:v1");
    let before = tokens.issued.load(std::sync::atomic::Ordering::SeqCst);
    let project = TempProject::new();
    let (image, _) = provision(&project, &dir.path().join("cache"), &reference);
    let image = image.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        read_in_ext4(&image.disk, "/etc/hello"),
        "hello from the image\n"
    );
    assert!(
        tokens.issued.load(std::sync::atomic::Ordering::SeqCst) > before,
        "kmatrix asked the token service"
    );
}
