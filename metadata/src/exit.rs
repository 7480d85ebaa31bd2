/// kmatrix's exit statuses, the same for every command.
pub struct ExitStatus;

impl ExitStatus {
    /// The command did what was asked (a run completed, whatever its verdicts).
    pub const OK: u8 = 0;
    /// `diff`: at least one regression; `merge`: conflicting duplicates;
    /// any command: an error that is not bad input (a download, a disk).
    pub const FAILED: u8 = 1;
    /// Bad input: a scenario, catalog, lock or results file, or an option.
    /// The message names the file, the line and the fix.
    pub const BAD_INPUT: u8 = 2;
    /// Interrupted (Ctrl-C, SIGTERM): finished cells are kept; `--resume` continues.
    pub const INTERRUPTED: u8 = 130;
}
