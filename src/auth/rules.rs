//! Rules from a campus identity's attributes to what pvce makes of it.
//!
//! Invariants:
//! - [`decide`] is a pure function of the rules and the attributes the
//!   provider reported at this sign-in; it is evaluated at every sign-in, so
//!   a student who became a TA gets the new role the next time they sign in.
//! - Rules are tried in order and the first one that matches wins; when none
//!   matches, the default applies (a role, or `refuse`).
//! - Attribute names compare case-insensitively (LDAP and CAS attribute
//!   names are), values exactly: `faculty` is not `Faculty` in a directory.
//! - A rule may also `disable` an account (the directory marks the person as
//!   gone): the sign-in is refused and the caller disables the pvce account
//!   and ends its sessions.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Role;

/// The attributes of one identity, multi-valued (an LDAP `memberOf`, an
/// OIDC `groups` claim, a CAS attribute repeated in the response).
pub type Attributes = BTreeMap<String, Vec<String>>;

/// What a rule (or the default) makes of an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Student,
    Teacher,
    Staff,
    Admin,
    /// No pvce account for this identity (e.g. alumni).
    Refuse,
    /// The directory says the person is gone: the pvce account is disabled.
    Disable,
}

impl Outcome {
    pub fn role(self) -> Option<Role> {
        match self {
            Outcome::Student => Some(Role::Student),
            Outcome::Teacher => Some(Role::Teacher),
            Outcome::Staff => Some(Role::Staff),
            Outcome::Admin => Some(Role::Admin),
            Outcome::Refuse | Outcome::Disable => None,
        }
    }
}

/// One rule: `attribute` has (among its values) `value`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub attribute: String,
    pub value: String,
    pub then: Outcome,
}

/// The ordered rules and the default for identities no rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
    #[serde(default = "default_outcome")]
    pub default: Outcome,
}

fn default_outcome() -> Outcome {
    // Safe default: whoever the campus lets in is a student until a rule
    // says more; a deployment that wants "refuse" says so.
    Outcome::Student
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default: default_outcome(),
        }
    }
}

/// The decision for one sign-in, and which rule made it (for the audit
/// record and for the admin reading why someone got a role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// Index of the matching rule; `None` when the default applied.
    pub rule: Option<usize>,
}

/// Values of an attribute, its name compared case-insensitively.
pub fn values<'a>(attrs: &'a Attributes, name: &str) -> impl Iterator<Item = &'a str> + 'a {
    let name = name.to_ascii_lowercase();
    attrs
        .iter()
        .filter(move |(k, _)| k.to_ascii_lowercase() == name)
        .flat_map(|(_, v)| v.iter().map(String::as_str))
}

/// First matching rule wins; the default otherwise.
pub fn decide(rules: &Rules, attrs: &Attributes) -> Decision {
    for (i, rule) in rules.rules.iter().enumerate() {
        if values(attrs, &rule.attribute).any(|v| v == rule.value) {
            return Decision {
                outcome: rule.then,
                rule: Some(i),
            };
        }
    }
    Decision {
        outcome: rules.default,
        rule: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attrs(pairs: &[(&str, &[&str])]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
            .collect()
    }

    fn rule(attribute: &str, value: &str, then: Outcome) -> Rule {
        Rule {
            attribute: attribute.into(),
            value: value.into(),
            then,
        }
    }

    fn campus() -> Rules {
        Rules {
            rules: vec![
                rule("accountStatus", "disabled", Outcome::Disable),
                rule("groups", "lab-admins", Outcome::Admin),
                rule("eduPersonAffiliation", "faculty", Outcome::Teacher),
                // USTC-style person-category code: 2xx are students.
                rule("personCategory", "201", Outcome::Student),
                rule("eduPersonAffiliation", "alum", Outcome::Refuse),
            ],
            default: Outcome::Refuse,
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let a = attrs(&[
            ("eduPersonAffiliation", &["faculty", "member"]),
            ("groups", &["lab-admins"]),
        ]);
        assert_eq!(
            decide(&campus(), &a),
            Decision {
                outcome: Outcome::Admin,
                rule: Some(1)
            }
        );
        let a = attrs(&[("eduPersonAffiliation", &["member", "faculty"])]);
        assert_eq!(decide(&campus(), &a).outcome, Outcome::Teacher);
    }

    #[test]
    fn disable_comes_before_any_role() {
        let a = attrs(&[
            ("accountstatus", &["disabled"]),
            ("groups", &["lab-admins"]),
        ]);
        assert_eq!(decide(&campus(), &a).outcome, Outcome::Disable);
    }

    #[test]
    fn names_ignore_case_values_do_not() {
        let a = attrs(&[("EDUPERSONAFFILIATION", &["faculty"])]);
        assert_eq!(decide(&campus(), &a).outcome, Outcome::Teacher);
        let a = attrs(&[("eduPersonAffiliation", &["Faculty"])]);
        assert_eq!(
            decide(&campus(), &a),
            Decision {
                outcome: Outcome::Refuse,
                rule: None
            }
        );
    }

    #[test]
    fn default_applies_when_nothing_matches() {
        assert_eq!(
            decide(&campus(), &Attributes::new()).outcome,
            Outcome::Refuse
        );
        assert_eq!(
            decide(&Rules::default(), &Attributes::new()).outcome,
            Outcome::Student
        );
    }

    #[test]
    fn a_new_attribute_changes_the_role_at_the_next_sign_in() {
        let before = attrs(&[("personCategory", &["201"])]);
        let after = attrs(&[
            ("personCategory", &["201"]),
            ("eduPersonAffiliation", &["faculty"]),
        ]);
        assert_eq!(decide(&campus(), &before).outcome, Outcome::Student);
        assert_eq!(decide(&campus(), &after).outcome, Outcome::Teacher);
    }

    #[test]
    fn rules_parse_from_the_auth_file() {
        let r: Rules = toml::from_str(
            r#"
            default = "refuse"
            [[rule]]
            attribute = "groups"
            value = "lab-admins"
            then = "admin"
            "#,
        )
        .expect("rules");
        assert_eq!(r.default, Outcome::Refuse);
        assert_eq!(r.rules, vec![rule("groups", "lab-admins", Outcome::Admin)]);
        assert!(toml::from_str::<Rules>("default = \"root\"").is_err());
    }

    proptest! {
        /// The decision is the first rule whose attribute holds its value,
        /// whatever else the identity carries; the default only when no rule matches.
        #[test]
        fn decision_is_the_first_match(
            held in proptest::collection::vec((0usize..4, 0usize..4), 0..8),
            wanted in proptest::collection::vec((0usize..4, 0usize..4, 0usize..6), 0..6),
        ) {
            let outcomes = [Outcome::Student, Outcome::Teacher, Outcome::Staff,
                Outcome::Admin, Outcome::Refuse, Outcome::Disable];
            let mut a = Attributes::new();
            for (k, v) in &held {
                a.entry(format!("a{k}")).or_default().push(format!("v{v}"));
            }
            let rules = Rules {
                rules: wanted.iter().map(|(k, v, o)| rule(&format!("A{k}"), &format!("v{v}"), outcomes[*o])).collect(),
                default: Outcome::Refuse,
            };
            let d = decide(&rules, &a);
            let first = wanted.iter().position(|(k, v, _)| held.contains(&(*k, *v)));
            prop_assert_eq!(d.rule, first);
            match first {
                Some(i) => prop_assert_eq!(d.outcome, outcomes[wanted[i].2]),
                None => prop_assert_eq!(d.outcome, Outcome::Refuse),
            }
        }
    }
}
