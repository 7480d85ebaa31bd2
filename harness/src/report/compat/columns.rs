//! The docs table's columns: a kernel column is dropped when no row could
//! run there (it is named below the table instead), and neighbouring
//! columns whose every row reads the same fold into one range column, so
//! a reader sees "works on every kernel from 4.4 to 7.0" at a glance.

use crate::inputs::Catalog;

/// What one table cell says, compared to fold columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellText {
    pub text: String,
    /// The signature behind the footnote, if any.
    pub note: Option<String>,
    pub unavailable: bool,
}

/// One column of the rendered table: one kernel, or a run of neighbours
/// that read the same on every row.
#[derive(Debug, Clone)]
pub struct Column {
    /// Catalog ids, oldest first.
    pub kernels: Vec<String>,
    /// Releases the guests reported, aligned with `kernels`.
    pub releases: Vec<Option<String>>,
    /// One entry per table row.
    pub cells: Vec<Option<CellText>>,
}

impl Column {
    pub fn head(&self, catalog: &Catalog) -> String {
        let first = &self.kernels[0];
        let last = self.kernels.last().expect("a column has a kernel");
        let release = |at: usize| {
            self.releases[at]
                .as_ref()
                .map(|r| format!("`{r}`"))
                .unwrap_or_else(|| "—".into())
        };
        if self.kernels.len() == 1 {
            let named = distribution(catalog, first);
            return if named == *first {
                format!("{first}<br>{}", release(0))
            } else {
                format!("{named}<br>{}<br>{first}", release(0))
            };
        }
        format!(
            "{} … {}<br>{} … {}<br>{} kernels",
            distribution(catalog, first),
            distribution(catalog, last),
            release(0),
            release(self.kernels.len() - 1),
            self.kernels.len()
        )
    }

    fn all_unavailable(&self) -> bool {
        self.cells
            .iter()
            .all(|c| c.as_ref().is_none_or(|c| c.unavailable))
    }
}

/// The columns to draw, and those dropped because nothing could run there.
pub fn arrange(columns: Vec<Column>) -> (Vec<Column>, Vec<Column>) {
    let (dropped, kept): (Vec<Column>, Vec<Column>) =
        columns.into_iter().partition(Column::all_unavailable);
    let mut folded: Vec<Column> = Vec::new();
    for column in kept {
        match folded.last_mut() {
            Some(previous) if previous.cells == column.cells => {
                previous.kernels.extend(column.kernels);
                previous.releases.extend(column.releases);
            }
            _ => folded.push(column),
        }
    }
    (folded, dropped)
}

/// "Ubuntu 22.04 jammy", "Debian 12 bookworm", "CentOS 7.9.2009": the
/// catalog description up to the word "kernel" (or the id when it has no
/// such words), so a column says which distribution and release it is.
pub fn distribution(catalog: &Catalog, id: &str) -> String {
    let Some(entry) = catalog.kernels.get(id) else {
        return id.to_string();
    };
    let words: Vec<&str> = entry
        .description
        .split_whitespace()
        .take_while(|w| *w != "kernel" && *w != "cloud" && *w != "GA")
        .collect();
    let named = words
        .first()
        .is_some_and(|w| w.starts_with(char::is_uppercase))
        && !words.first().is_some_and(|w| w.ends_with("'s"))
        && words.len() < entry.description.split_whitespace().count();
    let name = if named {
        words.join(" ")
    } else {
        id.to_string()
    };
    // Ubuntu's day-one build beside its newest: the heading says which.
    match entry.build_word() {
        Some(word) => format!("{name} ({word})"),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(id: &str, texts: &[&str]) -> Column {
        Column {
            kernels: vec![id.into()],
            releases: vec![Some(format!("{id}-release"))],
            cells: texts
                .iter()
                .map(|t| {
                    Some(CellText {
                        text: t.to_string(),
                        note: None,
                        unavailable: t.starts_with("unavailable"),
                    })
                })
                .collect(),
        }
    }

    #[test]
    fn identical_neighbours_fold_and_all_unavailable_columns_drop() {
        let (kept, dropped) = arrange(vec![
            column("a", &["unavailable", "unavailable"]),
            column("b", &["works", "fails"]),
            column("c", &["works", "works"]),
            column("d", &["works", "works"]),
            column("e", &["works", "fails"]),
        ]);
        let ids: Vec<Vec<String>> = kept.iter().map(|c| c.kernels.clone()).collect();
        assert_eq!(ids, [vec!["b"], vec!["c", "d"], vec!["e"]]);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].kernels, ["a"]);
    }
}
