//! Validating a scenario file against the catalog and the folder it sits
//! in: every mistake a run would meet late is found here, with the file,
//! line, column and fix.

use super::*;

pub(super) struct Validator<'a> {
    pub(super) path: &'a Path,
    pub(super) source: &'a str,
    pub(super) folder: &'a Path,
    pub(super) catalog: &'a Catalog,
}

impl Validator<'_> {
    pub(super) fn error(
        &self,
        span: std::ops::Range<usize>,
        message: String,
        fix: String,
    ) -> FileError {
        FileError::at_span(self.path, self.source, Some(span), message, fix)
    }

    pub(super) fn validate(&self, file: ScenarioFile) -> Result<Scenario, FileError> {
        let meta = file.scenario;
        let folder_name = self
            .folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if *meta.id.get_ref() != folder_name {
            return Err(self.error(
                meta.id.span(),
                format!(
                    "scenario id `{}` differs from its folder `{folder_name}`",
                    meta.id.get_ref()
                ),
                format!("set id = \"{folder_name}\" or rename the folder"),
            ));
        }
        let issue = meta.issue.get_ref();
        if !(issue.starts_with("https://") || issue.starts_with("http://")) {
            return Err(self.error(
                meta.issue.span(),
                format!("issue `{issue}` is not a link"),
                "give the upstream issue's URL, e.g. issue = \"https://github.com/ORG/REPO/issues/123\"".into(),
            ));
        }
        let known = self.catalog.kernel_ids().join(", ");
        let mut kernels = Vec::new();
        for kernel in &meta.kernels {
            match self
                .catalog
                .kernels
                .get_key_value(kernel.get_ref().as_str())
            {
                Some((id, _)) => kernels.push(id.clone()),
                None => {
                    return Err(self.error(
                        kernel.span(),
                        format!("unknown kernel id `{}`", kernel.get_ref()),
                        format!("use one of: {known} (see images/kernels.toml)"),
                    ))
                }
            }
        }

        let reproducer_dir = match &file.reproducer {
            Some(reproducer) => Some(self.reproducer_dir(reproducer)?),
            None => None,
        };
        let versions = self.versions(file.version, file.reproducer.as_ref())?;
        let variants = self.variants(file.variant, &versions)?;
        let probes = self.probes(file.probe, reproducer_dir.is_some())?;
        self.service_needs(&probes, file.guest.as_ref(), &versions)?;
        let signatures = self.signatures(file.signature)?;
        let kubernetes = match file.kubernetes {
            Some(spec) => Some(self.kubernetes(spec, reproducer_dir.is_some(), &signatures)?),
            None => None,
        };
        Ok(Scenario {
            id: ScenarioId::new(folder_name),
            dir: self.folder.to_path_buf(),
            component: meta.component,
            title: meta.title,
            issue: meta.issue.into_inner(),
            summary: meta.summary,
            kernels,
            references: meta.references,
            modules: meta.modules,
            reproducer_dir,
            go_packages: file.reproducer.and_then(|r| r.go_packages),
            guest: file.guest,
            versions,
            variants,
            probes,
            signatures,
            kubernetes,
        })
    }

    /// The reproducer's folder, checked: Go, and a main package there.
    pub(super) fn reproducer_dir(&self, reproducer: &ReproducerSpec) -> Result<PathBuf, FileError> {
        let language = &reproducer.language;
        if language.get_ref() != "go" {
            return Err(self.error(
                language.span(),
                format!("unsupported reproducer language `{}`", language.get_ref()),
                "write the reproducer in Go and set language = \"go\"".into(),
            ));
        }
        let reproducer_dir = self.folder.join(reproducer.source.get_ref());
        let has_go = holds_go_files(&reproducer_dir);
        if !has_go {
            return Err(self.error(
                reproducer.source.span(),
                format!(
                    "reproducer folder {} is missing or holds no .go file",
                    reproducer_dir.display()
                ),
                "put the reproducer's main package in that folder, or point source at it".into(),
            ));
        }
        Ok(reproducer_dir)
    }

    pub(super) fn unique(
        &self,
        seen: &mut BTreeSet<String>,
        id: &Spanned<String>,
    ) -> Result<(), FileError> {
        if !seen.insert(id.get_ref().clone()) {
            return Err(self.error(
                id.span(),
                format!("id `{}` is used twice", id.get_ref()),
                "give each entry its own id".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn variants(
        &self,
        specs: Vec<VariantSpec>,
        versions: &[Version],
    ) -> Result<Vec<Variant>, FileError> {
        let mut seen = BTreeSet::new();
        for spec in &specs {
            self.unique(&mut seen, &spec.id)?;
            let unknown = spec
                .versions
                .get_ref()
                .iter()
                .find(|id| !versions.iter().any(|v| &v.id == *id));
            if let Some(unknown) = unknown {
                return Err(self.error(
                    spec.versions.span(),
                    format!(
                        "variant `{}` names version `{unknown}`, which this file does not define",
                        spec.id.get_ref()
                    ),
                    "name [[version]] ids of this file, or leave `versions` out (every version)"
                        .into(),
                ));
            }
        }
        if !seen.contains(BASELINE_VARIANT) {
            return Err(FileError::whole_file(
                self.path,
                "no `baseline` variant",
                "add [[variant]] id = \"baseline\" (the component as shipped, no workaround)",
            ));
        }
        Ok(specs
            .into_iter()
            .map(|spec| Variant {
                id: spec.id.into_inner(),
                description: spec.description,
                env: spec.env,
                kernel_args: spec.kernel_args,
                kube_proxy: spec.kube_proxy,
                versions: spec.versions.into_inner(),
            })
            .collect())
    }

    pub(super) fn probes(
        &self,
        specs: Vec<ProbeSpec>,
        has_reproducer: bool,
    ) -> Result<Vec<Probe>, FileError> {
        let mut seen = BTreeSet::new();
        let mut probes = Vec::new();
        for spec in specs {
            self.unique(&mut seen, &spec.id)?;
            if !has_reproducer
                && spec
                    .run
                    .get_ref()
                    .iter()
                    .any(|a| a.contains(REPRODUCER_PLACEHOLDER))
            {
                return Err(self.error(
                    spec.run.span(),
                    format!("probe `{}` runs {REPRODUCER_PLACEHOLDER}, but the scenario has no [reproducer]", spec.id.get_ref()),
                    "add a [reproducer], or run {service} or {artifact}".into(),
                ));
            }
            if let Some(unknown) = spec
                .run
                .get_ref()
                .iter()
                .find_map(|a| unknown_placeholder(a))
            {
                return Err(self.error(
                    spec.run.span(),
                    format!(
                        "probe `{}`: unknown placeholder `{unknown}`",
                        spec.id.get_ref()
                    ),
                    format!("use one of {}", PLACEHOLDERS.join(", ")),
                ));
            }
            if spec.run.get_ref().is_empty() {
                return Err(self.error(
                    spec.run.span(),
                    "probe has an empty command".into(),
                    format!("start run with \"{REPRODUCER_PLACEHOLDER}\" and its arguments"),
                ));
            }
            if *spec.timeout_secs.get_ref() == 0 {
                return Err(self.error(
                    spec.timeout_secs.span(),
                    "timeout_secs is 0".into(),
                    "give the probe a deadline of at least 1 second".into(),
                ));
            }
            let pass_stdout = spec.pass_stdout.map(|p| self.regex(&p)).transpose()?;
            probes.push(Probe {
                id: spec.id.into_inner(),
                run: spec.run.into_inner(),
                timeout_secs: spec.timeout_secs.into_inner(),
                env: spec.env,
                pass_exit_code: spec.pass_exit_code,
                pass_stdout,
                unavailable_exit_code: spec.unavailable_exit_code,
                needed: spec.needed,
            });
        }
        Ok(probes)
    }

    /// `{service}` runs each version's artifact with the guest's container
    /// runtime: a scenario that says it needs a [guest] bringing that
    /// runtime and versions that have an artifact, or every cell would be
    /// an infra-error at run time.
    pub(super) fn service_needs(
        &self,
        probes: &[Probe],
        guest: Option<&GuestSpec>,
        versions: &[Version],
    ) -> Result<(), FileError> {
        let Some(probe) = probes
            .iter()
            .find(|p| p.run.iter().any(|a| a == SERVICE_PLACEHOLDER))
        else {
            return Ok(());
        };
        let runtime = GUEST_RUNTIME_PACKAGE;
        if !guest.is_some_and(|g| g.packages.iter().any(|p| p == runtime)) {
            return Err(self.error(
                self.span_of(&format!("\"{SERVICE_PLACEHOLDER}\"")),
                format!(
                    "probe `{}` runs {SERVICE_PLACEHOLDER}, but no [guest] brings a container runtime",
                    probe.id
                ),
                format!("add [guest] with suite = \"bookworm\" and packages = [\"{runtime}\"]"),
            ));
        }
        if let Some(version) = versions
            .iter()
            .find(|v| v.artifact.is_none() && !v.only_on_clusters)
        {
            return Err(self.error(
                self.span_of(&format!("\"{}\"", version.id)),
                format!(
                    "probe `{}` runs {SERVICE_PLACEHOLDER}, but version `{}` has no artifact to run",
                    probe.id, version.id
                ),
                "give the version a debian_package, image, binary or module (and its command)".into(),
            ));
        }
        Ok(())
    }

    /// Where `needle` first appears in the file (the whole file if nowhere).
    pub(super) fn span_of(&self, needle: &str) -> std::ops::Range<usize> {
        self.source
            .find(needle)
            .map_or(0..0, |at| at..at + needle.len())
    }

    pub(super) fn signatures(
        &self,
        specs: Vec<SignatureSpec>,
    ) -> Result<Vec<Signature>, FileError> {
        let mut seen = BTreeSet::new();
        let mut signatures = Vec::new();
        for spec in specs {
            self.unique(&mut seen, &spec.id)?;
            let verdict = match spec.verdict.get_ref().as_str() {
                "fail" => SignatureVerdict::Fail,
                "crash" => SignatureVerdict::Crash,
                "infra-error" => SignatureVerdict::InfraError,
                other => {
                    return Err(self.error(
                        spec.verdict.span(),
                        format!("unknown signature verdict `{other}`"),
                        "use \"fail\", \"crash\" or \"infra-error\"".into(),
                    ))
                }
            };
            signatures.push(Signature {
                id: spec.id.into_inner(),
                verdict,
                pattern: self.regex(&spec.pattern)?,
            });
        }
        Ok(signatures)
    }

    pub(super) fn regex(&self, pattern: &Spanned<String>) -> Result<Regex, FileError> {
        Regex::new(pattern.get_ref()).map_err(|e| {
            self.error(
                pattern.span(),
                format!("invalid regular expression: {e}"),
                "fix the pattern (Rust regex syntax; escape literal dots and brackets)".into(),
            )
        })
    }
}

/// Whether `dir` holds Go sources (a reproducer or harness to build).
pub(super) fn holds_go_files(dir: &Path) -> bool {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "go"))
        })
        .unwrap_or(false)
}
