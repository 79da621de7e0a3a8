//! Plain-text tables and key/value views for the client's human output.
//!
//! Pure string building, no IO: columns are separated by two spaces and padded to the
//! widest cell (counted in chars), the last column is never padded, and control characters
//! in cells become spaces so that one row stays one line.

/// The gap between columns.
const GAP: &str = "  ";

/// The ellipsis that ends a truncated cell.
const ELLIPSIS: char = '…';

/// A table whose column widths follow its contents.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| one_line(&c)).collect());
    }

    /// The header and every row, each line ending with a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = line(&widths, &self.headers);
        for row in &self.rows {
            out.push_str(&line(&widths, row));
        }
        out
    }
}

/// One row padded to `widths` (a cell wider than its column pushes the rest right), with
/// a newline. Used directly when rows are printed as they arrive.
pub fn line<S: AsRef<str>>(widths: &[usize], cells: &[S]) -> String {
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        let cell = one_line(cell.as_ref());
        if i > 0 {
            out.push_str(GAP);
        }
        out.push_str(&cell);
        if i + 1 < cells.len() {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count());
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push('\n');
    out
}

/// `s` cut to at most `max` chars, the last one an ellipsis when anything was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push(ELLIPSIS);
    out
}

/// Control characters (newlines, tabs, escapes) replaced by spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `key  value` lines with the values aligned; a multi-line value continues under its
/// first line.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let mut lines = value.lines();
        let first = lines.next().unwrap_or("");
        out.push_str(format!("{key:<width$}{GAP}{first}").trim_end());
        out.push('\n');
        for rest in lines {
            let indent = width + GAP.len();
            out.push_str(&format!("{:indent$}{rest}\n", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell_and_the_last_is_not_padded() {
        let mut t = Table::new(&["ID", "STATUS", "NOTE"]);
        t.push(vec!["1".into(), "running".into(), "".into()]);
        t.push(vec!["12345".into(), "ok".into(), "two\nlines".into()]);
        assert_eq!(
            t.render(),
            "ID     STATUS   NOTE\n\
             1      running\n\
             12345  ok       two lines\n"
        );
    }

    #[test]
    fn a_table_without_rows_is_its_header() {
        assert_eq!(Table::new(&["A", "B"]).render(), "A  B\n");
    }

    #[test]
    fn fixed_width_lines_let_wide_cells_push_the_rest_right() {
        assert_eq!(line(&[2, 3], &["a", "b", "c"]), "a   b    c\n");
        assert_eq!(line(&[2, 3], &["abcd", "b", "c"]), "abcd  b    c\n");
    }

    #[test]
    fn truncation_counts_chars_and_ends_with_an_ellipsis() {
        assert_eq!(truncate("short", 60), "short");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn key_values_align_and_indent_continuation_lines() {
        let kv = key_values(&[
            ("id", "x".into()),
            ("output", "{\n  \"a\": 1\n}".into()),
            ("empty", String::new()),
        ]);
        assert_eq!(
            kv,
            "id      x\n\
             output  {\n\
             \x20         \"a\": 1\n\
             \x20       }\n\
             empty\n"
        );
    }
}
