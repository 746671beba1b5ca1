//! The installation: one pvce deployment (one database), told apart from any
//! other deployment — a second lab, a test run, a benchmark — that uses the
//! same libvirt node.
//!
//! Its id is a random UUID generated once, at the first start, and stored in
//! the database (`installation` table; never changed afterwards). From it:
//! - **names** ([`LibvirtNames`]): every libvirt object pvce creates is named
//!   with the id's short form (its first 8 hex digits): domains
//!   `pvce-<short>-<vm id>`, lab networks `pvce-<short>-lab-…`, the template
//!   store pool `pvce-<short>-templates`, the node-local layer pool
//!   `pvce-<short>-layers`. Two installations therefore never want the same
//!   name (before, every installation's template store was `pvce-templates`,
//!   and a second server repointed the first one's pool to its own path);
//! - **marks**: domains and lab networks carry the whole id in their
//!   `<pvce:…>` metadata element; pvce destroys, removes or reuses only the
//!   objects marked with its own id (libvirt storage pools have no metadata:
//!   a pool is pvce's when its name is the one derived from the id, or — for
//!   a name an operator set explicitly — when it points at pvce's own
//!   directory; see `Node::ensure_dir_pool`).
//!
//! Upgrades: objects an older pvce made carry no id. They are *adopted*:
//! a legacy pool (`pvce-templates`, `pvce-layers`) that points at exactly
//! this installation's directory is renamed at start-up (undefined and
//! defined again under the new name; its files stay; one pointing anywhere
//! else is another installation's and stays), a running legacy domain (`pvce-<vm>`,
//! metadata without an id) of a VM this database knows is looked up under
//! its old name until it stops, and a legacy lab network keeps the name
//! recorded for it. Anything else without our mark is never touched.
//!
//! Names an operator sets (`--domain-prefix`, `--template-pool`,
//! `--layer-pool`; the tests do) replace the derived ones; the marks still
//! apply.

use uuid::Uuid;

use crate::db::{self, Pool};

#[derive(Debug, thiserror::Error)]
pub enum InstallationError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// This installation's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installation {
    pub id: Uuid,
}

impl Installation {
    /// The id, loaded, or generated and stored at the first start. Two
    /// processes starting at once on a fresh database agree (the insert is
    /// `ON CONFLICT DO NOTHING` and both read back the one row).
    pub async fn load_or_create(pool: &Pool) -> Result<Self, InstallationError> {
        sqlx::query(
            "INSERT INTO installation (singleton, id, created_at) VALUES (1, $1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(db::now())
        .execute(pool)
        .await?;
        let id: String = sqlx::query_scalar("SELECT id FROM installation WHERE singleton = 1")
            .fetch_one(pool)
            .await?;
        Ok(Self {
            id: db::parse_uuid(&id)?,
        })
    }

    /// The whole id as written into metadata.
    pub fn mark(&self) -> String {
        self.id.to_string()
    }

    /// The short form in names: the first 8 hex digits.
    pub fn short(&self) -> String {
        self.id.simple().to_string()[..8].to_owned()
    }
}

/// The libvirt names of one installation's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtNames {
    /// Domains are `<domain_prefix><vm id>`; lab networks `<domain_prefix>lab-…`.
    pub domain_prefix: String,
    pub template_pool: String,
    pub layer_pool: String,
    /// The template pool name is the derived one (ours by its name: pvce may
    /// repoint it when the data dir moved).
    pub template_pool_derived: bool,
    pub layer_pool_derived: bool,
    /// Pool names an older pvce used for the same stores (`<base>-templates`,
    /// `<base>-layers`: its defaults), to adopt (only when the names are
    /// derived: an explicit name stays what it was).
    pub legacy_template_pool: Option<String>,
    pub legacy_layer_pool: Option<String>,
}

/// Operator-set names (each `None`: derived).
#[derive(Debug, Clone, Default)]
pub struct NameOverrides {
    pub domain_prefix: Option<String>,
    pub template_pool: Option<String>,
    pub layer_pool: Option<String>,
}

/// The names of installation `short` with base `base` (`pvce`, tests
/// `test-pvce`), overrides winning. Pure.
pub fn names(base: &str, short: &str, o: &NameOverrides) -> LibvirtNames {
    let derived = |what: &str| format!("{base}-{short}-{what}");
    let legacy = |explicit: &Option<String>, what: &str| {
        explicit.is_none().then(|| format!("{base}-{what}"))
    };
    LibvirtNames {
        domain_prefix: o
            .domain_prefix
            .clone()
            .unwrap_or_else(|| format!("{base}-{short}-")),
        template_pool: o
            .template_pool
            .clone()
            .unwrap_or_else(|| derived("templates")),
        layer_pool: o.layer_pool.clone().unwrap_or_else(|| derived("layers")),
        template_pool_derived: o.template_pool.is_none(),
        layer_pool_derived: o.layer_pool.is_none(),
        legacy_template_pool: legacy(&o.template_pool, "templates"),
        legacy_layer_pool: legacy(&o.layer_pool, "layers"),
    }
}

/// Whether a domain or network mark (`None`: made by a pvce before
/// installation ids) lets installation `ours` act on the object. A legacy
/// object is only acted on where the caller knows it by other means (its VM
/// is in our database, its network is recorded in ours).
pub fn marked_ours(mark: Option<&str>, ours: &str, legacy_known: bool) -> bool {
    match mark {
        Some(m) => m == ours,
        None => legacy_known,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_carry_the_short_id() {
        let n = names("pvce", "1a2b3c4d", &NameOverrides::default());
        assert_eq!(n.domain_prefix, "pvce-1a2b3c4d-");
        assert_eq!(n.template_pool, "pvce-1a2b3c4d-templates");
        assert_eq!(n.layer_pool, "pvce-1a2b3c4d-layers");
        assert!(n.template_pool_derived && n.layer_pool_derived);
        assert_eq!(n.legacy_template_pool.as_deref(), Some("pvce-templates"));
        assert_eq!(n.legacy_layer_pool.as_deref(), Some("pvce-layers"));
        // Two installations never share a name.
        let m = names("pvce", "99999999", &NameOverrides::default());
        assert_ne!(n.template_pool, m.template_pool);
        assert_ne!(n.domain_prefix, m.domain_prefix);
    }

    #[test]
    fn explicit_names_win_and_adopt_nothing() {
        let o = NameOverrides {
            domain_prefix: Some("lab-".into()),
            template_pool: Some("store".into()),
            layer_pool: None,
        };
        let n = names("pvce", "1a2b3c4d", &o);
        assert_eq!(n.domain_prefix, "lab-");
        assert_eq!(n.template_pool, "store");
        assert!(!n.template_pool_derived);
        assert_eq!(n.legacy_template_pool, None);
        assert_eq!(n.layer_pool, "pvce-1a2b3c4d-layers");
        // Another base (tests, benchmarks) has its own older names.
        let t = names("test-pvce", "1a2b3c4d", &NameOverrides::default());
        assert_eq!(t.template_pool, "test-pvce-1a2b3c4d-templates");
        assert_eq!(
            t.legacy_template_pool.as_deref(),
            Some("test-pvce-templates")
        );
    }

    #[test]
    fn marks_decide_ownership() {
        assert!(marked_ours(Some("a"), "a", false));
        assert!(!marked_ours(Some("b"), "a", true));
        assert!(marked_ours(None, "a", true));
        assert!(!marked_ours(None, "a", false));
    }

    #[test]
    fn short_is_the_first_eight_hex_digits() {
        let i = Installation {
            id: Uuid::parse_str("1a2b3c4d-0000-4000-8000-000000000000").expect("uuid"),
        };
        assert_eq!(i.short(), "1a2b3c4d");
        assert_eq!(i.mark(), "1a2b3c4d-0000-4000-8000-000000000000");
    }
}
