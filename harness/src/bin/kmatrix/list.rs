//! `kmatrix list`: scenarios, kernels and toolchains.

use crate::shared::exit;
use anyhow::Result;
use kmatrix::Project;
use kmatrix_metadata::ExitStatus;
use std::process::ExitCode;

pub fn list(project: &Project) -> Result<ExitCode> {
    let catalog = project.catalog()?;
    let loaded = kmatrix::inputs::scenario::load_each(&project.scenarios_dir, &catalog, |_| true)?;
    let (scenarios, broken): (Vec<_>, Vec<_>) = loaded.into_iter().partition(Result::is_ok);
    println!("Scenarios:");
    for s in scenarios.iter().flatten() {
        let versions: Vec<&str> = s.versions.iter().map(|v| v.id.as_str()).collect();
        let variants: Vec<&str> = s.variants.iter().map(|v| v.id.as_str()).collect();
        let kernels: Vec<&str> = s.kernels.iter().map(|k| k.as_str()).collect();
        println!("  {:<22} {}", s.id.as_str(), s.title);
        println!(
            "  {:<22} versions: {}; variants: {}; kernels: {}",
            "",
            versions.join(", "),
            variants.join(", "),
            kernels.join(", ")
        );
    }
    println!("\nKernels (images/kernels.toml):");
    for id in catalog.kernel_ids() {
        let k = &catalog.kernels[id];
        println!("  {:<22} {:<6} {}", k.id.as_str(), k.version, k.description);
    }
    if let Some(kubernetes) = &catalog.kubernetes {
        println!(
            "  {:<22} {:<6} the local Kubernetes cluster inside that kernel's QEMU guest (e.g. ubuntu-22.04+k8s)",
            "<kernel>+k8s", ""
        );
        println!(
            "\nKubernetes releases (images/kubernetes.toml; --kubernetes RELEASE, the first is the default):\n  {}",
            kubernetes.release_versions().join(", ")
        );
    }
    println!("\nToolchains (images/toolchains.toml):");
    for t in catalog.toolchains.values() {
        println!(
            "  {:<22} Go {:<5} Debian {} ({})",
            t.id,
            t.version,
            t.suite,
            t.packages.join(", ")
        );
    }
    // The broken ones last, where the eye lands; bad input, as everywhere.
    for error in broken.iter().filter_map(|r| r.as_ref().err()) {
        eprintln!("{error}");
    }
    exit(if broken.is_empty() {
        ExitStatus::OK
    } else {
        ExitStatus::BAD_INPUT
    })
}
