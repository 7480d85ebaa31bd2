//! `kmatrix list`: scenarios, kernels and toolchains.

use crate::shared::exit;
use anyhow::Result;
use kmatrix::Project;
use kmatrix_metadata::ExitStatus;
use std::process::ExitCode;

pub fn list(project: &Project) -> Result<ExitCode> {
    let (catalog, scenarios) = project.load_selected(&[])?;
    println!("Scenarios:");
    for s in &scenarios {
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
    if catalog.kubernetes.is_some() {
        println!(
            "  {:<22} {:<6} the local Kubernetes cluster inside that kernel's QEMU guest (e.g. ubuntu-22.04+k8s)",
            "<kernel>+k8s", ""
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
    exit(ExitStatus::OK)
}
