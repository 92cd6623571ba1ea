//! Cutting text to a size, the one way every message, label and log line does it: by
//! characters (never in the middle of one), with `…` marking the cut, so a reader knows
//! something is missing and a platform limit (Slack's 3,000-character sections, Discord's
//! 80-character button labels) is never exceeded.

/// [`clip`] for a text already owned, which is returned as it is when short enough.
pub(crate) fn clip_owned(text: String, max: usize) -> String {
    if text.len() <= max {
        text
    } else {
        clip(&text, max)
    }
}

/// At most `max` characters of `text`, ending in `…` when something was cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        // No more bytes than allowed characters.
        return text.to_owned();
    }
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some(_) => {
            let keep: String = text.chars().take(max.saturating_sub(1)).collect();
            format!("{}…", keep.trim_end())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_counts_characters_and_marks_the_cut() {
        assert_eq!(clip("héllo", 10), "héllo");
        assert_eq!(clip("héllo wörld", 6), "héllo…");
    }

    #[test]
    fn a_clipped_text_is_never_longer_than_asked() {
        let long = "word ".repeat(100);
        for max in [1, 2, 10, 80, 499] {
            assert!(clip(&long, max).chars().count() <= max, "{max}");
        }
    }
}
