//! Keyword tables for the offline responder.
//!
//! Each table is a list of lines of keywords separated by `|`, grouped as English, romanised
//! Hindi and Marathi (with the spellings customers commonly use), then Devanagari. Keywords are
//! written in normalized form: lowercase, single spaces, no nukta, anusvara in place of
//! chandrabindu. A unit test checks this.

pub(super) const COMPLAINT: &[&str] = &[
    "complain* | problem* | issue | issues | not working | not starting | broken | defect*",
    "faulty | damage* | worst | bad service | poor service | fraud | cheat*",
    "shikayat | kharab | kharaab | band pad* | dikkat | pareshan* | bekar | bakwas | dhokha",
    "takrar | bighad* | chalu nahi | start nahi",
    "शिकायत | खराब | समस्या | दिक्कत | परेशान* | बेकार | धोखा | बंद पड* | स्टार्ट नहीं",
    "तक्रार | बिघड* | अडचण | त्रास | चालू नाही | स्टार्ट नाही",
];

pub(super) const REFUND: &[&str] = &[
    "refund* | money back | cancel*",
    "paisa wapas | paise wapas | paisa vapas | paise vapas | paise parat | paisa parat",
    "रिफंड | पैसे वापस | पैसा वापस | पैसे परत | रद्द | कैंसल | कॅन्सल",
];

pub(super) const DISCOUNT: &[&str] = &[
    "discount* | best price | last price | final price | lowest price | best rate | last rate",
    "reduce | less price | cheaper | negotiat* | bargain*",
    "kam karo | kam kar* | kam kijiye | kuch kam | thoda kam | sasta | sasti",
    "kami kara | kami kar* | thoda kami | swasta",
    "डिस्काउंट | छूट | कम करो | कम कर* | कम कीजिए | थोडा कम | सस्ता | लास्ट प्राइस | फाइनल प्राइस",
    "कमी करा | कमी कर* | सवलत | स्वस्त",
];

/// Subjects that only a person can answer, because the profile contains no such facts.
pub(super) const NEEDS_PERSON: &[&str] = &[
    "deliver* | emi | emis | loan | financ* | down payment | downpayment | exchange | stock",
    "available | availability | colour* | color* | booking | book | service | servicing",
    "insurance",
    "डिलीवरी | डिलिवरी | डिलिव्हरी | ईएमआई | लोन | फाइनेंस | फायनान्स | एक्सचेंज | स्टॉक",
    "रंग | कलर | बुकिंग | सर्विस | सर्व्हिस | बीमा | विमा | इंश्योरेंस",
];

// "kitne" and "kiti" alone also ask for a time ("kitne baje", "kiti vajta"), so only the
// phrases that ask for an amount count as price questions.
pub(super) const PRICE: &[&str] = &[
    "price* | prize | rate | rates | cost* | how much | on road | onroad | ex showroom",
    "kimat | keemat | kimmat | keemath | qeemat | kimath | daam | kitne ka | kitne ki",
    "kitne me | kitne mein | kitna hai | kitni hai | kitne paise | kitne rupay* | kitna padega",
    "kiti la | kitila | kiti paise | kiti rupay* | kiti padel | kay rate | rate kay",
    "कीमत | दाम | भाव | रेट | प्राइस | प्राईस | ऑन रोड | कितने का | कितने की | कितने में",
    "कितना है | कितनी है | कितना पड* | कितने रुपये",
    "किंमत | किती ला | किती रुपये | किती पड*",
];

pub(super) const OFFERS: &[&str] = &["offer* | scheme*", "ऑफर* | स्कीम | योजना"];

pub(super) const TEST_RIDE: &[&str] = &[
    "test ride* | testride | test drive* | testdrive | trial | ride | drive",
    "chala ke | chalake | chala kar | chalvun | chalavun",
    "टेस्ट राइड | टेस्ट राईड | टेस्ट ड्राइव | ट्रायल | राइड | राईड | ड्राइव | चलाकर | चला कर",
    "चालवून",
];

pub(super) const HOURS: &[&str] = &[
    "time | timing* | hours | open* | close* | closing | sunday | holiday",
    "khul* | kab band | band kab | band hot* | baje | samay | chutti",
    "vel | vela | veli | vajta | ughad*",
    "समय | टाइम | टाईम | टाइमिंग | खुल* | कब बंद | बंद कब | बंद हो* | बजे | रविवार | छुट्टी",
    "वेळ | वाजता | उघड* | सुट्टी",
];

pub(super) const ADDRESS: &[&str] = &[
    "address* | adress | location | located | where | map | maps | direction*",
    "kaha | kahan | kahaan | kidhar | kithe | kuthe | patta",
    "पता | कहां | किधर | लोकेशन | एड्रेस",
    "पत्ता | कुठे | ठिकाण | ऍड्रेस | ॲड्रेस",
];

pub(super) const PHONE: &[&str] = &[
    "phone | mobile | number | contact | call",
    "फोन | मोबाइल | नंबर | संपर्क | कॉल",
];

pub(super) const GREETING: &[&str] = &[
    "hi | hii | hiii | hello | helo | hey | good morning | good afternoon | good evening",
    "namaste | namaskar | namaskaar | ram ram",
    "नमस्ते | नमस्कार | राम राम | हेलो | हॅलो | हाय",
];

/// Every table, for checks that apply to all keywords.
#[cfg(test)]
pub(super) const ALL: [&[&str]; 11] = [
    COMPLAINT,
    REFUND,
    DISCOUNT,
    NEEDS_PERSON,
    PRICE,
    OFFERS,
    TEST_RIDE,
    HOURS,
    ADDRESS,
    PHONE,
    GREETING,
];
