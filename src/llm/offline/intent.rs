//! Keyword detection for the offline responder.
//!
//! Messages are normalized to lowercase words separated by single spaces, with Devanagari
//! nukta and chandrabindu folded so that "क़ीमत" matches "कीमत" and "कहाँ" matches "कहां".
//! A keyword matches whole words. A keyword ending in `*` matches any word that starts with it
//! ("complain*" matches "complaint" and "complained").

use super::keywords::{
    ADDRESS, COMPLAINT, DISCOUNT, GREETING, HOURS, NEEDS_PERSON, OFFERS, PHONE, PRICE, REFUND,
    TEST_RIDE,
};

/// Questions the offline responder can answer from the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Topic {
    Price,
    Offers,
    TestRide,
    Hours,
    Address,
    Phone,
}

/// Reasons a message goes to a person at once, with no other answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Handoff {
    Complaint,
    Refund,
    Discount,
}

/// Topics and handoff reason detected in a customer message.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Intent {
    pub handoff: Option<Handoff>,
    /// Answerable topics in the order the reply should list them.
    pub topics: Vec<Topic>,
    /// The message requests information that no profile contains, such as EMI or delivery dates.
    pub needs_person: bool,
    pub is_greeting: bool,
}

const TOPIC_KEYWORDS: [(Topic, &[&str]); 6] = [
    (Topic::Price, PRICE),
    (Topic::Offers, OFFERS),
    (Topic::TestRide, TEST_RIDE),
    (Topic::Hours, HOURS),
    (Topic::Address, ADDRESS),
    (Topic::Phone, PHONE),
];

/// Classifies a customer message. Complaints win over refunds, and refunds over discounts,
/// when a message matches more than one.
pub(super) fn detect_intent(text: &NormalizedText) -> Intent {
    let handoff = if text.contains_any(COMPLAINT) {
        Some(Handoff::Complaint)
    } else if text.contains_any(REFUND) {
        Some(Handoff::Refund)
    } else if text.contains_any(DISCOUNT) {
        Some(Handoff::Discount)
    } else {
        None
    };

    let topics = TOPIC_KEYWORDS
        .iter()
        .filter(|(_, keywords)| text.contains_any(keywords))
        .map(|(topic, _)| *topic)
        .collect();

    Intent {
        handoff,
        topics,
        needs_person: text.contains_any(NEEDS_PERSON),
        is_greeting: text.contains_any(GREETING),
    }
}

/// A message as lowercase words separated by single spaces, with a space at each end so that
/// every word, the first and last included, can be found as " word ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NormalizedText(String);

impl NormalizedText {
    pub fn new(text: &str) -> Self {
        let mut normalized = String::with_capacity(text.len() + 2);
        normalized.push(' ');
        for c in text.chars().flat_map(char::to_lowercase) {
            let Some(c) = fold_devanagari(c) else {
                continue;
            };
            if is_word_char(c) {
                normalized.push(c);
            } else if !normalized.ends_with(' ') {
                normalized.push(' ');
            }
        }
        if !normalized.ends_with(' ') {
            normalized.push(' ');
        }
        Self(normalized)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns whether any keyword of a table matches, with the matching rules of the module
    /// docs. A table is a list of lines of keywords separated by `|`.
    pub fn contains_any(&self, table: &[&str]) -> bool {
        keywords(table).any(|keyword| self.contains_keyword(keyword))
    }

    fn contains_keyword(&self, keyword: &str) -> bool {
        match keyword.strip_suffix('*') {
            Some(stem) => self.0.contains(&format!(" {stem}")),
            None => self.0.contains(&format!(" {keyword} ")),
        }
    }

    /// Returns whether the words of `phrase`, normalized, appear here in sequence.
    pub fn contains_phrase(&self, phrase: &NormalizedText) -> bool {
        !phrase.is_blank() && self.0.contains(&phrase.0)
    }

    fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

fn keywords<'a>(table: &'a [&'a str]) -> impl Iterator<Item = &'a str> {
    table.iter().flat_map(|line| line.split('|')).map(str::trim)
}

/// Returns whether the text contains a letter of the Devanagari block.
pub(super) fn has_devanagari(text: &str) -> bool {
    text.chars().any(|c| is_devanagari(c) && c.is_alphabetic())
}

fn is_devanagari(c: char) -> bool {
    ('\u{0900}'..='\u{097F}').contains(&c)
}

/// Word characters are letters and digits of any script, plus the Devanagari vowel signs and
/// virama, which Unicode does not class as alphanumeric but which sit inside words.
fn is_word_char(c: char) -> bool {
    const DANDA: char = '\u{0964}';
    const DOUBLE_DANDA: char = '\u{0965}';
    c.is_alphanumeric() || (is_devanagari(c) && c != DANDA && c != DOUBLE_DANDA)
}

/// Folds the spelling variants that customers mix freely: a nukta is dropped (also from the
/// precomposed letters U+0958..U+095F) and chandrabindu becomes anusvara.
fn fold_devanagari(c: char) -> Option<char> {
    match c {
        '\u{093C}' => None,
        '\u{0901}' => Some('\u{0902}'),
        '\u{0958}' => Some('\u{0915}'),
        '\u{0959}' => Some('\u{0916}'),
        '\u{095A}' => Some('\u{0917}'),
        '\u{095B}' => Some('\u{091C}'),
        '\u{095C}' => Some('\u{0921}'),
        '\u{095D}' => Some('\u{0922}'),
        '\u{095E}' => Some('\u{092B}'),
        '\u{095F}' => Some('\u{092F}'),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::super::keywords::ALL;
    use super::*;

    fn intent(message: &str) -> Intent {
        detect_intent(&NormalizedText::new(message))
    }

    #[test]
    fn normalize_lowercases_and_splits_words() {
        let text = NormalizedText::new("Jupiter ZX ka PRICE??  kitne-ka hai!");
        assert_eq!(text.as_str(), " jupiter zx ka price kitne ka hai ");
    }

    #[test]
    fn normalize_keeps_devanagari_words_whole() {
        let text = NormalizedText::new("ज्युपिटर की कीमत क्या है।");
        assert_eq!(text.as_str(), " ज्युपिटर की कीमत क्या है ");
    }

    #[test]
    fn normalize_folds_nukta_and_chandrabindu() {
        assert_eq!(NormalizedText::new("क़ीमत").as_str(), " कीमत ");
        assert_eq!(NormalizedText::new("क\u{093C}ीमत").as_str(), " कीमत ");
        assert_eq!(NormalizedText::new("कहाँ").as_str(), " कहां ");
        assert_eq!(NormalizedText::new("थोड़ा").as_str(), " थोडा ");
    }

    #[test]
    fn keyword_tables_are_normalized() {
        for keyword in ALL.iter().flat_map(|table| keywords(table)) {
            let words = keyword.trim_end_matches('*');
            assert!(!words.is_empty(), "empty keyword in a table");
            let normalized = NormalizedText::new(words);
            assert_eq!(normalized.as_str().trim(), words, "keyword {keyword:?}");
        }
    }

    #[test]
    fn keywords_match_whole_words_or_stems() {
        let text = NormalizedText::new("I want to complain about the showroom");
        assert!(text.contains_any(&["complain*"]));
        assert!(text.contains_any(&["showroom"]));
        assert!(!text.contains_any(&["show"]));
        assert!(!text.contains_any(&["room*"]));
    }

    #[test]
    fn price_questions() {
        let messages = [
            "Jupiter ZX price?",
            "what is the on-road cost of ntorq",
            "Jupiter kitne ka hai?",
            "bhai jupiter ki kimat batao",
            "ntorq ka rate kya hai",
            "Jupiter kiti la ahe?",
            "ntorq chi kimmat sang na",
            "ज्युपिटर की कीमत क्या है?",
            "ज्युपिटरची किंमत किती आहे?",
            "एनटॉर्क कितने का है",
        ];
        for message in messages {
            let intent = intent(message);
            assert_eq!(intent.topics, vec![Topic::Price], "{message}");
            assert_eq!(intent.handoff, None, "{message}");
        }
    }

    #[test]
    fn hours_questions() {
        let messages = [
            "What are your showroom timings?",
            "showroom kab khulta hai",
            "kitne baje band hota hai showroom",
            "sunday ko open hai kya",
            "showroom chi vel kay ahe",
            "showroom kiti vajta ughadta",
            "शोरूम कब खुलता है?",
            "शोरूमची वेळ काय आहे",
        ];
        for message in messages {
            assert_eq!(intent(message).topics, vec![Topic::Hours], "{message}");
        }
    }

    #[test]
    fn test_ride_questions() {
        let messages = [
            "Can I take a test ride tomorrow?",
            "test ride milega kya?",
            "test-drive available hai?",
            "mala test ride gheta yeil ka",
            "क्या टेस्ट राइड मिलेगी?",
            "टेस्ट राईड मिळेल का?",
        ];
        for message in messages {
            let intent = intent(message);
            assert!(intent.topics.contains(&Topic::TestRide), "{message}");
            assert_eq!(intent.handoff, None, "{message}");
        }
    }

    #[test]
    fn address_and_phone_questions() {
        assert_eq!(intent("showroom kaha hai?").topics, vec![Topic::Address]);
        assert_eq!(
            intent("tumcha showroom kuthe ahe").topics,
            vec![Topic::Address]
        );
        assert_eq!(intent("शोरूम का पता भेजो").topics, vec![Topic::Address]);
        assert_eq!(
            intent("send me your phone number").topics,
            vec![Topic::Phone]
        );
    }

    #[test]
    fn handoff_messages() {
        let cases = [
            (
                "My scooter is not starting, very bad service",
                Handoff::Complaint,
            ),
            ("gaadi 2 din me kharab ho gayi", Handoff::Complaint),
            ("गाड़ी खराब हो गई है", Handoff::Complaint),
            ("माझी गाडी बिघडली आहे, तक्रार करायची आहे", Handoff::Complaint),
            ("I want a refund of my booking amount", Handoff::Refund),
            (
                "booking cancel karna hai, paise wapas chahiye",
                Handoff::Refund,
            ),
            ("मला पैसे परत हवे आहेत", Handoff::Refund),
            ("Jupiter pe kitna discount milega?", Handoff::Discount),
            ("bhai last price bolo, thoda kam karo", Handoff::Discount),
            ("thoda kami kara na sir", Handoff::Discount),
            ("थोड़ा कम कीजिए", Handoff::Discount),
            ("काही सवलत मिळेल का?", Handoff::Discount),
        ];
        for (message, expected) in cases {
            assert_eq!(intent(message).handoff, Some(expected), "{message}");
        }
    }

    #[test]
    fn several_topics_in_one_message() {
        let intent = intent("Jupiter ka price batao aur test ride milega? showroom timing kya hai");
        assert_eq!(
            intent.topics,
            vec![Topic::Price, Topic::TestRide, Topic::Hours]
        );
    }

    #[test]
    fn unanswerable_subjects_need_person() {
        for message in [
            "EMI kitna banega?",
            "delivery kab milegi",
            "red colour available hai?",
        ] {
            assert!(intent(message).needs_person, "{message}");
        }
        assert!(!intent("Jupiter price?").needs_person);
    }

    #[test]
    fn greetings() {
        for message in [
            "Hi",
            "Hello sir",
            "namaskar",
            "Ram Ram",
            "नमस्ते",
            "नमस्कार 🙏",
        ] {
            let intent = intent(message);
            assert!(intent.is_greeting, "{message}");
            assert!(intent.topics.is_empty(), "{message}");
        }
    }

    #[test]
    fn devanagari_detection() {
        assert!(has_devanagari("Jupiter की कीमत"));
        assert!(!has_devanagari("Jupiter kitne ka hai"));
        assert!(!has_devanagari("Price? ।"));
    }
}
