//! The Envoy configs under `envoy/` are templates with `${NAME}` placeholders (upper-case names).
//! Rendering replaces every placeholder and fails on one it has no value for, so a typo cannot
//! reach Envoy. `scripts/render.py` implements the same rule for the shell scripts.

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("no value for placeholder ${{{0}}}")]
    Unknown(String),
    #[error("`${{` with no closing `}}`")]
    Unclosed,
}

/// Replaces each `${NAME}` in `template` by its value in `vars`.
pub fn render(template: &str, vars: &[(&str, &str)]) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(TemplateError::Unclosed)?;
        let name = &after[..end];
        let value = vars
            .iter()
            .find(|(var, _)| *var == name)
            .map(|(_, value)| *value)
            .ok_or_else(|| TemplateError::Unknown(name.to_owned()))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced() {
        let out = render(
            "port: ${PORT}, again ${PORT}; ${X}",
            &[("PORT", "80"), ("X", "y")],
        );
        assert_eq!(out, Ok("port: 80, again 80; y".to_owned()));
    }

    #[test]
    fn unknown_placeholder_is_an_error() {
        assert_eq!(
            render("a ${NOPE} b", &[]),
            Err(TemplateError::Unknown("NOPE".into()))
        );
        assert_eq!(render("a ${NOPE", &[]), Err(TemplateError::Unclosed));
    }

    #[test]
    fn text_without_placeholders_is_unchanged() {
        assert_eq!(render("a: $b {c}", &[]), Ok("a: $b {c}".to_owned()));
    }
}
