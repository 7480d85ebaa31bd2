//! Errors in user-written files (scenarios, catalogs), reported the way a
//! compiler would: file, line, the offending line, and how to fix it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: PathBuf,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub fix: String,
    /// The text of the offending line, when there is one.
    pub excerpt: Option<String>,
}

impl FileError {
    pub fn whole_file(path: &Path, message: impl Into<String>, fix: impl Into<String>) -> Self {
        FileError {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
            fix: fix.into(),
            excerpt: None,
        }
    }

    /// Places the error at a byte span of `source`.
    pub fn at_span(
        path: &Path,
        source: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        let mut error = Self::whole_file(path, message, fix);
        if let Some(span) = span {
            let start = span.start.min(source.len());
            let before = &source[..start];
            error.line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            error.column = before[line_start..].chars().count() + 1;
            error.excerpt = source.lines().nth(error.line - 1).map(str::to_string);
        }
        error
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            writeln!(
                f,
                "error: {}:{}:{}: {}",
                self.path.display(),
                self.line,
                self.column,
                self.message
            )?;
        } else {
            writeln!(f, "error: {}: {}", self.path.display(), self.message)?;
        }
        if let Some(excerpt) = &self.excerpt {
            writeln!(f, "  {:>4} | {}", self.line, excerpt)?;
            writeln!(f, "       | {}^", " ".repeat(self.column.saturating_sub(1)))?;
        }
        write!(f, "  fix: {}", self.fix)
    }
}

impl std::error::Error for FileError {}

/// Parses TOML into `T`, turning syntax and shape errors into a [`FileError`].
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    source: &str,
    fix: &str,
) -> Result<T, FileError> {
    toml::from_str(source).map_err(|e| {
        FileError::at_span(path, source, e.span(), e.message().trim().to_string(), fix)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_maps_to_line_column_and_excerpt() {
        let source = "a = 1\nbb = \"x\"\n";
        let error = FileError::at_span(
            Path::new("f.toml"),
            source,
            Some(11..14),
            "bad value",
            "write a number",
        );
        assert_eq!((error.line, error.column), (2, 6));
        assert_eq!(error.excerpt.as_deref(), Some("bb = \"x\""));
        let text = error.to_string();
        assert!(text.starts_with("error: f.toml:2:6: bad value"), "{text}");
        assert!(text.contains("fix: write a number"), "{text}");
    }

    #[test]
    fn toml_syntax_error_names_the_line() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            a: u32,
        }
        let error =
            parse_toml::<T>(Path::new("x.toml"), "\n\na = = 3\n", "check the syntax").unwrap_err();
        assert_eq!(error.line, 3);
    }
}
