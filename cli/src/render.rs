//! How answers look in `--output table`: [`Table`] (aligned columns, for lists) and [`Fields`]
//! (one `label  value` line each, for one object), and the cells made of the API's values.
//!
//! Text from the service (names, descriptions, audit sources) is printed with control characters
//! replaced, so that no value can move the cursor or recolour the terminal.

use std::io::{self, Write};

/// Columns between two cells.
const GAP: &str = "  ";

/// Rows under a header, each column as wide as its widest cell.
#[derive(Debug)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; cells past the header's width are dropped, missing ones are empty.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.iter().map(|c| printable(c)).collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        write_row(out, &header, &widths)?;
        for row in &self.rows {
            write_row(out, row, &widths)?;
        }
        Ok(())
    }
}

fn write_row(out: &mut dyn Write, cells: &[String], widths: &[usize]) -> io::Result<()> {
    let mut line = String::new();
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == cells.len() {
            // No padding after the last column: no trailing spaces.
            line.push_str(cell);
        } else {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - width(cell)));
            line.push_str(GAP);
        }
    }
    writeln!(out, "{}", line.trim_end())
}

/// Labelled values of one object, labels padded to one width.
#[derive(Debug, Default)]
pub struct Fields {
    lines: Vec<(&'static str, String)>,
}

impl Fields {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, label: &'static str, value: impl AsRef<str>) -> &mut Self {
        self.lines.push((label, printable(value.as_ref())));
        self
    }

    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let label_width = self.lines.iter().map(|(l, _)| width(l)).max().unwrap_or(0);
        for (label, value) in &self.lines {
            let pad = label_width - width(label);
            writeln!(out, "{label}{}{GAP}{value}", " ".repeat(pad))?;
        }
        Ok(())
    }
}

/// A list cell: comma-separated, or `-` when empty.
pub fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

/// An optional cell: the value, or `-`.
pub fn optional(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// The width of `text` in columns, counting each character as one (names are mostly ASCII;
/// wide characters only misalign their own row).
fn width(text: &str) -> usize {
    text.chars().count()
}

/// `text` with control characters (escape sequences, newlines) replaced by `?`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_without_trailing_spaces() {
        let mut table = Table::new(&["ID", "NAME", "STATUS"]);
        table.row(vec![
            "kid_1".into(),
            "billing backend".into(),
            "active".into(),
        ]);
        table.row(vec!["kid_22".into(), "ci".into(), "revoked".into()]);
        assert_eq!(
            rendered(|out| table.write(out)),
            "ID      NAME             STATUS\n\
             kid_1   billing backend  active\n\
             kid_22  ci               revoked\n"
        );
    }

    #[test]
    fn an_empty_last_cell_leaves_no_trailing_spaces() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["x".into()]);
        assert_eq!(rendered(|out| table.write(out)), "A  B\nx\n");
    }

    #[test]
    fn fields_align_their_values() {
        let mut fields = Fields::new();
        fields.add("id", "kid_1").add("expires at", "never");
        assert_eq!(
            rendered(|out| fields.write(out)),
            "id          kid_1\nexpires at  never\n"
        );
    }

    #[test]
    fn control_characters_from_the_service_are_not_printed() {
        let mut fields = Fields::new();
        fields.add("name", "evil\u{1b}[2Jname\nnext");
        assert_eq!(
            rendered(|out| fields.write(out)),
            "name  evil?[2Jname?next\n"
        );
    }
}
