//! How answers reach the terminal: the API's JSON for scripts, lines and tables for people.

use serde_json::Value;

pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    /// The API's answer as one line of JSON with `--json`, otherwise `human(answer)`.
    pub fn answer(&self, answer: &Value, human: impl FnOnce(&Value) -> String) {
        if self.json {
            println!("{answer}");
        } else {
            print!("{}", human(answer));
        }
    }

    /// Something for a person watching (a QR code, a pairing code); kept off stdout when stdout
    /// carries JSON, so scripts still read nothing but JSON documents there.
    pub fn progress(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
}

/// A JSON value as a table cell: strings bare, absent values as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns two spaces apart, each as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "(none)\n".to_owned();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    std::iter::once(&header)
        .chain(rows)
        .map(|row| {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, &width)| format!("{cell:width$}")).collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_take_the_width_of_their_widest_cell() {
        let rows = vec![vec!["app_1".into(), "Acme Corporation".into()], vec!["app_22".into(), "B".into()]];
        assert_eq!(table(&["ID", "NAME"], &rows), "ID      NAME\napp_1   Acme Corporation\napp_22  B\n");
    }

    #[test]
    fn an_empty_table_says_so() {
        assert_eq!(table(&["ID"], &[]), "(none)\n");
    }
}
