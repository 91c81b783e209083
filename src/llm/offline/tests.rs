use serde_json::{json, Value};

use super::*;
use crate::llm::{Role, Turn};

fn profile() -> Value {
    json!({
        "dealership": "Sai Motors",
        "city": "Aurangabad",
        "greeting": "Namaste! Welcome to Sai Motors, your TVS dealer in Aurangabad.",
        "models": [
            {"name": "Jupiter ZX", "on_road_price": "Rs 87,500", "notes": "Disc brake"},
            {"name": "Jupiter Classic", "on_road_price": "Rs 91,200"},
            {"name": "Ntorq 125", "on_road_price": "Rs 1,02,300"},
            {"name": "Raider 125"}
        ],
        "offers": ["Free helmet with every scooter"],
        "test_ride": "Free test rides every day; bring your licence",
        "hours": "Mon-Sat 10:00-19:00, Sun 10:00-14:00",
        "address": "Plot 12, Jalna Road, Aurangabad",
        "phone": "+91 240 123 4567"
    })
}

fn reply_with(profile: Value, message: &str) -> String {
    let ctx = ReplyContext {
        tenant_name: "sai-motors".to_owned(),
        profile,
        prompt_template: None,
        customer_name: Some("Ravi".to_owned()),
        history: vec![
            Turn {
                role: Role::Business,
                text: "Namaste!".to_owned(),
            },
            Turn {
                role: Role::Customer,
                text: message.to_owned(),
            },
        ],
    };
    OfflineResponder::new().reply(&ctx).unwrap()
}

fn reply(message: &str) -> String {
    reply_with(profile(), message)
}

const PERSON_EN: &str = "A person from Sai Motors will reply to you soon.";
const PERSON_HI: &str = "Sai Motors से कोई व्यक्ति जल्द ही आपको जवाब देगा।";

#[test]
fn greeting_uses_profile_greeting() {
    for message in ["Hi", "hello sir", "Namaskar"] {
        assert_eq!(
            reply(message),
            "Namaste! Welcome to Sai Motors, your TVS dealer in Aurangabad.",
            "{message}"
        );
    }
}

#[test]
fn devanagari_greeting_uses_builtin_wording() {
    assert_eq!(
        reply("नमस्ते"),
        "नमस्ते Ravi! Sai Motors में आपका स्वागत है। आप कीमत, ऑफर, टेस्ट राइड, शोरूम का समय \
         या पता पूछ सकते हैं।"
    );
}

#[test]
fn greeting_without_profile_greeting() {
    assert_eq!(
        reply_with(json!({"dealership": "Sai Motors"}), "Hello"),
        "Namaste Ravi! Welcome to Sai Motors. You can ask about prices, offers, test rides, \
         showroom hours or our address."
    );
}

#[test]
fn price_of_named_model() {
    let expected = "On-road price of Jupiter ZX: Rs 87,500 (Disc brake)";
    for message in [
        "Jupiter ZX price?",
        "jupiter zx kitne ka hai",
        "bhai Jupiter-ZX ki kimat batao",
        "Jupiter ZX kiti la ahe?",
    ] {
        assert_eq!(reply(message), expected, "{message}");
    }
}

#[test]
fn price_of_model_family() {
    assert_eq!(
        reply("jupiter ka rate kya hai"),
        "On-road prices at Sai Motors:\n\
         - Jupiter ZX: Rs 87,500 (Disc brake)\n\
         - Jupiter Classic: Rs 91,200"
    );
}

#[test]
fn price_of_model_without_price_offers_person() {
    assert_eq!(
        reply("Raider 125 ki price kya hai?"),
        format!("I don't have the on-road price of Raider 125 here.\n{PERSON_EN}")
    );
}

#[test]
fn price_list_when_no_model_named() {
    let expected = "On-road prices at Sai Motors:\n\
                    - Jupiter ZX: Rs 87,500 (Disc brake)\n\
                    - Jupiter Classic: Rs 91,200\n\
                    - Ntorq 125: Rs 1,02,300";
    assert_eq!(reply("What are your scooter prices?"), expected);
    assert_eq!(reply("Activa kitne ka hai?"), expected);
}

#[test]
fn devanagari_price_question_gets_devanagari_reply() {
    let reply = reply("ज्युपिटर की कीमत क्या है?");
    assert!(reply.starts_with("Sai Motors में ऑन-रोड कीमतें:\n"), "{reply}");
    assert!(
        reply.contains("- Jupiter ZX: Rs 87,500 (Disc brake)"),
        "{reply}"
    );

    // Marathi in Devanagari gets the same Hindi wording.
    let reply = reply_with(profile(), "Ntorq 125 ची किंमत किती आहे?");
    assert_eq!(reply, "Ntorq 125 की ऑन-रोड कीमत: Rs 1,02,300");
}

#[test]
fn price_without_models_offers_person() {
    let profile = json!({"dealership": "Sai Motors"});
    assert_eq!(
        reply_with(profile.clone(), "Jupiter kitne ka hai?"),
        format!("I don't have the prices here.\n{PERSON_EN}")
    );
    assert_eq!(
        reply_with(profile, "ज्युपिटरची किंमत?"),
        format!("कीमतों की जानकारी मेरे पास नहीं है।\n{PERSON_HI}")
    );
}

#[test]
fn test_ride_answers() {
    let expected = "Test rides: Free test rides every day; bring your licence";
    assert_eq!(reply("test ride milega kya?"), expected);
    assert_eq!(
        reply("Can I book a test ride?"),
        format!("{expected}\n{PERSON_EN}")
    );
    assert_eq!(
        reply("क्या टेस्ट राइड मिलेगी?"),
        "टेस्ट राइड: Free test rides every day; bring your licence"
    );
}

#[test]
fn hours_answers() {
    let expected = "Showroom hours: Mon-Sat 10:00-19:00, Sun 10:00-14:00";
    assert_eq!(reply("showroom kab khulta hai?"), expected);
    assert_eq!(reply("showroom chi vel kay ahe"), expected);
    assert_eq!(
        reply("शोरूमची वेळ काय आहे?"),
        "शोरूम का समय: Mon-Sat 10:00-19:00, Sun 10:00-14:00"
    );
}

#[test]
fn address_and_phone_answers() {
    assert_eq!(
        reply("showroom kuthe ahe?"),
        "Address: Plot 12, Jalna Road, Aurangabad"
    );
    assert_eq!(reply("शोरूम कहाँ है?"), "पता: Plot 12, Jalna Road, Aurangabad");
    assert_eq!(reply("your phone number please"), "Phone: +91 240 123 4567");
}

#[test]
fn offers_answers() {
    assert_eq!(
        reply("koi offer chal raha hai?"),
        "Current offers at Sai Motors:\n- Free helmet with every scooter"
    );
    assert_eq!(
        reply_with(json!({"dealership": "Sai Motors"}), "any offers?"),
        format!("I don't have the current offers here.\n{PERSON_EN}")
    );
}

#[test]
fn several_questions_in_one_message() {
    assert_eq!(
        reply("Ntorq 125 ka price aur showroom timing batao"),
        "On-road price of Ntorq 125: Rs 1,02,300\n\
         Showroom hours: Mon-Sat 10:00-19:00, Sun 10:00-14:00"
    );
}

#[test]
fn missing_facts_offer_person() {
    let profile = json!({"dealership": "Sai Motors"});
    assert_eq!(
        reply_with(profile.clone(), "showroom kab khulta hai?"),
        format!("I don't have the showroom hours here.\n{PERSON_EN}")
    );
    assert_eq!(
        reply_with(profile, "टेस्ट राइड मिलेगी क्या?"),
        format!("टेस्ट राइड की जानकारी मेरे पास नहीं है।\n{PERSON_HI}")
    );
}

#[test]
fn unknown_questions_offer_person() {
    let cases = [
        "Do you have a red Jupiter in stock?",
        "Jupiter ki delivery kab tak milegi?",
        "EMI pe milega kya?",
        "what is the mileage?",
    ];
    for message in cases {
        let reply = reply(message);
        assert!(reply.ends_with(PERSON_EN), "{message}: {reply}");
        assert!(!reply.contains("Rs "), "{message}: {reply}");
    }
    assert_eq!(
        reply("माइलेज कितना देती है?"),
        format!("इसकी जानकारी मेरे पास नहीं है।\n{PERSON_HI}")
    );
}

#[test]
fn price_with_unanswerable_part_adds_person() {
    assert_eq!(
        reply("Jupiter ZX price and EMI options?"),
        format!("On-road price of Jupiter ZX: Rs 87,500 (Disc brake)\n{PERSON_EN}")
    );
}

#[test]
fn complaints_refunds_and_discounts_go_to_person() {
    let cases = [
        (
            "Meri Jupiter 2 din me kharab ho gayi, price bhi zyada liya",
            "Sorry for the trouble. A person from Sai Motors will contact you soon.",
        ),
        (
            "Booking cancel karke refund chahiye",
            "A person from Sai Motors will contact you soon about the refund.",
        ),
        (
            "Jupiter ZX ka last price kya hai? thoda kam karo",
            "Discounts are decided by our team. A person from Sai Motors will reply to you soon.",
        ),
        (
            "ntorq var kiti discount milel?",
            "Discounts are decided by our team. A person from Sai Motors will reply to you soon.",
        ),
        (
            "गाड़ी में समस्या है, शिकायत करनी है",
            "असुविधा के लिए खेद है। Sai Motors से कोई व्यक्ति जल्द ही आपसे संपर्क करेगा।",
        ),
        (
            "थोडी सवलत मिळेल का?",
            "छूट हमारी टीम तय करती है। Sai Motors से कोई व्यक्ति जल्द ही आपको जवाब देगा।",
        ),
    ];
    for (message, expected) in cases {
        assert_eq!(reply(message), expected, "{message}");
    }
}

#[test]
fn tenant_name_used_without_dealership() {
    assert_eq!(
        reply_with(json!({}), "what is this?"),
        "I don't have the answer to that here.\nA person from sai-motors will reply to you soon."
    );
}

#[test]
fn invalid_profile_offers_person() {
    let reply = reply_with(json!({"models": "Jupiter Rs 80,000"}), "Jupiter price?");
    assert_eq!(
        reply,
        "I don't have the prices here.\nA person from sai-motors will reply to you soon."
    );
}

#[test]
fn model_matching_prefers_full_name() {
    let models: Vec<VehicleModel> = ["Jupiter", "Jupiter ZX", "Ntorq 125", "Raider 125"]
        .into_iter()
        .map(|name| VehicleModel {
            name: name.to_owned(),
            ..VehicleModel::default()
        })
        .collect();
    let names = |message: &str| -> Vec<String> {
        models_named(&NormalizedText::new(message), &models)
            .into_iter()
            .map(|model| model.name.clone())
            .collect()
    };

    assert_eq!(names("jupiter zx price"), ["Jupiter ZX"]);
    assert_eq!(names("jupiter price"), ["Jupiter"]);
    assert_eq!(names("JUPITER ka rate"), ["Jupiter"]);
    assert_eq!(names("ntorq 125 price"), ["Ntorq 125"]);
    assert_eq!(names("125 cc price"), Vec::<String>::new());
    assert_eq!(names("scooter price"), Vec::<String>::new());
}
