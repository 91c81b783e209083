//! Opt-out and opt-in keywords.
//!
//! A message opts the customer out only when its whole text, trimmed and compared without case,
//! is one of the keywords. "please stop calling me" is ordinary text.

/// English, Hindi and Marathi words that opt a customer out, in Latin and Devanagari script.
pub const DEFAULT_STOP_KEYWORDS: &[&str] = &[
    "stop",
    "stop all",
    "unsubscribe",
    "opt out",
    "opt-out",
    "optout",
    "cancel",
    "end",
    "quit",
    "band karo",
    "bandh karo",
    "बंद",
    "बंद करो",
    "बंद करें",
    "रोको",
    "बंद करा",
    "थांबवा",
    "थांबा",
    "thamba",
    "thambva",
    "band kara",
    "रुको",
    "बस करो",
];

/// English, Hindi and Marathi words that opt a customer back in.
pub const DEFAULT_START_KEYWORDS: &[&str] = &[
    "start",
    "unstop",
    "subscribe",
    "resume",
    "opt in",
    "opt-in",
    "shuru karo",
    "शुरू",
    "शुरू करो",
    "शुरू करें",
    "सुरू",
    "सुरू करा",
];

/// Template quick-reply payloads that mean an opt-out, beside the stop keywords themselves.
const STOP_PAYLOADS: &[&str] = &["opt_out", "optout", "unsubscribe", "stop_promotions"];

/// The keyword lists of one tenant, normalised for matching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keywords {
    stop: Vec<String>,
    start: Vec<String>,
}

/// What a customer's message means for their opt-out state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeywordMatch {
    /// The message is exactly a stop keyword.
    Stop,
    /// The message is exactly a start keyword.
    Start,
    /// Anything else.
    None,
}

impl Default for Keywords {
    fn default() -> Self {
        Self::new(None, None)
    }
}

impl Keywords {
    /// Builds the lists from a tenant's configuration. A tenant's words are added to the
    /// built-in ones, never in place of them, so no configuration can switch STOP off.
    pub fn new(stop: Option<&[String]>, start: Option<&[String]>) -> Self {
        let normalise_all = |custom: Option<&[String]>, defaults: &[&str]| -> Vec<String> {
            let custom = custom.unwrap_or_default().iter().map(|w| normalise(w));
            let mut words: Vec<String> = defaults
                .iter()
                .map(|w| normalise(w))
                .chain(custom)
                .filter(|w| !w.is_empty())
                .collect();
            words.sort();
            words.dedup();
            words
        };
        Self {
            stop: normalise_all(stop, DEFAULT_STOP_KEYWORDS),
            start: normalise_all(start, DEFAULT_START_KEYWORDS),
        }
    }

    /// Classifies a message's text.
    pub fn classify_text(&self, text: &str) -> KeywordMatch {
        let text = normalise(text);
        if self.stop.contains(&text) {
            KeywordMatch::Stop
        } else if self.start.contains(&text) {
            KeywordMatch::Start
        } else {
            KeywordMatch::None
        }
    }

    /// Classifies a template quick reply from its payload and button text.
    pub fn classify_quick_reply(&self, payload: Option<&str>, text: Option<&str>) -> KeywordMatch {
        if let Some(payload) = payload {
            if STOP_PAYLOADS.contains(&normalise(payload).as_str()) {
                return KeywordMatch::Stop;
            }
            let by_payload = self.classify_text(payload);
            if by_payload != KeywordMatch::None {
                return by_payload;
            }
        }
        text.map_or(KeywordMatch::None, |text| self.classify_text(text))
    }
}

/// Folds a message to the form keywords are compared in: compatibility-normalised (NFKC, so
/// full-width "ＳＴＯＰ" is "STOP"), without zero-width characters some keyboards insert,
/// lower-cased, with inner white space folded and surrounding punctuation and quotes trimmed.
fn normalise(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let visible: String = text
        .nfkc()
        .filter(|c| !matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}'))
        .collect();
    visible
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
        .trim_matches(|c: char| {
            c.is_ascii_punctuation() || matches!(c, '।' | '“' | '”' | '‘' | '’')
        })
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_keywords_match_in_any_case() {
        let keywords = Keywords::default();
        for text in [
            "STOP",
            " stop ",
            "Stop.",
            "UNSUBSCRIBE",
            "बंद करो",
            "थांबवा",
            "stop  all",
            "stop\u{200B}",
            "ＳＴＯＰ",
            "Stop?",
            "stop,",
            "\"STOP\"",
            "बंद करो।",
            "thamba",
        ] {
            assert_eq!(keywords.classify_text(text), KeywordMatch::Stop, "{text:?}");
        }
        for text in ["START", "start", " Start ", "शुरू", "सुरू करा"] {
            assert_eq!(
                keywords.classify_text(text),
                KeywordMatch::Start,
                "{text:?}"
            );
        }
    }

    #[test]
    fn sentences_containing_stop_are_ordinary() {
        let keywords = Keywords::default();
        for text in [
            "please stop calling me after 6",
            "stop by the showroom?",
            "startup offer",
            "",
        ] {
            assert_eq!(keywords.classify_text(text), KeywordMatch::None, "{text:?}");
        }
    }

    #[test]
    fn tenant_lists_extend_defaults() {
        let keywords = Keywords::new(Some(&["ruko".to_string()]), None);
        assert_eq!(keywords.classify_text("Ruko"), KeywordMatch::Stop);
        assert_eq!(
            keywords.classify_text("stop"),
            KeywordMatch::Stop,
            "built-in STOP still works"
        );
        assert_eq!(keywords.classify_text("start"), KeywordMatch::Start);
        let emptied = Keywords::new(Some(&[]), Some(&[String::new()]));
        assert_eq!(
            emptied.classify_text("STOP"),
            KeywordMatch::Stop,
            "an empty list cannot disable STOP"
        );
    }

    #[test]
    fn quick_reply_payload_can_opt_out() {
        let keywords = Keywords::default();
        let by_payload = keywords.classify_quick_reply(Some("STOP_PROMOTIONS"), Some("No thanks"));
        assert_eq!(by_payload, KeywordMatch::Stop);
        let by_text = keywords.classify_quick_reply(Some("btn-2"), Some("Stop"));
        assert_eq!(by_text, KeywordMatch::Stop);
        let neither = keywords.classify_quick_reply(Some("book-test-ride"), Some("Book"));
        assert_eq!(neither, KeywordMatch::None);
    }
}
