//! Message templates for campaigns and auto-replies: `{name}` placeholders, spintax
//! alternatives `{Hi|Hello}` chosen per recipient, and `{{` / `}}` for literal braces.
//! Parsed once, so a template that could never render right is refused up front.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Variable(String),
    Choice(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    Unclosed {
        at: usize,
    },
    Unopened {
        at: usize,
    },
    Empty {
        at: usize,
    },
    Nested {
        at: usize,
    },
    UnknownVariable {
        name: String,
    },
    /// Braces around something that is neither a placeholder name nor `a|b` choices.
    NotAName {
        at: usize,
        inner: String,
    },
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unclosed { at } => {
                write!(f, "has a {{ at character {at} that is never closed (write {{{{ for a brace)")
            }
            Self::Unopened { at } => {
                write!(f, "has a }} at character {at} that closes nothing (write }}}} for a brace)")
            }
            Self::Empty { at } => write!(f, "has an empty {{}} at character {at}"),
            Self::Nested { at } => write!(f, "nests braces at character {at}, which is not supported"),
            Self::UnknownVariable { name } => write!(f, "uses the placeholder {{{name}}}, which has no value here"),
            Self::NotAName { at, inner } => write!(
                f,
                "has {{{inner}}} at character {at}: a placeholder name is letters, digits and _ (write {{{{ for a brace)"
            ),
        }
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Template {
    /// `known(name)` says whether a placeholder will have a value; others are an error now,
    /// not a literal `{city}` in a customer's chat later.
    pub fn parse(text: &str, known: impl Fn(&str) -> bool) -> Result<Self, TemplateError> {
        let mut parts = vec![];
        let mut literal = String::new();
        let mut chars = text.chars().enumerate().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|(_, n)| *n == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::Unopened { at }),
                '{' => {
                    let mut inner = String::new();
                    loop {
                        match chars.next() {
                            None => return Err(TemplateError::Unclosed { at }),
                            Some((_, '}')) => break,
                            Some((nested, '{')) => return Err(TemplateError::Nested { at: nested }),
                            Some((_, c)) => inner.push(c),
                        }
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(if inner.contains('|') {
                        Part::Choice(inner.split('|').map(str::to_owned).collect())
                    } else if inner.trim().is_empty() {
                        return Err(TemplateError::Empty { at });
                    } else if !is_identifier(inner.trim()) {
                        return Err(TemplateError::NotAName { at, inner });
                    } else if known(inner.trim()) {
                        Part::Variable(inner.trim().to_owned())
                    } else {
                        return Err(TemplateError::UnknownVariable { name: inner });
                    });
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    /// The placeholder names used.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The text for one recipient: `value(name)` fills placeholders (missing: empty), and `seed`
    /// picks each alternative, the same seed always the same text.
    pub fn render(&self, value: impl Fn(&str) -> Option<String>, seed: u64) -> String {
        let mut state = seed;
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Variable(name) => out.push_str(&value(name).unwrap_or_default()),
                Part::Choice(options) => {
                    state = splitmix64(state);
                    out.push_str(&options[(state % options.len() as u64) as usize]);
                }
            }
        }
        out
    }
}

/// A small, well-mixed step (SplitMix64), so nearby seeds pick unrelated alternatives.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> bool {
        ["name", "city"].contains(&name)
    }

    fn vars(name: &str) -> Option<String> {
        match name {
            "name" => Some("Budi".into()),
            _ => None,
        }
    }

    #[test]
    fn placeholders_and_escapes_render() {
        let t = Template::parse("Halo {name}, kota {city} {{ok}} ✓", known).unwrap();
        assert_eq!(t.render(vars, 1), "Halo Budi, kota  {ok} ✓");
        assert_eq!(t.variables().collect::<Vec<_>>(), ["name", "city"]);
    }

    #[test]
    fn spintax_is_deterministic_and_spreads_over_alternatives() {
        let t = Template::parse("{Hi|Hello|Hey} {name}{!|}", known).unwrap();
        assert_eq!(t.render(vars, 7), t.render(vars, 7));
        let seen: std::collections::HashSet<String> = (0..100).map(|seed| t.render(vars, seed)).collect();
        for greeting in ["Hi Budi!", "Hello Budi!", "Hey Budi!", "Hi Budi", "Hello Budi", "Hey Budi"] {
            assert!(seen.contains(greeting), "{greeting} never chosen");
        }
    }

    #[test]
    fn malformed_templates_are_refused_with_where() {
        assert_eq!(Template::parse("a {name", known), Err(TemplateError::Unclosed { at: 2 }));
        assert_eq!(Template::parse("a } b", known), Err(TemplateError::Unopened { at: 2 }));
        assert_eq!(Template::parse("{ }", known), Err(TemplateError::Empty { at: 0 }));
        assert_eq!(Template::parse("{a{b}}", known), Err(TemplateError::Nested { at: 2 }));
        let unknown = Template::parse("in {country}", known).unwrap_err();
        assert_eq!(unknown, TemplateError::UnknownVariable { name: "country".into() });
        assert!(unknown.to_string().contains("{country}"));
        let not_a_name = Template::parse("hi {hello world}", known).unwrap_err();
        assert_eq!(not_a_name, TemplateError::NotAName { at: 3, inner: "hello world".into() });
        assert!(not_a_name.to_string().contains("letters, digits and _"));
    }
}
