//! Templates: names with `{ordinal}`, `{pod}`, `{statefulset}` and `{namespace}` placeholders,
//! as `advertised-host: template:…` and `service-annotations` values write them.

/// A name with `{ordinal}`, `{pod}`, `{statefulset}` and `{namespace}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Slot(Placeholder),
}

/// The placeholders a [`Template`] may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    Ordinal,
    Pod,
    StatefulSet,
    Namespace,
}

impl Placeholder {
    const ALL: [(&'static str, Placeholder); 4] = [
        ("ordinal", Placeholder::Ordinal),
        ("pod", Placeholder::Pod),
        ("statefulset", Placeholder::StatefulSet),
        ("namespace", Placeholder::Namespace),
    ];
}

impl Template {
    /// Parses a template; an unknown or unclosed placeholder is an error naming it.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("the placeholder at {:?} is not closed", &rest[open..]))?;
            let name = &after[..close];
            let slot = Placeholder::ALL
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| *p)
                .ok_or_else(|| {
                    format!(
                        "unknown placeholder {{{name}}}; allowed: {{ordinal}} {{pod}} {{statefulset}} {{namespace}}"
                    )
                })?;
            parts.push(Part::Slot(slot));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self {
            parts,
            source: s.to_string(),
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Renders the template, asking `value` for each placeholder.
    pub fn render(&self, value: impl Fn(Placeholder) -> String) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Slot(s) => value(*s),
            })
            .collect()
    }

    /// Whether the template uses placeholder `p`.
    pub fn uses(&self, p: Placeholder) -> bool {
        self.parts.contains(&Part::Slot(p))
    }

    /// The literal text of the template, without its placeholders.
    pub(super) fn literal_text(&self) -> String {
        self.render(|_| String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_each_placeholder() {
        let t = Template::parse("{pod}.{namespace}.{statefulset}-{ordinal}").unwrap();
        let s = t.render(|p| match p {
            Placeholder::Pod => "kafka-1".into(),
            Placeholder::Namespace => "ns".into(),
            Placeholder::StatefulSet => "kafka".into(),
            Placeholder::Ordinal => "1".into(),
        });
        assert_eq!(s, "kafka-1.ns.kafka-1");
        assert!(Template::parse("x{ordinal").is_err());
    }
}
