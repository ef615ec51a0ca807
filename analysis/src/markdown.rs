//! Markdown tables and human-readable numbers, shared by report, comparison and sweep.

use std::fmt::Write as _;

/// A Markdown table; every row has as many cells as `header`.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut text = format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()));
    for row in rows {
        let _ = writeln!(text, "| {} |", row.join(" | "));
    }
    text
}

/// Free text as one table cell: `|` escaped, line breaks as spaces.
pub(crate) fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// A duration given in µs, in the unit that reads best (`850 µs`, `12.3 ms`, `2.51 s`).
pub(crate) fn micros(us: f64) -> String {
    match us.abs() {
        value if value < 1e3 => format!("{us:.0} µs"),
        value if value < 1e6 => format!("{:.3} ms", us / 1e3),
        _ => format!("{:.3} s", us / 1e6),
    }
}

/// A share as a percentage with two decimals.
pub(crate) fn percent(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

/// A plain number with `decimals` decimals, or `n/a`.
pub(crate) fn number(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".into(), |value| format!("{value:.decimals$}"))
}

/// `text` or `n/a`.
pub(crate) fn or_na(value: Option<String>) -> String {
    value.unwrap_or_else(|| "n/a".into())
}

/// The trustworthy verdict for a table cell; an untrustworthy run stands out.
pub(crate) fn verdict(trustworthy: Option<bool>) -> String {
    match trustworthy {
        Some(true) => "trustworthy".into(),
        Some(false) => "**UNTRUSTWORTHY**".into(),
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(micros(850.0), "850 µs");
        assert_eq!(micros(12_345.0), "12.345 ms");
        assert_eq!(micros(2_510_000.0), "2.510 s");
        assert_eq!(percent(0.12345), "12.35%");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(table(&["a", "b"], &[vec!["1".into(), "2".into()]]), "| a | b |\n|---|---|\n| 1 | 2 |\n");
    }
}
