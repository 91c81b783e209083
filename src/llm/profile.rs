use serde::{Deserialize, Serialize};

/// Dealership facts that a tenant configures as JSON, the only source of prices, offers and
/// showroom details for auto-replies.
///
/// Every field is optional. A question whose answer is missing here goes to a person.
///
/// ```json
/// {
///   "dealership": "Sai Motors",
///   "city": "Aurangabad",
///   "greeting": "Namaste! Welcome to Sai Motors, your TVS dealer in Aurangabad.",
///   "models": [
///     {"name": "Jupiter ZX", "on_road_price": "Rs 87,500", "notes": "Includes insurance"}
///   ],
///   "offers": ["Free helmet with every scooter until 31 October"],
///   "test_ride": "Free test rides every day; bring your licence",
///   "hours": "Mon-Sat 10:00-19:00, Sun 10:00-14:00",
///   "address": "Plot 12, Jalna Road, Aurangabad 431001",
///   "phone": "+91 240 123 4567"
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DealershipProfile {
    /// Name shown to customers, used in place of the tenant name when present.
    pub dealership: Option<String>,
    pub city: Option<String>,
    /// Reply to a message that only greets.
    pub greeting: Option<String>,
    pub models: Vec<VehicleModel>,
    pub offers: Vec<String>,
    /// Test ride terms as free text.
    pub test_ride: Option<String>,
    /// Showroom opening hours as free text.
    pub hours: Option<String>,
    pub address: Option<String>,
    pub phone: Option<String>,
}

/// A vehicle model the dealership sells.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VehicleModel {
    pub name: String,
    /// On-road price as the dealership writes it, currency included, e.g. "Rs 87,500".
    pub on_road_price: Option<String>,
    pub notes: Option<String>,
}

impl DealershipProfile {
    /// Parses a profile, treating `null` as empty and dropping blank strings, unnamed models
    /// and blank offers so that callers can treat `Some` as a usable fact.
    ///
    /// Fails when the value is neither `null` nor an object, or a field has the wrong type.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        if value.is_null() {
            return Ok(Self::default());
        }
        // serde would otherwise accept an array and fill the fields by position.
        if !value.is_object() {
            return Err(serde::de::Error::custom(
                "the dealership profile must be a JSON object",
            ));
        }
        let mut profile = Self::deserialize(value)?;

        for field in [
            &mut profile.dealership,
            &mut profile.city,
            &mut profile.greeting,
            &mut profile.test_ride,
            &mut profile.hours,
            &mut profile.address,
            &mut profile.phone,
        ] {
            trim_option(field);
        }

        profile.offers = profile
            .offers
            .into_iter()
            .map(|offer| offer.trim().to_owned())
            .filter(|offer| !offer.is_empty())
            .collect();

        for model in &mut profile.models {
            model.name = model.name.trim().to_owned();
            trim_option(&mut model.on_road_price);
            trim_option(&mut model.notes);
        }
        profile.models.retain(|model| !model.name.is_empty());

        Ok(profile)
    }
}

fn trim_option(field: &mut Option<String>) {
    *field = field
        .take()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documented_example_parses() {
        let profile = DealershipProfile::from_json(&json!({
            "dealership": "Sai Motors",
            "city": "Aurangabad",
            "greeting": "Namaste! Welcome to Sai Motors.",
            "models": [{"name": "Jupiter ZX", "on_road_price": "Rs 87,500", "notes": "Disc"}],
            "offers": ["Free helmet"],
            "test_ride": "Free test rides every day; bring your licence",
            "hours": "Mon-Sat 10:00-19:00, Sun 10:00-14:00",
            "address": "Plot 12, Jalna Road",
            "phone": "+91 240 123 4567"
        }))
        .unwrap();

        assert_eq!(profile.dealership.as_deref(), Some("Sai Motors"));
        assert_eq!(profile.models.len(), 1);
        assert_eq!(
            profile.models[0].on_road_price.as_deref(),
            Some("Rs 87,500")
        );
        assert_eq!(profile.offers, vec!["Free helmet".to_owned()]);
        assert_eq!(profile.phone.as_deref(), Some("+91 240 123 4567"));
    }

    #[test]
    fn null_and_empty_object_give_default() {
        assert_eq!(
            DealershipProfile::from_json(&serde_json::Value::Null).unwrap(),
            DealershipProfile::default()
        );
        assert_eq!(
            DealershipProfile::from_json(&json!({})).unwrap(),
            DealershipProfile::default()
        );
    }

    #[test]
    fn blank_values_are_dropped() {
        let profile = DealershipProfile::from_json(&json!({
            "hours": "  ",
            "address": " Jalna Road ",
            "offers": ["", "  Free helmet "],
            "models": [{"name": " "}, {"name": "Ntorq 125", "on_road_price": ""}],
            "extra_field": "kept for templates, ignored here"
        }))
        .unwrap();

        assert_eq!(profile.hours, None);
        assert_eq!(profile.address.as_deref(), Some("Jalna Road"));
        assert_eq!(profile.offers, vec!["Free helmet".to_owned()]);
        assert_eq!(profile.models.len(), 1);
        assert_eq!(profile.models[0].name, "Ntorq 125");
        assert_eq!(profile.models[0].on_road_price, None);
    }

    #[test]
    fn wrong_types_are_rejected() {
        assert!(DealershipProfile::from_json(&json!({"models": "Jupiter"})).is_err());
        assert!(DealershipProfile::from_json(&json!(["Sai Motors"])).is_err());
    }
}
