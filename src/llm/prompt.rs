//! System prompt rendering with minijinja.
//!
//! A template receives every field of the dealership profile at the top level (`dealership`,
//! `models`, `hours`...), plus `tenant_name` and `customer_name`, which take precedence over
//! profile fields of the same name. Missing fields are undefined, so `{% if hours %}` is false
//! and `{{ hours }}` renders as empty text.

use std::sync::LazyLock;

use minijinja::{AutoEscape, Environment, Error, ErrorKind};
use serde_json::{Map, Value};

use super::{ReplyContext, ReplyError};

const DEFAULT_TEMPLATE_NAME: &str = "auto_reply.md.j2";
const DEFAULT_TEMPLATE: &str = include_str!("../../prompts/auto_reply.md.j2");

/// Maximum number of template instructions that one render may execute. Tenants write their
/// own templates, and without a limit a nested loop over `range()` could keep a worker thread
/// busy for minutes. The default template with 100 models and 20 offers uses about 2,600
/// (measured with minijinja 2.24).
const RENDER_FUEL: u64 = 100_000;

static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    // Prompts are plain text, so profile values such as "Rs 87,500 & free helmet" must not be
    // HTML-escaped whatever the template is called.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(RENDER_FUEL));
    env.add_template(DEFAULT_TEMPLATE_NAME, DEFAULT_TEMPLATE)
        .expect("the default prompt template compiles");
    env
});

/// Renders the system prompt from the tenant's template, or from the default template when the
/// tenant has none (or a blank one).
///
/// Fails with [`ReplyError::Template`] when the template does not compile, fails at render
/// time, runs out of fuel or renders to blank text.
pub fn render_system_prompt(ctx: &ReplyContext) -> Result<String, ReplyError> {
    let values = template_values(ctx);

    let rendered = match ctx.prompt_template.as_deref() {
        Some(source) if !source.trim().is_empty() => ENVIRONMENT.render_str(source, &values)?,
        _ => ENVIRONMENT
            .get_template(DEFAULT_TEMPLATE_NAME)?
            .render(&values)?,
    };

    let prompt = rendered.trim();
    if prompt.is_empty() {
        let error = Error::new(
            ErrorKind::InvalidOperation,
            "the prompt template rendered to blank text",
        );
        return Err(error.into());
    }
    Ok(prompt.to_owned())
}

/// Compiles a tenant's template without rendering it, so that a syntax error can be reported
/// when the template is saved rather than at the first customer message.
pub fn validate_template(source: &str) -> Result<(), ReplyError> {
    ENVIRONMENT.template_from_str(source)?;
    Ok(())
}

fn template_values(ctx: &ReplyContext) -> Map<String, Value> {
    // A profile that is not a JSON object has no fields to offer, and the default template
    // then states that no prices or offers are configured.
    let mut values = match &ctx.profile {
        Value::Object(fields) => fields.clone(),
        _ => Map::new(),
    };

    values.insert("tenant_name".to_owned(), ctx.tenant_name.clone().into());
    match &ctx.customer_name {
        Some(name) if !name.trim().is_empty() => {
            values.insert("customer_name".to_owned(), name.trim().into());
        }
        // Left undefined rather than null, because minijinja renders null as "none".
        _ => {
            values.remove("customer_name");
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::llm::{Role, Turn};

    fn context(profile: Value, template: Option<&str>) -> ReplyContext {
        ReplyContext {
            tenant_name: "sai-motors-aurangabad".to_owned(),
            profile,
            prompt_template: template.map(str::to_owned),
            customer_name: Some("Ravi Patil".to_owned()),
            history: vec![Turn {
                role: Role::Customer,
                text: "Jupiter kitne ka hai?".to_owned(),
            }],
        }
    }

    fn full_profile() -> Value {
        json!({
            "dealership": "Sai Motors",
            "city": "Aurangabad",
            "greeting": "Namaste! Welcome to Sai Motors.",
            "models": [
                {"name": "Jupiter ZX", "on_road_price": "Rs 87,500", "notes": "Disc brake"},
                {"name": "Ntorq 125"}
            ],
            "offers": ["Free helmet & raincoat with every scooter"],
            "test_ride": "Free test rides every day; bring your licence",
            "hours": "Mon-Sat 10:00-19:00, Sun 10:00-14:00",
            "address": "Plot 12, Jalna Road",
            "phone": "+91 240 123 4567"
        })
    }

    #[test]
    fn default_prompt_contains_profile_facts() {
        let prompt = render_system_prompt(&context(full_profile(), None)).unwrap();

        assert!(prompt.starts_with("You are the WhatsApp assistant of Sai Motors"));
        assert!(prompt.contains("a vehicle dealership in Aurangabad, India."));
        assert!(prompt.contains("The customer's WhatsApp profile name is Ravi Patil."));
        assert!(prompt.contains("  - Jupiter ZX: Rs 87,500 (Disc brake)\n"));
        assert!(prompt.contains("  - Ntorq 125: no on-road price configured"));
        assert!(prompt.ends_with("  - Free helmet & raincoat with every scooter"));
        assert!(prompt.contains("- Test rides: Free test rides every day; bring your licence\n"));
        assert!(prompt.contains("- Showroom hours: Mon-Sat 10:00-19:00, Sun 10:00-14:00\n"));
        assert!(prompt.contains("- Address: Plot 12, Jalna Road\n"));
        assert!(prompt.contains("- Phone: +91 240 123 4567\n"));
        assert!(prompt.contains("reply with this greeting, translated"));
    }

    #[test]
    fn default_prompt_states_rules() {
        let prompt = render_system_prompt(&context(full_profile(), None)).unwrap();

        assert!(prompt.contains("Reply in the language and script of the customer's latest"));
        assert!(prompt.contains("Devanagari alone does not tell Hindi from Marathi"));
        assert!(prompt.contains("State facts only from the dealership facts below."));
        assert!(prompt.contains("Never invent or estimate a price, discount, offer"));
        assert!(prompt.contains("a person from the dealership will reply"));
        assert!(prompt.contains("Complaints, refund requests and requests for a discount"));
        assert!(prompt.contains("Keep replies short, like a WhatsApp message"));
    }

    #[test]
    fn default_prompt_with_empty_profile() {
        let mut ctx = context(json!({}), None);
        ctx.customer_name = None;
        let prompt = render_system_prompt(&ctx).unwrap();

        assert!(prompt.starts_with(
            "You are the WhatsApp assistant of sai-motors-aurangabad, a vehicle dealership in \
             India."
        ));
        assert!(prompt.contains("No models or prices are configured, so do not quote any"));
        assert!(prompt.contains("No offers are configured, so do not mention any offer"));
        assert!(!prompt.contains("WhatsApp profile name"));
        assert!(!prompt.contains("none"));
        assert!(!prompt.contains("- Showroom hours"));
        assert!(!prompt.contains("greeting, translated"));
        assert!(
            !prompt.contains("\n\n\n"),
            "blank runs left by skipped blocks:\n{prompt}"
        );
    }

    #[test]
    fn non_object_profile_renders_as_empty() {
        for profile in [Value::Null, json!("Sai Motors"), json!([1, 2])] {
            let prompt = render_system_prompt(&context(profile.clone(), None)).unwrap();
            assert!(prompt.contains("No models or prices"), "profile {profile}");
        }
    }

    #[test]
    fn tenant_template_replaces_default() {
        let template =
            "Dealer {{ dealership }} for {{ tenant_name }}; customer {{ customer_name }}; \
                        {% for m in models %}{{ m.name }}={{ m.on_road_price }} {% endfor %}";
        let prompt = render_system_prompt(&context(full_profile(), Some(template))).unwrap();

        assert_eq!(
            prompt,
            "Dealer Sai Motors for sai-motors-aurangabad; customer Ravi Patil; \
             Jupiter ZX=Rs 87,500 Ntorq 125="
        );
    }

    #[test]
    fn tenant_template_is_not_html_escaped() {
        let prompt =
            render_system_prompt(&context(full_profile(), Some("{{ offers[0] }}"))).unwrap();
        assert_eq!(prompt, "Free helmet & raincoat with every scooter");
    }

    #[test]
    fn context_fields_override_profile() {
        let profile = json!({"tenant_name": "spoofed", "customer_name": "spoofed"});
        let mut ctx = context(profile, Some("{{ tenant_name }}|{{ customer_name }}"));
        assert_eq!(
            render_system_prompt(&ctx).unwrap(),
            "sai-motors-aurangabad|Ravi Patil"
        );

        ctx.customer_name = None;
        assert_eq!(
            render_system_prompt(&ctx).unwrap(),
            "sai-motors-aurangabad|"
        );
    }

    #[test]
    fn blank_tenant_template_uses_default() {
        let prompt = render_system_prompt(&context(full_profile(), Some("  \n"))).unwrap();
        assert!(prompt.starts_with("You are the WhatsApp assistant of Sai Motors"));
    }

    #[test]
    fn broken_tenant_templates_are_errors() {
        let cases = [
            ("syntax error", "Hello {% if dealership %}"),
            ("unknown filter", "{{ dealership | shout }}"),
            ("blank output", "{% if nothing %}text{% endif %}"),
            (
                "runaway loop",
                "{% for a in range(1000) %}{% for b in range(1000) %}x{% endfor %}{% endfor %}",
            ),
        ];
        for (case, template) in cases {
            let result = render_system_prompt(&context(full_profile(), Some(template)));
            assert!(
                matches!(result, Err(ReplyError::Template(_))),
                "{case}: {result:?}"
            );
        }
    }

    #[test]
    fn fuel_is_enough_for_large_profile() {
        let models: Vec<Value> = (0..100)
            .map(|i| json!({"name": format!("Model {i}"), "on_road_price": "Rs 1", "notes": "n"}))
            .collect();
        let offers: Vec<Value> = (0..20).map(|i| json!(format!("Offer {i}"))).collect();
        let mut profile = full_profile();
        profile["models"] = Value::Array(models);
        profile["offers"] = Value::Array(offers);

        let prompt = render_system_prompt(&context(profile, None)).unwrap();
        assert!(prompt.contains("  - Model 99: Rs 1 (n)"));
        assert!(prompt.contains("  - Offer 19"));
    }

    #[test]
    fn validate_template_reports_syntax_errors() {
        assert!(validate_template("Hello {{ dealership }}").is_ok());
        assert!(matches!(
            validate_template("Hello {% for %}"),
            Err(ReplyError::Template(_))
        ));
    }
}
