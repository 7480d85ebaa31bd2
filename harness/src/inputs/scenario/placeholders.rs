//! The words a probe's command may hold, replaced per cell by the plan.

/// The argv placeholder replaced by the guest path of the version's reproducer binary.
pub const REPRODUCER_PLACEHOLDER: &str = "{reproducer}";
/// The argv placeholder replaced by the guest path of the version's BPF object.
pub const BPF_OBJECT_PLACEHOLDER: &str = "{bpf_object}";
/// The argv word replaced by the command that runs the version's real
/// artifact (its `command`, or an image's entrypoint and cmd) as a container.
pub const SERVICE_PLACEHOLDER: &str = "{service}";
/// The argv placeholder replaced by the version's artifact file system.
pub const ARTIFACT_PLACEHOLDER: &str = "{artifact}";
/// Every placeholder a probe's command may hold.
pub const PLACEHOLDERS: [&str; 4] = [
    REPRODUCER_PLACEHOLDER,
    BPF_OBJECT_PLACEHOLDER,
    SERVICE_PLACEHOLDER,
    ARTIFACT_PLACEHOLDER,
];
/// The Debian package that brings the guest's container runtime.
pub const GUEST_RUNTIME_PACKAGE: &str = "crun";

/// A `{word}` in `arg` that is no placeholder (a typo such as `{servce}`);
/// shell `${VAR}` and JSON braces are left alone.
pub(super) fn unknown_placeholder(arg: &str) -> Option<String> {
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let word_end = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        let is_shell = open > 0 && rest.as_bytes()[open - 1] == b'$';
        if word_end > 0 && after[word_end..].starts_with('}') && !is_shell {
            let word = format!("{{{}}}", &after[..word_end]);
            if !PLACEHOLDERS.contains(&word.as_str()) {
                return Some(word);
            }
        }
        rest = after;
    }
    None
}
