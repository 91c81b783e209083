//! Splitting of long texts into parts that fit one WhatsApp text message.

/// Maximum length of a text message body in characters, set by the Cloud API.
pub const MAX_TEXT_CHARS: usize = 4096;

/// Characters that end a sentence when whitespace follows: `.`, `!`, `?`, and the
/// Devanagari danda and double danda used in Hindi and Marathi.
const SENTENCE_ENDS: [char; 5] = ['.', '!', '?', '।', '॥'];

/// Splits `text` into parts of at most `max_chars` characters (Unicode scalar values,
/// which is how Meta counts its 4,096 limit).
///
/// Each cut is made at the last paragraph break, sentence end or whitespace that
/// leaves the part at least half full, in that order of preference. When none does,
/// the earliest kind found anywhere in the window is used, and only a window without
/// any of them is cut in the middle of a word. Parts are trimmed at both ends and never
/// empty, so a text of only whitespace gives no parts. A text that fits is returned
/// trimmed, as one part. A `max_chars` of 0 is treated as 1.
pub fn split_text(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (part, remainder) = split_first_part(rest, max_chars);
        parts.push(part.trim_end().to_string());
        rest = remainder.trim_start();
    }
    parts
}

/// Splits `rest`, which starts with a non-whitespace character, into its first part and
/// the remainder.
fn split_first_part(rest: &str, max_chars: usize) -> (&str, &str) {
    // `limit` is the byte offset of the first character that does not fit.
    let Some((limit, _)) = rest.char_indices().nth(max_chars) else {
        return (rest, "");
    };
    let cut = find_break(rest, max_chars).unwrap_or_else(|| hard_cut(rest, limit));
    rest.split_at(cut)
}

/// Returns the byte offset of the best break within the first `max_chars` characters,
/// or `None` when the window has no paragraph break, sentence end or whitespace.
fn find_break(rest: &str, max_chars: usize) -> Option<usize> {
    let mut paragraph = None;
    let mut sentence = None;
    let mut whitespace = None;
    let mut half_full = rest.len();
    let mut line_is_blank = false;
    let mut seen_newline = false;

    let mut chars = rest.char_indices().enumerate().peekable();
    while let Some((index, (offset, c))) = chars.next() {
        if index > max_chars {
            break;
        }
        if index == max_chars / 2 {
            half_full = offset;
        }
        if c == '\n' {
            // A newline that ends a blank line closes a paragraph.
            if seen_newline && line_is_blank {
                paragraph = Some(offset);
            }
            seen_newline = true;
            line_is_blank = true;
        } else if !c.is_whitespace() {
            line_is_blank = false;
        }
        if c.is_whitespace() {
            whitespace = Some(offset);
        }
        let next_is_whitespace = chars
            .peek()
            .is_some_and(|(_, (_, next))| next.is_whitespace());
        if index < max_chars && SENTENCE_ENDS.contains(&c) && next_is_whitespace {
            sentence = Some(offset + c.len_utf8());
        }
    }

    let by_preference = [paragraph, sentence, whitespace];
    by_preference
        .iter()
        .flatten()
        .find(|&&cut| cut >= half_full)
        .or_else(|| by_preference.iter().flatten().next())
        .copied()
}

/// Returns `limit`, moved back so that the cut does not separate a base character from
/// the marks or joiners that render with it, unless that would empty the part.
///
/// NOTE: this covers combining diacritics, Devanagari conjuncts and signs, and emoji
/// modifiers, ZWJ sequences and variation selectors. Other scripts' clusters may
/// still be split, because the full Unicode grapheme rules are not implemented here.
fn hard_cut(rest: &str, limit: usize) -> usize {
    let mut cut = limit;
    while cut > 0 && !is_cluster_boundary(rest, cut) {
        cut = rest[..cut]
            .char_indices()
            .next_back()
            .map_or(0, |(offset, _)| offset);
    }
    if cut == 0 {
        limit
    } else {
        cut
    }
}

fn is_cluster_boundary(text: &str, offset: usize) -> bool {
    let before = text[..offset].chars().next_back();
    let after = text[offset..].chars().next();
    match (before, after) {
        (Some(before), Some(after)) => !(joins_next(before) || extends_previous(after)),
        _ => true,
    }
}

/// Returns `true` when `c` joins the character before it to the one after it: the Devanagari
/// virama (which forms conjuncts) and the zero-width joiner (emoji sequences).
fn joins_next(c: char) -> bool {
    matches!(c, '\u{094D}' | '\u{200D}')
}

/// Returns `true` when `c` renders as part of the character before it.
fn extends_previous(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'      // combining diacritical marks
        | '\u{0900}'..='\u{0903}'    // Devanagari candrabindu, anusvara, visarga
        | '\u{093A}'..='\u{093C}'    // Devanagari vowel signs and nukta
        | '\u{093E}'..='\u{094F}'    // Devanagari vowel signs and virama
        | '\u{0951}'..='\u{0957}'
        | '\u{0962}'..='\u{0963}'
        | '\u{200C}'..='\u{200D}'    // zero-width non-joiner and joiner
        | '\u{20E3}'                 // combining enclosing keycap
        | '\u{FE00}'..='\u{FE0F}'    // variation selectors
        | '\u{1F3FB}'..='\u{1F3FF}'  // emoji skin-tone modifiers
        | '\u{E0020}'..='\u{E007F}') // emoji tag sequences
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn char_count(part: &str) -> usize {
        part.chars().count()
    }

    fn non_whitespace(text: &str) -> String {
        text.chars().filter(|c| !c.is_whitespace()).collect()
    }

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_text("Hello", 4096), vec!["Hello"]);
        assert_eq!(split_text("  Hello there \n", 11), vec!["Hello there"]);
    }

    #[test]
    fn exact_fit_is_one_part() {
        let text = "a".repeat(4096);
        assert_eq!(split_text(&text, MAX_TEXT_CHARS), vec![text.clone()]);
    }

    #[test]
    fn empty_and_blank_give_no_parts() {
        assert!(split_text("", 10).is_empty());
        assert!(split_text(" \n\t \n", 10).is_empty());
    }

    #[test]
    fn zero_max_is_treated_as_one() {
        assert_eq!(split_text("ab c", 0), vec!["a", "b", "c"]);
    }

    #[test]
    fn prefers_paragraph_break() {
        let text = "First paragraph. It has two sentences.\n\nSecond one here.";
        assert_eq!(
            split_text(text, 50),
            vec!["First paragraph. It has two sentences.", "Second one here."]
        );
    }

    #[test]
    fn paragraph_break_with_blank_line_spaces() {
        let text = "Line one of the first block\n  \t\r\nThe second block";
        assert_eq!(
            split_text(text, 40),
            vec!["Line one of the first block", "The second block"]
        );
    }

    #[test]
    fn single_newline_is_not_paragraph() {
        // The sentence end after "two." beats the line break after "one".
        let text = "Line one\nline two. And more words follow here";
        assert_eq!(
            split_text(text, 25),
            vec!["Line one\nline two.", "And more words follow", "here"]
        );
    }

    #[test]
    fn prefers_sentence_end_over_whitespace() {
        let text = "The ZX costs Rs 87,500. Test rides run daily from ten";
        assert_eq!(
            split_text(text, 40),
            vec!["The ZX costs Rs 87,500.", "Test rides run daily from ten"]
        );
    }

    #[test]
    fn decimal_point_is_not_sentence_end() {
        let text = "Mileage is 55.5 kmpl on the city cycle";
        let parts = split_text(text, 20);
        assert_eq!(parts, vec!["Mileage is 55.5 kmpl", "on the city cycle"]);
    }

    #[test]
    fn devanagari_danda_ends_sentence() {
        let text = "ज्युपिटरची किंमत ८७,५०० आहे। टेस्ट राइड रोज उपलब्ध आहे";
        let parts = split_text(text, 35);
        assert_eq!(
            parts,
            vec!["ज्युपिटरची किंमत ८७,५०० आहे।", "टेस्ट राइड रोज उपलब्ध आहे"]
        );
    }

    #[test]
    fn early_paragraph_yields_to_later_whitespace() {
        // A paragraph break in the first half would leave a short part, so the split
        // falls back to the last space, which leaves the part more than half full.
        let text = format!("Hi\n\n{}", "word ".repeat(20));
        let parts = split_text(&text, 40);
        assert_eq!(parts[0], format!("Hi\n\n{}", "word ".repeat(7).trim_end()));
        assert!(parts.iter().all(|p| char_count(p) <= 40));
    }

    #[test]
    fn early_whitespace_beats_hard_cut() {
        // A long URL after an early space moves whole to the next part.
        let url = format!("https://example.in/{}", "a".repeat(30));
        let text = format!("See {url}");
        assert_eq!(split_text(&text, 50), vec!["See".to_string(), url]);
    }

    #[test]
    fn hard_cut_without_breaks() {
        let text = "abcdefghij";
        assert_eq!(split_text(text, 4), vec!["abcd", "efgh", "ij"]);
    }

    #[test]
    fn hard_cut_keeps_devanagari_conjunct() {
        // "क्ष" is क + virama + ष. A cut after the virama would split the conjunct.
        let text = "कक्षकक्ष";
        let parts = split_text(text, 3);
        assert_eq!(parts, vec!["क", "क्ष", "क", "क्ष"]);
    }

    #[test]
    fn hard_cut_keeps_vowel_sign() {
        // "नमस्ते": the cut after 2 characters is fine, then ते's sign stays with त.
        assert_eq!(split_text("नमस्ते", 2), vec!["नम", "स्", "ते"]);
    }

    #[test]
    fn hard_cut_keeps_emoji_modifier() {
        let thumbs = "👍🏽";
        let text = thumbs.repeat(3);
        let parts = split_text(&text, 3);
        assert_eq!(parts, vec![thumbs; 3]);
    }

    #[test]
    fn hard_cut_keeps_zwj_sequence() {
        let family = "👨‍👩‍👧";
        let text = format!("{family}{family}");
        assert_eq!(split_text(&text, 6), vec![family, family]);
    }

    #[test]
    fn hard_cut_splits_cluster_longer_than_max() {
        let family = "👨‍👩‍👧";
        let parts = split_text(family, 2);
        assert_eq!(parts.concat(), family);
        assert!(parts.iter().all(|p| char_count(p) <= 2));
    }

    #[test]
    fn long_reply_at_meta_limit() {
        let paragraph = "Namaste! The Jupiter ZX is Rs 87,500 on-road. ".repeat(30);
        let text = [paragraph.as_str(); 5].join("\n\n");
        let parts = split_text(&text, MAX_TEXT_CHARS);
        assert!(parts.len() >= 2);
        assert!(parts.iter().all(|p| char_count(p) <= MAX_TEXT_CHARS));
        assert!(parts.iter().all(|p| p.ends_with('.')), "{parts:?}");
        assert_eq!(non_whitespace(&parts.concat()), non_whitespace(&text));
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "price",
            "Jupiter",
            "on-road",
            "87,500",
            "55.5",
            "नमस्ते",
            "क्षमा",
            "किंमत",
            "आहे।",
            "है।",
            "॥",
            "👍🏽",
            "👨‍👩‍👧",
            "🙏",
            "é",
            "₹",
            " ",
            " ",
            " ",
            "\n",
            "\n\n",
            "\n \n",
            ".",
            "!",
            "?",
            "\t",
            "https://example.in/a/b",
        ]);
        prop::collection::vec(pieces, 0..120).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn parts_fit_and_keep_content(text in text_strategy(), max_chars in 1usize..60) {
            let parts = split_text(&text, max_chars);

            for part in &parts {
                prop_assert!(char_count(part) <= max_chars, "part {:?} over {}", part, max_chars);
                prop_assert!(!part.is_empty());
                prop_assert_eq!(part.trim(), part.as_str());
            }
            prop_assert_eq!(non_whitespace(&parts.concat()), non_whitespace(&text));
            if char_count(text.trim()) <= max_chars && !text.trim().is_empty() {
                prop_assert_eq!(parts, vec![text.trim().to_string()]);
            }
        }

        #[test]
        fn arbitrary_unicode_never_panics(text in any::<String>(), max_chars in 0usize..20) {
            let parts = split_text(&text, max_chars);
            for part in &parts {
                prop_assert!(char_count(part) <= max_chars.max(1));
            }
            prop_assert_eq!(non_whitespace(&parts.concat()), non_whitespace(&text));
        }
    }
}
