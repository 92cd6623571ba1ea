//! Slack and Discord markup removed from notification text, so that service and environment
//! names stand as plain words for [`Recognizer`](crate::core::alert::Recognizer) and the
//! format parsers: `<https://x|checkout>` reads `checkout`, `*checkout*` and `**checkout**`
//! read `checkout`, `:rotating_light:` disappears.
//!
//! Everything here is linear in the input and bounded in how far it looks ahead, so a hostile
//! message cannot make parsing slow.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// How far past `<` a Slack/Discord angle token may reach; real ones are short.
const MAX_ANGLE_TOKEN: usize = 1024;
/// How far a Markdown link's `[label]` and `(url)` may reach.
const MAX_MARKDOWN_LINK: usize = 2048;

static URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"https?://[^\s<>|()\[\]"'`]+"#).expect("URL pattern is valid"));

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
    URL.find_iter(text).map(|m| {
        m.as_str()
            .trim_end_matches(['.', ',', ';', ':', '!', '?', '*', '_', '~'])
    })
}

/// Whether `raw` is an absolute http(s) URL, the only kind breakwater shows as a link.
pub(crate) fn is_web_link(raw: &str) -> bool {
    url::Url::parse(raw).is_ok_and(|url| matches!(url.scheme(), "http" | "https"))
}

/// At most `max` characters of `text`, ending in `…` when something was cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some(_) => {
            let keep: String = text.chars().take(max.saturating_sub(1)).collect();
            format!("{}…", keep.trim_end())
        }
    }
}

fn resolve_links(text: &str) -> Cow<'_, str> {
    if !text.contains(['<', '[']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find(['<', '[']) {
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
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    // `&amp;` last, so `&amp;lt;` stays the literal text `&lt;`.
    Cow::Owned(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

fn strip_emphasis(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut line_start = true;
    while i < chars.len() {
        let c = chars[i];
        let before = i.checked_sub(1).map(|j| chars[j]);
        let after = chars.get(i + 1).copied();
        match c {
            '*' | '`' | '~' => {}
            // Slack `_italic_` and Discord `__underline__`, but not `service_name`.
            '_' if !before.is_some_and(char::is_alphanumeric)
                || !after.is_some_and(char::is_alphanumeric) => {}
            '|' if after == Some('|') || before == Some('|') => {} // Discord ||spoiler||
            '>' if line_start => {
                // A quoted line: `> text` or `>>> text`.
                while chars.get(i + 1) == Some(&'>') {
                    i += 1;
                }
                if chars.get(i + 1) == Some(&' ') {
                    i += 1;
                }
            }
            ':' if !before.is_some_and(char::is_alphanumeric) => {
                match emoji_code_length(&chars[i..]) {
                    Some(length) => i += length - 1,
                    None => out.push(c),
                }
            }
            _ => out.push(c),
        }
        line_start = c == '\n' || (line_start && c.is_whitespace());
        i += 1;
    }
    out
}

/// Length of a `:emoji_name:` code at the start of `chars`, if there is one.
fn emoji_code_length(chars: &[char]) -> Option<usize> {
    let mut has_letter = false;
    for (offset, c) in chars.iter().enumerate().skip(1).take(64) {
        match c {
            ':' if offset > 1 && has_letter => {
                let next = chars.get(offset + 1);
                return (!next.is_some_and(|n| n.is_alphanumeric())).then_some(offset + 1);
            }
            'a'..='z' | 'A'..='Z' => has_letter = true,
            '0'..='9' | '_' | '+' | '-' | '\'' => {}
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
    fn only_http_links_are_web_links() {
        assert!(is_web_link("https://grafana.example.com/d/abc"));
        assert!(!is_web_link("javascript:alert(1)"));
        assert!(!is_web_link("/relative/path"));
    }

    #[test]
    fn clipping_counts_characters_and_marks_the_cut() {
        assert_eq!(clip("héllo", 10), "héllo");
        assert_eq!(clip("héllo wörld", 6), "héllo…");
    }
}
