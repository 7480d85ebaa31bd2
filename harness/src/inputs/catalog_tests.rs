//! The catalog's unit tests.

use super::*;

fn by_url(url: &str) -> KernelEntry {
    KernelEntry {
        id: KernelId::new("k"),
        version: "5.15".into(),
        description: String::new(),
        stands_in_for: None,
        checksums: None,
        aliases: Vec::new(),
        source: Source::Kernel(KernelSource::PackageUrls {
            urls: vec![url.into()],
        }),
    }
}

#[test]
fn a_by_url_kernel_names_its_build() {
    assert_eq!(
        by_url("http://a/pool/main/l/linux/linux-image-unsigned-5.15.0-204-generic_5.15.0-204.214_amd64.deb").release_hint(),
        "5.15.0-204-generic"
    );
    assert_eq!(
        by_url("http://v/Packages/kernel-3.10.0-1160.el7.x86_64.rpm").release_hint(),
        "3.10.0-1160.el7"
    );
    assert_eq!(by_url("http://x/odd.deb").release_hint(), "5.15");
}

#[test]
fn an_alias_names_its_kernel_and_moves_no_cell_id() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../images");
    let mut catalog = Catalog::load(&root).unwrap();
    let ids = catalog
        .kernel_ids_from(&["ubuntu-22.04-day-one".into(), "ubuntu-22.04-newest".into()])
        .unwrap();
    assert_eq!(
        ids,
        [
            KernelId::new("ubuntu-22.04"),
            KernelId::new("ubuntu-22.04-ga")
        ]
    );
    // Aliases are left out of what cell ids hash.
    let entry = serde_json::to_string(catalog.kernel(&ids[0])).unwrap();
    assert!(!entry.contains("day-one"), "{entry}");
    assert_eq!(catalog.kernel(&ids[1]).build_word(), Some("newest"));
}
