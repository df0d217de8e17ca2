//! Text helpers the adapters' card renderers share.

use std::fmt::Write;

/// Escapes text for HTML (`<`, `>`, `&`, `"`, `'`); Telegram's HTML mode and Matrix's
/// `formatted_body` both read it.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Joins `items` with `sep` while their length, as `len` measures it (bytes, characters, or
/// what the platform counts), stays within `budget`; then says how many were left out. The
/// first item is always shown.
pub fn within_budget(items: impl ExactSizeIterator<Item = String>, sep: &str, budget: usize, len: impl Fn(&str) -> usize) -> String {
    let total = items.len();
    let (mut out, mut used, mut shown) = (String::new(), 0, 0);
    for item in items {
        let cost = len(&item) + if shown > 0 { len(sep) } else { 0 };
        if shown > 0 && used + cost > budget {
            break;
        }
        if shown > 0 {
            out.push_str(sep);
        }
        out.push_str(&item);
        used += cost;
        shown += 1;
    }
    if shown < total {
        let _ = write!(out, "{sep}… and {} more", total - shown);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape_html("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn lists_stop_at_the_budget() {
        let names = || ["Ada", "Bob", "Cy"].into_iter().map(String::from);
        assert_eq!(within_budget(names(), ", ", 100, str::len), "Ada, Bob, Cy");
        assert_eq!(within_budget(names(), ", ", 8, str::len), "Ada, Bob, … and 1 more");
        assert_eq!(within_budget(names(), ", ", 1, str::len), "Ada, … and 2 more");
    }
}
