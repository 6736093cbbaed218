//! Plain-text tables for the default (non-JSON) output, drawn by
//! comfy-table with no borders and no header rule: columns are padded to
//! their widest cell and separated by two spaces, right-aligned columns
//! are marked by the caller, and trailing blanks are trimmed, so every row
//! is one greppable line whether or not stdout is a terminal. Content is
//! never wrapped (comfy-table's terminal-width detection is not built in).

use comfy_table::{CellAlignment, Table};

/// A table with these column titles. A title starting with `>` makes a
/// right-aligned column (header included; the `>` is not printed).
pub fn new(cols: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(
        cols.iter()
            .map(|c| c.strip_prefix('>').unwrap_or(c))
            .collect::<Vec<_>>(),
    );
    for (i, c) in cols.iter().enumerate() {
        if let Some(col) = t.column_mut(i) {
            // One space either side of a cell makes two between columns;
            // none before the first.
            col.set_padding((u16::from(i > 0), 1));
            if c.starts_with('>') {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    t
}

/// The table as text, each line prefixed with `indent` and ending in a
/// newline, without trailing blanks.
pub fn render(t: &Table, indent: &str) -> String {
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(indent);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = new(&["name", ">n", "note"]);
        t.add_row(vec!["a", "1", "x"]);
        t.add_row(vec!["long", "100"]);
        assert_eq!(
            render(&t, "  "),
            "  name    n  note\n  a       1  x\n  long  100\n"
        );
    }
}
