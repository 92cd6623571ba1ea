//! Slack and Discord markup removed from notification text, so that service and environment
//! names stand as plain words for [`Recognizer`](crate::core::alert::Recognizer) and the
//! format parsers: `<https://x|checkout>` reads `checkout`, `*checkout*` and `**checkout**`
//! read `checkout`, `:rotating_light:` disappears.
//!
//! Everything here is linear in the input and bounded in how far it looks ahead, so a hostile
//! message cannot make parsing slow.

use std::borrow::Cow;

/// How far past `<` a Slack/Discord angle token may reach; real ones are short.
const MAX_ANGLE_TOKEN: usize = 1024;
/// How far a Markdown link's `[label]` and `(url)` may reach.
const MAX_MARKDOWN_LINK: usize = 2048;
/// Longest link breakwater passes on; browsers and chat platforms cut around here too.
const MAX_LINK: usize = 2048;

/// The text as a reader sees it: links reduced to their label, mentions and custom emoji
/// removed, HTML entities decoded, emphasis marks and `:emoji:` codes dropped, block quotes
/// unwrapped.
pub(crate) fn plain(text: &str) -> String {
    let linked = resolve_links(text);
    let decoded = decode_entities(&linked);
    strip_emphasis(&decoded)
}

/// Every http(s) URL in raw (unstripped) markup, in order of appearance. Slack writes
/// `<url|label>`, Discord `[label](url)`; both leave the URL intact for this search.
pub(crate) fn links(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        loop {
            let start = rest.find("http")?;
            let candidate = &rest[start..];
            let scheme = if candidate.starts_with("https://") {
                "https://".len()
            } else if candidate.starts_with("http://") {
                "http://".len()
            } else {
                rest = &candidate["http".len()..];
                continue;
            };
            let end = candidate
                .char_indices()
                .find(|(_, c)| ends_link(*c))
                .map_or(candidate.len(), |(i, _)| i);
            rest = &candidate[end..];
            let link =
                candidate[..end].trim_end_matches(['.', ',', ';', ':', '!', '?', '*', '_', '~']);
            if link.len() > scheme {
                return Some(link);
            }
        }
    })
}

/// Whether `c` ends a link found in running text: whitespace, or markup around links.
fn ends_link(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_whitespace()
            || matches!(
                c,
                '<' | '>' | '|' | '(' | ')' | '[' | ']' | '"' | '\'' | '`'
            )
    } else {
        c.is_whitespace()
    }
}

/// Whether `raw` is an absolute http(s) URL, the only kind breakwater shows as a link (no
/// `javascript:` or relative links reach a chat button). A syntactic check: full URL
/// parsing cost more than the rest of parsing a message together.
pub(crate) fn is_web_link(raw: &str) -> bool {
    let Some(rest) = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
    else {
        return false;
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    host_end > 0
        && raw.len() <= MAX_LINK
        && if raw.is_ascii() {
            !raw.bytes().any(|b| b <= b' ' || b == 0x7f)
        } else {
            !raw.chars().any(|c| c.is_whitespace() || c.is_control())
        }
}

/// Byte offset of the next `<` or `[`, both ASCII and so always at a character boundary.
fn next_link_start(text: &str) -> Option<usize> {
    text.bytes().position(|b| b == b'<' || b == b'[')
}

fn resolve_links(text: &str) -> Cow<'_, str> {
    if next_link_start(text).is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = next_link_start(rest) {
        out.push_str(&rest[..position]);
        let tail = &rest[position..];
        let consumed = if tail.starts_with('<') {
            angle_token(tail, &mut out)
        } else {
            markdown_link(tail, &mut out)
        };
        match consumed {
            Some(length) => rest = &tail[length..],
            None => {
                // Both `<` and `[` are one byte long.
                out.push_str(&tail[..1]);
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Renders a Slack `<…>` or Discord `<…>` token at the start of `tail` into `out`; returns
/// how many bytes it consumed, or `None` when `tail` does not start with one.
fn angle_token(tail: &str, out: &mut String) -> Option<usize> {
    let window = &tail.as_bytes()[1..tail.len().min(MAX_ANGLE_TOKEN)];
    let end = 1 + window
        .iter()
        .position(|b| *b == b'>' || *b == b'<' || *b == b'\n')?;
    if tail.as_bytes()[end] != b'>' {
        return None;
    }
    let inner = &tail[1..end];
    let (target, label) = match inner.split_once('|') {
        Some((target, label)) => (target, Some(label)),
        None => (inner, None),
    };
    if target.starts_with("http://")
        || target.starts_with("https://")
        || target.starts_with("mailto:")
    {
        out.push_str(label.unwrap_or(target));
    } else if let Some(special) = target.strip_prefix('!') {
        // <!here>, <!channel>, <!subteam^S123|@oncall>, <!date^…|fallback>
        match label {
            Some(label) => out.push_str(label),
            None if matches!(special, "here" | "channel" | "everyone") => {
                out.push('@');
                out.push_str(special);
            }
            None => {}
        }
    } else if target.starts_with('@') || target.starts_with('#') {
        // Slack user/channel (with an optional name), Discord user/role/channel ids.
        if let Some(label) = label {
            out.push_str(&target[..1]);
            out.push_str(label.trim_start_matches(['@', '#']));
        }
    } else if is_discord_emoji_or_timestamp(target) {
        // <:fire:123>, <a:party:456>, <t:1700000000:R> carry nothing to match on.
    } else {
        return None;
    }
    Some(end + 1)
}

fn is_discord_emoji_or_timestamp(target: &str) -> bool {
    let body = target
        .strip_prefix("a:")
        .or_else(|| target.strip_prefix(':'))
        .or_else(|| target.strip_prefix("t:"));
    body.is_some_and(|body| {
        body.split(':')
            .next_back()
            .is_some_and(|last| !last.is_empty() && last.bytes().all(|b| b.is_ascii_alphanumeric()))
    })
}

/// Renders a Markdown `[label](https://…)` at the start of `tail` as its label.
fn markdown_link(tail: &str, out: &mut String) -> Option<usize> {
    let bytes = &tail.as_bytes()[..tail.len().min(MAX_MARKDOWN_LINK)];
    let close = bytes
        .iter()
        .position(|b| matches!(b, b']' | b'\n'))
        .filter(|i| bytes[*i] == b']')?;
    if bytes.get(close + 1) != Some(&b'(') {
        return None;
    }
    let url_start = close + 2;
    let url_len = bytes[url_start..]
        .iter()
        .position(|b| matches!(b, b')' | b' ' | b'\n'))
        .filter(|i| bytes[url_start + i] == b')')?;
    let url = &tail[url_start..url_start + url_len];
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    out.push_str(&tail[1..close]);
    Some(url_start + url_len + 1)
}

fn decode_entities(text: &str) -> Cow<'_, str> {
    const ENTITIES: [(&str, &str); 5] = [
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&amp;", "&"),
        ("&quot;", "\""),
        ("&#39;", "'"),
    ];
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    // One pass, so `&amp;lt;` stays the literal text `&lt;`.
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find('&') {
        out.push_str(&rest[..position]);
        let tail = &rest[position..];
        let (decoded, length) = ENTITIES
            .iter()
            .find(|(entity, _)| tail.starts_with(entity))
            .map_or(("&", 1), |(entity, decoded)| (*decoded, entity.len()));
        out.push_str(decoded);
        rest = &tail[length..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The bytes [`strip_emphasis`] may drop, as a lookup table for its scan.
const MARKS: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    let marks = b"*`~_|>:";
    while i < marks.len() {
        table[marks[i] as usize] = true;
        i += 1;
    }
    table
};

/// Drops emphasis marks, `:emoji:` codes and quote markers. Every mark is ASCII, so the
/// scan runs over bytes and copies the text between marks in bulk.
fn strip_emphasis(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied_to = 0;
    let mut i = 0;
    loop {
        while i < bytes.len() && !MARKS[usize::from(bytes[i])] {
            i += 1;
        }
        let Some(&byte) = bytes.get(i) else { break };
        let drop = match byte {
            b'*' | b'`' | b'~' => 1,
            // Slack `_italic_` and Discord `__underline__`, but not `service_name`.
            b'_' if !alphanumeric_before(text, i) || !alphanumeric_after(text, i + 1) => 1,
            // Discord `||spoiler||`.
            b'|' if bytes.get(i + 1) == Some(&b'|') || (i > 0 && bytes[i - 1] == b'|') => 1,
            // A quoted line: `> text` or `>>> text`.
            b'>' if at_line_start(bytes, i) => {
                let mut end = i;
                while bytes.get(end) == Some(&b'>') {
                    end += 1;
                }
                if bytes.get(end) == Some(&b' ') {
                    end += 1;
                }
                end - i
            }
            b':' if !alphanumeric_before(text, i) => emoji_code_length(text, i).unwrap_or(0),
            _ => 0,
        };
        if drop > 0 {
            out.push_str(&text[copied_to..i]);
            i += drop;
            copied_to = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied_to..]);
    out
}

/// Whether only spaces or tabs stand between the start of the line and byte `at`.
fn at_line_start(bytes: &[u8], at: usize) -> bool {
    bytes[..at]
        .iter()
        .rev()
        .find(|b| !matches!(b, b' ' | b'\t'))
        .is_none_or(|b| *b == b'\n')
}

/// Whether the character before byte `at` (a character boundary) is a letter or digit.
fn alphanumeric_before(text: &str, at: usize) -> bool {
    text[..at]
        .chars()
        .next_back()
        .is_some_and(char::is_alphanumeric)
}

/// Whether the character at byte `at` (a character boundary) is a letter or digit.
fn alphanumeric_after(text: &str, at: usize) -> bool {
    text[at..].chars().next().is_some_and(char::is_alphanumeric)
}

/// Length in bytes of a `:emoji_name:` code starting at byte `at`, if there is one.
fn emoji_code_length(text: &str, at: usize) -> Option<usize> {
    let bytes = &text.as_bytes()[at..];
    let mut has_letter = false;
    for (offset, byte) in bytes.iter().enumerate().skip(1).take(64) {
        match byte {
            b':' if offset > 1 && has_letter => {
                return (!alphanumeric_after(text, at + offset + 1)).then_some(offset + 1);
            }
            b'a'..=b'z' | b'A'..=b'Z' => has_letter = true,
            b'0'..=b'9' | b'_' | b'+' | b'-' | b'\'' => {}
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_links_read_as_their_label_or_url() {
        assert_eq!(
            plain("see <https://grafana.example.com/d/x|checkout dashboard> and <https://x.io>"),
            "see checkout dashboard and https://x.io"
        );
    }

    #[test]
    fn slack_mentions_keep_names_and_drop_bare_ids() {
        assert_eq!(
            plain("<!here> <!subteam^S012|@checkout-oncall> <@U024BE7LH> <#C1|alerts>"),
            "@here @checkout-oncall  #alerts"
        );
    }

    #[test]
    fn discord_markdown_links_emoji_and_mentions_are_removed() {
        assert_eq!(
            plain("<:fire:1234> **checkout** is [down](https://status.example.com) <@&99>"),
            " checkout is down "
        );
    }

    #[test]
    fn emphasis_marks_are_dropped_but_snake_case_survives() {
        assert_eq!(
            plain("*checkout* _prod_ __staging__ ~old~ `service_name`"),
            "checkout prod staging old service_name"
        );
    }

    #[test]
    fn emoji_codes_are_dropped_but_times_and_tags_are_not() {
        assert_eq!(
            plain(":rotating_light: since 14:02:10 on {env:production}"),
            " since 14:02:10 on {env:production}"
        );
    }

    #[test]
    fn entities_are_decoded_after_links_so_escaped_brackets_stay_text() {
        assert_eq!(plain("p99 &gt; 2s &amp; &lt;b&gt;"), "p99 > 2s & <b>");
    }

    #[test]
    fn an_escaped_entity_stays_literal() {
        assert_eq!(plain("&amp;lt; &amp;amp; &nbsp;"), "&lt; &amp; &nbsp;");
    }

    #[test]
    fn quoted_lines_are_unwrapped() {
        assert_eq!(plain("> checkout down\n>>> prod"), "checkout down\nprod");
    }

    #[test]
    fn unterminated_markup_is_left_as_text() {
        assert_eq!(plain("a < b and [c](d"), "a < b and [c](d");
    }

    #[test]
    fn links_are_found_in_every_markup_style() {
        let found: Vec<&str> =
            links("<https://a.example/x?y=1|A> [B](https://b.example/) plain https://c.example/z.")
                .collect();
        assert_eq!(
            found,
            vec![
                "https://a.example/x?y=1",
                "https://b.example/",
                "https://c.example/z"
            ]
        );
    }

    #[test]
    fn link_search_skips_words_that_only_start_like_links() {
        let found: Vec<&str> = links("httpd on http:// and https://x.example/a.").collect();
        assert_eq!(found, vec!["https://x.example/a"]);
    }

    #[test]
    fn only_http_links_are_web_links() {
        assert!(is_web_link("https://grafana.example.com/d/abc"));
        assert!(is_web_link(
            "http://alertmanager:9093/#/alerts?receiver=slack"
        ));
        assert!(!is_web_link("javascript:alert(1)"));
        assert!(!is_web_link("/relative/path"));
        assert!(!is_web_link("https:///no-host"));
        assert!(!is_web_link("https://example.com/a b"));
    }
}
