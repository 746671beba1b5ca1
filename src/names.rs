//! The one rule for names people give things: usernames, display names,
//! template, snapshot, course, VM-spec and node names.
//!
//! Names are checked where they enter (HTTP, CSV, CLI), before anything is
//! stored, so stored text never surprises a later reader. Today no path is
//! built from a name (see [`crate::storage`]), but names do end up in file
//! names offered for download, in logs, in UIs and in libvirt metadata: a
//! name that is `..`, holds a `/`, a control character, a bidirectional
//! override or the U+FFFD left by a lossy decoding is one careless join or
//! display away from trouble, and is never what a person meant.
//!
//! Three classes, each a [`Rule`] with a length in characters:
//! - **slugs** (usernames: lowercase; VM-spec and node names: any case): ASCII
//!   letters, digits, `.`, `_`, `-`, starting with a letter or digit — so never
//!   `.`, `..`, a hidden name or something that reads as a command-line option;
//! - **labels** (template and snapshot names, course codes): any script (CJK
//!   included) and inner spaces, but no `/` or `\`, not `.` or `..`, no control
//!   or invisible formatting characters, no U+FFFD, no surrounding spaces;
//! - **text** (course names, display names): as labels, but `/` and `\` are
//!   fine ("C/C++ Programming") since no such text is ever a file name.
//!
//! Invariant: [`Rule::pattern`] (what `openapi.json` documents) accepts exactly
//! what [`Rule::check`] accepts, up to the length, which the document gives as
//! `minLength`/`maxLength`; the tests check both directions.

/// Characters no name may hold: C0/C1 controls, zero-width and bidirectional
/// formatting characters, line/paragraph separators, the byte-order mark and
/// U+FFFD (the trace of a lossy decoding). As a regex class body.
const FORBIDDEN_CLASS: &str =
    r"\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufffd";

fn forbidden(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{feff}'
        | '\u{fffd}')
}

/// What a name may consist of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// ASCII `[a-z0-9._-]` (`uppercase`: also `A-Z`), first a letter or digit.
    Slug { uppercase: bool },
    /// Any script, inner spaces; no `/`, `\`; not `.`/`..`; trimmed.
    Label,
    /// Any script, inner spaces, `/` and `\` too; trimmed unless `untrimmed`
    /// (display names, which are trimmed when stored).
    Text { untrimmed: bool },
}

/// One kind of name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The request field, for messages (callers may name it more precisely).
    pub field: &'static str,
    pub class: Class,
    pub min_chars: usize,
    pub max_chars: usize,
}

pub const USERNAME: Rule = Rule {
    field: "username",
    class: Class::Slug { uppercase: false },
    min_chars: 1,
    max_chars: 64,
};
pub const DISPLAY_NAME: Rule = Rule {
    field: "display_name",
    class: Class::Text { untrimmed: true },
    min_chars: 0,
    max_chars: 128,
};
pub const TEMPLATE_NAME: Rule = Rule {
    field: "name",
    class: Class::Label,
    min_chars: 1,
    max_chars: 100,
};
pub const SNAPSHOT_NAME: Rule = Rule {
    field: "name",
    class: Class::Label,
    min_chars: 1,
    max_chars: 64,
};
pub const COURSE_CODE: Rule = Rule {
    field: "code",
    class: Class::Label,
    min_chars: 1,
    max_chars: 32,
};
pub const COURSE_NAME: Rule = Rule {
    field: "name",
    class: Class::Text { untrimmed: false },
    min_chars: 1,
    max_chars: 200,
};
pub const VM_SPEC_NAME: Rule = Rule {
    field: "name",
    class: Class::Slug { uppercase: true },
    min_chars: 1,
    max_chars: 64,
};
pub const NODE_NAME: Rule = Rule {
    field: "name",
    class: Class::Slug { uppercase: true },
    min_chars: 1,
    max_chars: 64,
};

/// Every rule with the name of its schema in `openapi.json`
/// (`#/components/schemas/<name>`).
pub const SCHEMAS: [(&str, Rule); 8] = [
    ("Username", USERNAME),
    ("DisplayName", DISPLAY_NAME),
    ("TemplateName", TEMPLATE_NAME),
    ("SnapshotName", SNAPSHOT_NAME),
    ("CourseCode", COURSE_CODE),
    ("CourseName", COURSE_NAME),
    ("VmSpecName", VM_SPEC_NAME),
    ("NodeName", NODE_NAME),
];

/// A refused name: which field, what is wrong, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}: it must be {rule}")]
pub struct NameError {
    pub field: String,
    pub problem: String,
    pub rule: String,
}

impl Rule {
    /// Checks `value` for this rule's own field name.
    pub fn check(&self, value: &str) -> Result<(), NameError> {
        self.check_as(self.field, value)
    }

    /// Checks `value`, naming `field` in the message (e.g. `vm_specs[1].name`).
    pub fn check_as(&self, field: &str, value: &str) -> Result<(), NameError> {
        match self.problem(value) {
            None => Ok(()),
            Some(problem) => Err(NameError {
                field: field.to_owned(),
                problem,
                rule: self.describe(),
            }),
        }
    }

    fn problem(&self, value: &str) -> Option<String> {
        let n = value.chars().count();
        if n < self.min_chars {
            return Some("is empty".into());
        }
        if n > self.max_chars {
            return Some(format!("has {n} characters"));
        }
        if let Some(c) = value.chars().find(|&c| forbidden(c)) {
            return Some(if c == '\u{fffd}' {
                "holds U+FFFD (text that was not valid UTF-8?)".into()
            } else {
                format!(
                    "holds the control or formatting character U+{:04X}",
                    c as u32
                )
            });
        }
        match self.class {
            Class::Slug { uppercase } => {
                let ok_char = |c: char| {
                    c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || (uppercase && c.is_ascii_uppercase())
                        || "._-".contains(c)
                };
                if let Some(c) = value.chars().find(|&c| !ok_char(c)) {
                    return Some(format!("holds {c:?}"));
                }
                if value.starts_with(['.', '_', '-']) {
                    return Some("does not start with a letter or digit".into());
                }
            }
            Class::Label | Class::Text { .. } => {
                let trimmed = !matches!(self.class, Class::Text { untrimmed: true });
                if trimmed && value.trim() != value {
                    return Some("has leading or trailing spaces".into());
                }
                if self.class == Class::Label {
                    if let Some(c) = value.chars().find(|&c| c == '/' || c == '\\') {
                        return Some(format!("holds {c:?}"));
                    }
                    if value == "." || value == ".." {
                        return Some(format!("is {value:?}"));
                    }
                }
            }
        }
        None
    }

    /// The rule in words, for messages and the API documentation.
    pub fn describe(&self) -> String {
        let len = if self.min_chars == 0 {
            format!("at most {} characters", self.max_chars)
        } else {
            format!("{}-{} characters", self.min_chars, self.max_chars)
        };
        match self.class {
            Class::Slug { uppercase } => format!(
                "{len} of {}0-9, '.', '_' or '-', starting with a letter or digit",
                if uppercase { "a-z, A-Z, " } else { "a-z, " }
            ),
            Class::Label => format!(
                "{len} without '/', '\\', control characters or surrounding spaces, \
                 and not '.' or '..'"
            ),
            Class::Text { untrimmed: false } => {
                format!("{len} without control characters or surrounding spaces")
            }
            Class::Text { untrimmed: true } => format!("{len} without control characters"),
        }
    }

    /// An ECMA-262 (and Python `re`) regular expression for `openapi.json`'s
    /// `pattern`, without lookaround so schema-driven fuzzers can generate
    /// from it. Lengths are `minLength`/`maxLength`, not part of it.
    pub fn pattern(&self) -> String {
        let bad = FORBIDDEN_CLASS;
        match self.class {
            Class::Slug { uppercase: false } => "^[a-z0-9][a-z0-9._-]*$".into(),
            Class::Slug { uppercase: true } => "^[A-Za-z0-9][A-Za-z0-9._-]*$".into(),
            Class::Text { untrimmed: true } => format!("^[^{bad}]*$"),
            Class::Text { untrimmed: false } => {
                // An edge character, or two edges around anything allowed.
                let (inner, edge) = (format!("[^{bad}]"), format!(r"[^{bad}\s]"));
                format!("^{edge}(?:{inner}*{edge})?$")
            }
            Class::Label => {
                let inner = format!(r"[^{bad}/\\]");
                let edge = format!(r"[^{bad}/\\\s]");
                let edge_not_dot = format!(r"[^{bad}/\\\s.]");
                // Not "." or "..": either the first character is not a dot,
                // or a dot is followed by a non-dot edge or by two or more
                // characters.
                format!(
                    "^(?:{edge_not_dot}(?:{inner}*{edge})?|\\.(?:{edge_not_dot}|{inner}+{edge}))$"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_people_use_pass() {
        for ok in ["alice", "alice.w_2-x", "t1", "s2021001"] {
            assert_eq!(USERNAME.check(ok), Ok(()), "{ok}");
        }
        for ok in [
            "tiny-linux",
            "Tiny Linux 1.0",
            "实验 0",
            "before lab 2",
            "实验一之前",
            ".x",
            "...",
            "a..b",
            "C++ (gcc 13)",
        ] {
            assert_eq!(TEMPLATE_NAME.check(ok), Ok(()), "{ok}");
            assert_eq!(SNAPSHOT_NAME.check(ok), Ok(()), "{ok}");
        }
        for ok in ["DEMO-101", "test-os101", "计算机-101", "CS 101"] {
            assert_eq!(COURSE_CODE.check(ok), Ok(()), "{ok}");
        }
        for ok in [
            "Operating Systems (demo)",
            "操作系统实验",
            "C/C++ Programming",
        ] {
            assert_eq!(COURSE_NAME.check(ok), Ok(()), "{ok}");
        }
        for ok in ["", "王小明", "Alice Smith", " padded "] {
            assert_eq!(DISPLAY_NAME.check(ok), Ok(()), "{ok:?}");
        }
        for ok in ["linux", "Win10", "db.v2", "local", "node-2"] {
            assert_eq!(VM_SPEC_NAME.check(ok), Ok(()), "{ok}");
            assert_eq!(NODE_NAME.check(ok), Ok(()), "{ok}");
        }
        assert!(TEMPLATE_NAME.check(&"实".repeat(100)).is_ok());
        assert!(SNAPSHOT_NAME.check(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn traversal_control_and_lossy_names_are_refused_with_the_field_and_rule() {
        for bad in [
            "..",
            ".",
            "a/b",
            "/etc",
            "a\\b",
            "\u{fffd}\u{fffd}",
            "a\nb",
            " a",
            "a ",
            "",
        ] {
            let e = TEMPLATE_NAME.check(bad).expect_err(bad);
            assert_eq!(e.field, "name");
            assert!(e.to_string().starts_with("name "), "{e}");
            assert!(e.to_string().contains("not '.' or '..'"), "{e}");
            assert!(COURSE_CODE.check(bad).is_err(), "{bad:?}");
        }
        for bad in ["..", ".hidden", "-rf", "_x", "Alice", "a/b", "a b", "", "é"] {
            assert!(USERNAME.check(bad).is_err(), "{bad:?}");
        }
        for bad in ["..", ".", "-x", "a/b", "a b"] {
            assert!(VM_SPEC_NAME.check(bad).is_err(), "{bad:?}");
            assert!(NODE_NAME.check(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "a\u{0}b",
            "tab\there",
            "\u{202e}evil",
            "x\u{fffd}",
            "zero\u{200b}width",
        ] {
            assert!(DISPLAY_NAME.check(bad).is_err(), "{bad:?}");
            assert!(COURSE_NAME.check(bad).is_err(), "{bad:?}");
        }
        assert!(TEMPLATE_NAME.check(&"x".repeat(101)).is_err());
        assert!(DISPLAY_NAME.check(&"x".repeat(129)).is_err());
        let e = VM_SPEC_NAME
            .check_as("vm_specs[1].name", "..")
            .expect_err("..");
        assert!(e.to_string().starts_with("vm_specs[1].name "), "{e}");
        let e = USERNAME.check("x\u{fffd}").expect_err("fffd");
        assert!(e.to_string().contains("U+FFFD"), "{e}");
    }

    /// The schema `openapi.json` documents for a rule.
    fn schema(rule: &Rule) -> serde_json::Value {
        serde_json::json!({
            "type": "string",
            "minLength": rule.min_chars,
            "maxLength": rule.max_chars,
            "pattern": rule.pattern(),
            "description": format!("{}: {}", rule.field, rule.describe()),
        })
    }

    #[test]
    fn openapi_documents_every_rule_as_it_is() {
        let doc: serde_json::Value =
            serde_json::from_str(crate::http::OPENAPI).expect("openapi.json");
        for (name, rule) in SCHEMAS {
            let want = schema(&rule);
            assert_eq!(
                doc["components"]["schemas"][name], want,
                "components.schemas.{name} should be:\n\"{name}\": {want},"
            );
        }
    }

    /// Strings of every class: printable ASCII, CJK, the forbidden
    /// characters, dots, slashes and spaces, so edge cases come up often.
    fn any_name() -> impl Strategy<Value = String> {
        let c = prop_oneof![
            proptest::char::range(' ', '~'),
            proptest::char::range('\u{4e00}', '\u{4e10}'),
            Just('.'),
            Just('/'),
            Just('\\'),
            Just(' '),
            Just('\u{3000}'),
            Just('\u{fffd}'),
            Just('\u{202e}'),
            Just('\u{85}'),
            Just('\n'),
        ];
        proptest::collection::vec(c, 0..8).prop_map(|v| v.into_iter().collect())
    }

    fn within_length(rule: &Rule, s: &str) -> bool {
        (rule.min_chars..=rule.max_chars).contains(&s.chars().count())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the documented pattern produces (within the documented
        /// lengths), the rule accepts: schema-valid requests are never refused.
        #[test]
        fn pattern_generates_only_accepted_names(
            (rule, s) in proptest::sample::select(SCHEMAS.to_vec()).prop_flat_map(|(_, rule)| {
                // (The generator wants the pattern without its anchors.)
                let pattern = rule.pattern();
                let bare = pattern
                    .strip_prefix('^')
                    .and_then(|p| p.strip_suffix('$'))
                    .expect("anchored");
                let strings = proptest::string::string_regex(bare).expect("pattern parses");
                (Just(rule), strings)
            })
        ) {
            prop_assume!(within_length(&rule, &s));
            prop_assert_eq!(rule.check(&s), Ok(()), "{:?} from {}", s, rule.pattern());
        }

        /// On any input, the documented pattern (with the lengths) and the
        /// rule agree: what the document allows is accepted, what it does
        /// not is refused.
        #[test]
        fn pattern_and_rule_agree_on_any_input(s in any_name()) {
            for (schema, rule) in SCHEMAS {
                let re = regex_automata::meta::Regex::new(&rule.pattern())
                    .expect("pattern compiles");
                let documented = re.is_match(&s) && within_length(&rule, &s);
                prop_assert_eq!(
                    rule.check(&s).is_ok(),
                    documented,
                    "{}: {:?} (pattern {})", schema, s, rule.pattern()
                );
            }
        }
    }
}
