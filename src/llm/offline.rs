//! Auto-replies from keyword rules, used when no LLM is configured.

mod intent;
mod keywords;

use intent::{detect_intent, has_devanagari, Handoff, Intent, NormalizedText, Topic};

use super::{DealershipProfile, ReplyContext, ReplyError, VehicleModel};

/// Keyword-rule responder for greetings and for questions about prices, offers, test rides,
/// showroom hours, address and phone number, with facts only from the dealership profile.
///
/// A question that the profile does not answer, a complaint, a refund request or a discount
/// request gets a reply that a person from the dealership will follow up.
#[derive(Debug, Clone, Default)]
pub struct OfflineResponder;

impl OfflineResponder {
    pub fn new() -> Self {
        Self
    }

    /// Produces the reply to the last customer message of `ctx`.
    ///
    /// The reply is in Devanagari when the message contains Devanagari, and in English
    /// otherwise.
    // NOTE: Devanagari replies use Hindi wording for Marathi customers too, because script alone
    // does not tell Hindi from Marathi. Romanised Hindi and Marathi get English replies.
    pub fn reply(&self, ctx: &ReplyContext) -> Result<String, ReplyError> {
        let message = ctx
            .customer_message()
            .ok_or(ReplyError::NoCustomerMessage)?;

        let profile = DealershipProfile::from_json(&ctx.profile).unwrap_or_else(|error| {
            tracing::warn!(
                tenant = %ctx.tenant_name,
                %error,
                "invalid dealership profile; offline auto-replies hand every question to a person"
            );
            DealershipProfile::default()
        });

        let phrases = if has_devanagari(message) {
            &DEVANAGARI
        } else {
            &ENGLISH
        };
        let writer = ReplyWriter {
            phrases,
            profile: &profile,
            dealership: profile.dealership.as_deref().unwrap_or(&ctx.tenant_name),
        };

        let text = NormalizedText::new(message);
        let intent = detect_intent(&text);
        Ok(writer.compose(&intent, &text, ctx.customer_name.as_deref()))
    }
}

/// Reply wording in one script. `{dealership}`, `{customer}`, `{model}` and `{price}` are
/// placeholders.
struct Phrases {
    devanagari: bool,
    greeting: &'static str,
    prices_heading: &'static str,
    price_of: &'static str,
    price_missing: &'static str,
    no_prices: &'static str,
    offers_heading: &'static str,
    no_offers: &'static str,
    test_ride: &'static str,
    no_test_ride: &'static str,
    hours: &'static str,
    no_hours: &'static str,
    address: &'static str,
    no_address: &'static str,
    phone: &'static str,
    no_phone: &'static str,
    unknown: &'static str,
    person: &'static str,
    complaint: &'static str,
    refund: &'static str,
    discount: &'static str,
}

const ENGLISH: Phrases = Phrases {
    devanagari: false,
    greeting: "Namaste{customer}! Welcome to {dealership}. You can ask about prices, offers, \
               test rides, showroom hours or our address.",
    prices_heading: "On-road prices at {dealership}:",
    price_of: "On-road price of {model}: {price}",
    price_missing: "I don't have the on-road price of {model} here.",
    no_prices: "I don't have the prices here.",
    offers_heading: "Current offers at {dealership}:",
    no_offers: "I don't have the current offers here.",
    test_ride: "Test rides",
    no_test_ride: "I don't have the test ride details here.",
    hours: "Showroom hours",
    no_hours: "I don't have the showroom hours here.",
    address: "Address",
    no_address: "I don't have the showroom address here.",
    phone: "Phone",
    no_phone: "I don't have the phone number here.",
    unknown: "I don't have the answer to that here.",
    person: "A person from {dealership} will reply to you soon.",
    complaint: "Sorry for the trouble. A person from {dealership} will contact you soon.",
    refund: "A person from {dealership} will contact you soon about the refund.",
    discount: "Discounts are decided by our team. A person from {dealership} will reply to \
               you soon.",
};

const DEVANAGARI: Phrases = Phrases {
    devanagari: true,
    greeting: "नमस्ते{customer}! {dealership} में आपका स्वागत है। आप कीमत, ऑफर, टेस्ट राइड, \
               शोरूम का समय या पता पूछ सकते हैं।",
    prices_heading: "{dealership} में ऑन-रोड कीमतें:",
    price_of: "{model} की ऑन-रोड कीमत: {price}",
    price_missing: "{model} की ऑन-रोड कीमत की जानकारी मेरे पास नहीं है।",
    no_prices: "कीमतों की जानकारी मेरे पास नहीं है।",
    offers_heading: "{dealership} में मौजूदा ऑफर:",
    no_offers: "मौजूदा ऑफर की जानकारी मेरे पास नहीं है।",
    test_ride: "टेस्ट राइड",
    no_test_ride: "टेस्ट राइड की जानकारी मेरे पास नहीं है।",
    hours: "शोरूम का समय",
    no_hours: "शोरूम के समय की जानकारी मेरे पास नहीं है।",
    address: "पता",
    no_address: "शोरूम के पते की जानकारी मेरे पास नहीं है।",
    phone: "फोन",
    no_phone: "फोन नंबर की जानकारी मेरे पास नहीं है।",
    unknown: "इसकी जानकारी मेरे पास नहीं है।",
    person: "{dealership} से कोई व्यक्ति जल्द ही आपको जवाब देगा।",
    complaint: "असुविधा के लिए खेद है। {dealership} से कोई व्यक्ति जल्द ही आपसे संपर्क करेगा।",
    refund: "रिफंड के बारे में {dealership} से कोई व्यक्ति जल्द ही आपसे संपर्क करेगा।",
    discount: "छूट हमारी टीम तय करती है। {dealership} से कोई व्यक्ति जल्द ही आपको जवाब देगा।",
};

struct ReplyWriter<'a> {
    phrases: &'static Phrases,
    profile: &'a DealershipProfile,
    dealership: &'a str,
}

impl ReplyWriter<'_> {
    fn compose(
        &self,
        intent: &Intent,
        text: &NormalizedText,
        customer_name: Option<&str>,
    ) -> String {
        let phrases = self.phrases;
        if let Some(handoff) = intent.handoff {
            let phrase = match handoff {
                Handoff::Complaint => phrases.complaint,
                Handoff::Refund => phrases.refund,
                Handoff::Discount => phrases.discount,
            };
            return self.fill(phrase);
        }

        let mut lines = Vec::new();
        let mut needs_person = intent.needs_person;
        for topic in &intent.topics {
            let answered = match topic {
                Topic::Price => self.write_prices(text, &mut lines),
                Topic::Offers => self.write_offers(&mut lines),
                Topic::TestRide => {
                    let fact = self.profile.test_ride.as_deref();
                    write_fact(&mut lines, phrases.test_ride, fact, phrases.no_test_ride)
                }
                Topic::Hours => {
                    let fact = self.profile.hours.as_deref();
                    write_fact(&mut lines, phrases.hours, fact, phrases.no_hours)
                }
                Topic::Address => {
                    let fact = self.profile.address.as_deref();
                    write_fact(&mut lines, phrases.address, fact, phrases.no_address)
                }
                Topic::Phone => {
                    let fact = self.profile.phone.as_deref();
                    write_fact(&mut lines, phrases.phone, fact, phrases.no_phone)
                }
            };
            needs_person |= !answered;
        }

        if lines.is_empty() {
            if intent.is_greeting && !needs_person {
                return self.greeting(customer_name);
            }
            lines.push(phrases.unknown.to_owned());
            needs_person = true;
        }
        if needs_person {
            lines.push(self.fill(phrases.person));
        }
        lines.join("\n")
    }

    /// Writes the price of each model the message names, or of every priced model when it
    /// names none. Returns false when a price the customer asked for is not configured.
    fn write_prices(&self, text: &NormalizedText, lines: &mut Vec<String>) -> bool {
        let phrases = self.phrases;
        let named = models_named(text, &self.profile.models);

        if named.is_empty() {
            // The message names no model of the profile, so list every model with a price.
            // Models without a configured price are left out rather than guessed.
            let priced: Vec<&VehicleModel> = self
                .profile
                .models
                .iter()
                .filter(|model| model.on_road_price.is_some())
                .collect();
            if priced.is_empty() {
                lines.push(phrases.no_prices.to_owned());
                return false;
            }
            lines.push(self.fill(phrases.prices_heading));
            for model in priced {
                lines.push(price_line(model, "- {model}: {price}"));
            }
            return true;
        }

        if let [model] = named.as_slice() {
            if model.on_road_price.is_none() {
                lines.push(phrases.price_missing.replace("{model}", &model.name));
                return false;
            }
            lines.push(price_line(model, phrases.price_of));
            return true;
        }

        lines.push(self.fill(phrases.prices_heading));
        let mut all_known = true;
        for model in named {
            if model.on_road_price.is_none() {
                lines.push(phrases.price_missing.replace("{model}", &model.name));
                all_known = false;
            } else {
                lines.push(price_line(model, "- {model}: {price}"));
            }
        }
        all_known
    }

    fn write_offers(&self, lines: &mut Vec<String>) -> bool {
        if self.profile.offers.is_empty() {
            lines.push(self.phrases.no_offers.to_owned());
            return false;
        }
        lines.push(self.fill(self.phrases.offers_heading));
        for offer in &self.profile.offers {
            lines.push(format!("- {offer}"));
        }
        true
    }

    /// Returns the dealership's own greeting when it is written in the reply's script, and the
    /// built-in greeting otherwise.
    fn greeting(&self, customer_name: Option<&str>) -> String {
        if let Some(greeting) = &self.profile.greeting {
            if has_devanagari(greeting) == self.phrases.devanagari {
                return greeting.clone();
            }
        }
        let customer = customer_name
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| format!(" {name}"))
            .unwrap_or_default();
        self.fill(self.phrases.greeting)
            .replace("{customer}", &customer)
    }

    fn fill(&self, phrase: &str) -> String {
        phrase.replace("{dealership}", self.dealership)
    }
}

/// Writes "label: fact", or the missing-fact phrase. Returns whether the fact was known.
fn write_fact(lines: &mut Vec<String>, label: &str, fact: Option<&str>, missing: &str) -> bool {
    match fact {
        Some(fact) => {
            lines.push(format!("{label}: {fact}"));
            true
        }
        None => {
            lines.push(missing.to_owned());
            false
        }
    }
}

/// Fills `pattern` with the model's name and price, and appends its notes in brackets.
fn price_line(model: &VehicleModel, pattern: &str) -> String {
    let price = model.on_road_price.as_deref().unwrap_or_default();
    let line = pattern
        .replace("{model}", &model.name)
        .replace("{price}", price);
    match &model.notes {
        Some(notes) => format!("{line} ({notes})"),
        None => line,
    }
}

/// Returns the models whose names the message mentions best. A full name outranks any partial
/// match, so "jupiter zx" picks "Jupiter ZX" alone, while "jupiter" picks both "Jupiter ZX"
/// and "Jupiter Classic".
// NOTE: names are matched as written in the profile, so "ज्युपिटर" does not match "Jupiter"
// and a Devanagari question gets the whole price list.
fn models_named<'a>(text: &NormalizedText, models: &'a [VehicleModel]) -> Vec<&'a VehicleModel> {
    let mut best_score = 0;
    let mut best = Vec::new();
    for model in models {
        let score = name_match_score(text, &model.name);
        if score == 0 || score < best_score {
            continue;
        }
        if score > best_score {
            best_score = score;
            best.clear();
        }
        best.push(model);
    }
    best
}

/// Scores how well the message names a model: the number of the name's words it contains,
/// plus 1,000 when it contains the whole name. Words without a letter, such as "125", do not
/// count on their own because customers use numbers for other things.
fn name_match_score(text: &NormalizedText, name: &str) -> usize {
    const FULL_NAME_BONUS: usize = 1_000;

    let name = NormalizedText::new(name);
    let matched_words = name
        .as_str()
        .split_whitespace()
        .filter(|word| word.chars().any(char::is_alphabetic))
        .filter(|word| text.contains_any(&[word]))
        .count();
    if matched_words > 0 && text.contains_phrase(&name) {
        FULL_NAME_BONUS + matched_words
    } else {
        matched_words
    }
}

#[cfg(test)]
mod tests;
