//! Template matching: "what does my course need?" (pVCE paper §2.1).
//!
//! Given an OS and a software list, find a template that has exactly that, or
//! the best base to derive from: the ready template of the same OS whose
//! software set is the largest proper subset of the request, plus what is
//! missing from it. When no template's set is a subset of the request, the
//! base is the template of that OS with the fewest missing items (then the
//! fewest extras), and `extra` lists what it carries beyond the request (a
//! course may well live with the built-in `busybox`): the answer has no base
//! only when no ready template of that OS exists at all.
//!
//! Name normalisation (decided here, documented in the API): names are
//! compared case-insensitively after trimming; an item is `name[-version]`,
//! where the version is the part after the last `-` if that part starts with a
//! digit (`gcc-12` → `gcc` version `12`, `python-3.11` → `python` `3.11`,
//! `python3` has no version). A requested item without a version is satisfied
//! by any version of that name; a requested item with a version only by that
//! exact version. Ties between bases break on fewer layers (lower depth), then
//! the newest, then the id, so answers are deterministic.

use serde::Serialize;

use super::{Template, TemplateState};

/// A software item split into name and optional version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    pub version: Option<String>,
}

pub fn parse_item(raw: &str) -> Item {
    let s = raw.trim().to_lowercase();
    if let Some((name, version)) = s.rsplit_once('-')
        && !name.is_empty()
        && version.starts_with(|c: char| c.is_ascii_digit())
    {
        return Item {
            name: name.to_owned(),
            version: Some(version.to_owned()),
        };
    }
    Item {
        name: s,
        version: None,
    }
}

/// True if `have` (a template's item) satisfies `want` (a requested item).
pub fn satisfies(have: &Item, want: &Item) -> bool {
    have.name == want.name
        && want
            .version
            .as_ref()
            .is_none_or(|v| have.version.as_ref() == Some(v))
}

#[derive(Debug, Clone, Serialize)]
pub struct MatchResult {
    pub exact: Option<Template>,
    pub base: Option<Template>,
    /// Requested items the base lacks (all of them when there is no base).
    pub missing: Vec<String>,
    /// The base's items that were not requested (empty for a subset base).
    pub extra: Vec<String>,
}

/// Matches a request against the library (drafts and failed templates never match).
pub fn find(templates: &[Template], os: &str, software: &[String]) -> MatchResult {
    let os = os.trim().to_lowercase();
    let mut wanted: Vec<Item> = software
        .iter()
        .map(|s| parse_item(s))
        .filter(|i| !i.name.is_empty())
        .collect();
    wanted.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    wanted.dedup();
    let candidates = templates
        .iter()
        .filter(|t| t.state == TemplateState::Ready && t.parent_id.is_some() && t.os == os);

    let mut exact: Option<&Template> = None;
    // The largest subset of the request (derive from it, nothing unwanted).
    let mut base: Option<&Template> = None;
    // Otherwise: the fewest missing, then the fewest extra items.
    let mut nearest: Option<(&Template, usize, usize)> = None;
    for t in candidates {
        let have: Vec<Item> = t.software.iter().map(|s| parse_item(s)).collect();
        let extras = have
            .iter()
            .filter(|h| !wanted.iter().any(|w| satisfies(h, w)))
            .count();
        let missing = wanted
            .iter()
            .filter(|w| !have.iter().any(|h| satisfies(h, w)))
            .count();
        if extras > 0 {
            if nearest.is_none_or(|(n, nm, ne)| {
                (missing, extras) < (nm, ne) || ((missing, extras) == (nm, ne) && better(t, n))
            }) {
                nearest = Some((t, missing, extras));
            }
            continue;
        }
        if missing == 0 {
            if exact.is_none_or(|e| better(t, e)) {
                exact = Some(t);
            }
        } else if base.is_none_or(|b| {
            t.software.len() > b.software.len()
                || (t.software.len() == b.software.len() && better(t, b))
        }) {
            base = Some(t);
        }
    }
    if let Some(e) = exact {
        return MatchResult {
            exact: Some(e.clone()),
            base: None,
            missing: vec![],
            extra: vec![],
        };
    }
    let base = base.or(nearest.map(|(n, _, _)| n));
    let (missing, extra) = match base {
        Some(b) => {
            let have: Vec<Item> = b.software.iter().map(|s| parse_item(s)).collect();
            let missing = wanted
                .iter()
                .filter(|w| !have.iter().any(|h| satisfies(h, w)))
                .map(display)
                .collect();
            let extra = b
                .software
                .iter()
                .zip(&have)
                .filter(|(_, h)| !wanted.iter().any(|w| satisfies(h, w)))
                .map(|(raw, _)| raw.clone())
                .collect();
            (missing, extra)
        }
        None => (wanted.iter().map(display).collect(), vec![]),
    };
    MatchResult {
        exact: None,
        base: base.cloned(),
        missing,
        extra,
    }
}

fn display(i: &Item) -> String {
    match &i.version {
        Some(v) => format!("{}-{v}", i.name),
        None => i.name.clone(),
    }
}

/// Tie-break: fewer layers, then newer, then smaller id.
fn better(a: &Template, b: &Template) -> bool {
    (a.depth, std::cmp::Reverse(&a.created_at), a.id)
        < (b.depth, std::cmp::Reverse(&b.created_at), b.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn t(name: &str, os: &str, sw: &[&str], depth: u32, created: &str) -> Template {
        Template {
            id: Uuid::new_v4(),
            name: name.into(),
            parent_id: Some(Uuid::nil()),
            os: os.into(),
            software: sw.iter().map(|s| s.to_string()).collect(),
            state: TemplateState::Ready,
            size_bytes: 0,
            virtual_size_bytes: 0,
            depth,
            created_by: None,
            created_at: created.into(),
        }
    }

    fn req(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn items_split_versions() {
        assert_eq!(
            parse_item("GCC-12"),
            Item {
                name: "gcc".into(),
                version: Some("12".into())
            }
        );
        assert_eq!(
            parse_item("python3"),
            Item {
                name: "python3".into(),
                version: None
            }
        );
        assert_eq!(
            parse_item("vs-code"),
            Item {
                name: "vs-code".into(),
                version: None
            }
        );
        assert!(satisfies(&parse_item("gcc-12"), &parse_item("gcc")));
        assert!(!satisfies(&parse_item("gcc-11"), &parse_item("gcc-12")));
        assert!(!satisfies(&parse_item("gcc"), &parse_item("gcc-12")));
    }

    #[test]
    fn exact_subset_and_none() {
        let lib = vec![
            t("linux", "linux", &["busybox"], 1, "2026-01-01T00:00:00Z"),
            t(
                "linux-c",
                "linux",
                &["busybox", "gcc-12", "make"],
                2,
                "2026-01-02T00:00:00Z",
            ),
            t("win", "windows", &["office"], 1, "2026-01-01T00:00:00Z"),
        ];
        let m = find(&lib, "linux", &req(&["busybox", "gcc", "make"]));
        assert_eq!(m.exact.map(|e| e.name), Some("linux-c".into()));
        let m = find(&lib, "Linux", &req(&["busybox", "gcc", "make", "gdb"]));
        assert!(m.exact.is_none());
        assert_eq!(m.base.map(|b| b.name), Some("linux-c".into()));
        assert_eq!(m.missing, vec!["gdb".to_string()]);
        let m = find(&lib, "macos", &req(&["xcode"]));
        assert!(m.base.is_none());
        assert_eq!(m.missing, vec!["xcode".to_string()]);
    }

    #[test]
    fn a_base_may_carry_software_not_requested() {
        // The UI's own placeholders against the built-in busybox image.
        let lib = vec![
            t(
                "tiny",
                "tiny-linux",
                &["busybox"],
                1,
                "2026-01-01T00:00:00Z",
            ),
            t(
                "tiny-c",
                "tiny-linux",
                &["busybox", "gcc-12", "vim"],
                2,
                "2026-01-02T00:00:00Z",
            ),
        ];
        let m = find(&lib, "tiny-linux", &req(&["gcc", "make"]));
        assert!(m.exact.is_none());
        assert_eq!(m.base.map(|b| b.name), Some("tiny-c".into()));
        assert_eq!(m.missing, vec!["make".to_string()]);
        assert_eq!(m.extra, vec!["busybox".to_string(), "vim".to_string()]);
        // Equal missing: the one with fewer extras.
        let m = find(&lib, "tiny-linux", &req(&["make"]));
        assert_eq!(m.base.map(|b| b.name), Some("tiny".into()));
        assert_eq!(m.extra, vec!["busybox".to_string()]);
        // Everything requested but more: still a base, nothing missing.
        let m = find(&lib, "tiny-linux", &req(&["gcc"]));
        assert!(m.exact.is_none());
        assert_eq!(m.base.map(|b| b.name), Some("tiny-c".into()));
        assert!(m.missing.is_empty());
        // A subset base wins over a closer one with extras.
        let m = find(&lib, "tiny-linux", &req(&["busybox", "make"]));
        assert_eq!(m.base.map(|b| b.name), Some("tiny".into()));
        assert!(m.extra.is_empty());
    }

    #[test]
    fn ties_prefer_fewer_layers_then_newest() {
        let a = t("a", "linux", &["busybox", "gcc"], 3, "2026-01-05T00:00:00Z");
        let b = t("b", "linux", &["busybox", "vim"], 2, "2026-01-01T00:00:00Z");
        let c = t(
            "c",
            "linux",
            &["busybox", "make"],
            2,
            "2026-01-03T00:00:00Z",
        );
        let lib = vec![a, b, c];
        let m = find(
            &lib,
            "linux",
            &req(&["busybox", "gcc", "vim", "make", "gdb"]),
        );
        assert_eq!(m.base.map(|b| b.name), Some("c".into()));
    }

    #[test]
    fn drafts_and_root_never_match() {
        let mut d = t("draft", "linux", &["busybox"], 1, "2026-01-01T00:00:00Z");
        d.state = TemplateState::Draft;
        let mut root = t("blank", "linux", &[], 0, "2026-01-01T00:00:00Z");
        root.parent_id = None;
        let m = find(&[d, root], "linux", &req(&["busybox"]));
        assert!(m.exact.is_none() && m.base.is_none());
    }

    proptest! {
        #[test]
        fn base_is_a_proper_subset_and_missing_completes_it(
            lib in prop::collection::vec(prop::collection::btree_set("[a-e]", 0..5), 1..8),
            want in prop::collection::btree_set("[a-e]", 0..5),
        ) {
            let templates: Vec<Template> = lib.iter().enumerate()
                .map(|(i, sw)| {
                    let sw: Vec<&str> = sw.iter().map(String::as_str).collect();
                    t(&format!("t{i}"), "linux", &sw, 1, "2026-01-01T00:00:00Z")
                })
                .collect();
            let want: Vec<String> = want.into_iter().collect();
            let m = find(&templates, "linux", &want);
            if let Some(e) = &m.exact {
                let mut s = e.software.clone();
                s.sort();
                prop_assert_eq!(s, want.clone());
                prop_assert!(m.missing.is_empty());
            } else if let Some(b) = &m.base {
                let is_subset = |sw: &[String]| sw.iter().all(|s| want.contains(s));
                let any_subset = templates.iter().any(|o| is_subset(&o.software));
                if !is_subset(&b.software) {
                    // Only when no template is a subset: the fewest missing wins,
                    // and missing + what it has of the request = the request.
                    prop_assert!(!any_subset);
                    let misses = |sw: &[String]| want.iter().filter(|w| !sw.contains(w)).count();
                    prop_assert_eq!(misses(&b.software), m.missing.len());
                    for o in &templates {
                        prop_assert!(misses(&o.software) >= m.missing.len());
                    }
                    let mut extra: Vec<String> = b.software.iter().filter(|s| !want.contains(s)).cloned().collect();
                    extra.sort();
                    let mut got = m.extra.clone();
                    got.sort();
                    prop_assert_eq!(got, extra);
                    return Ok(());
                }
                prop_assert!(m.extra.is_empty());
                prop_assert!(b.software.len() < want.len());
                let mut all: Vec<String> = b.software.iter().cloned().chain(m.missing.iter().cloned()).collect();
                all.sort();
                prop_assert_eq!(all, want.clone());
                // No other subset template is larger.
                for o in &templates {
                    if o.software.iter().all(|s| want.contains(s)) && o.software.len() < want.len() {
                        prop_assert!(o.software.len() <= b.software.len());
                    }
                }
            } else {
                // Never "no template of this OS" while one exists.
                prop_assert!(templates.is_empty());
            }
        }
    }
}
