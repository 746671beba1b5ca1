//! Courses: a teacher's class, its VM specs and its enrolled students.
//!
//! Invariants:
//! - A course belongs to one teacher; only that teacher and admins manage it.
//! - Each VM spec names a ready, bootable template (not the blank root).
//! - Enrolment gives every student one personal VM per spec (database
//!   constraint `vms_spec_owner_key`); enrolling again only fills gaps, so it
//!   is idempotent and safe to retry after a failure.
//! - Removing a student or a course never removes a running VM's layer: the
//!   VMs must be stopped first (409 `vm_running`).
//! - A course may be linked to a directory group ([`DirectoryLink`]): a value
//!   of an attribute a campus provider reports. At each campus sign-in and
//!   directory sync its student members are enrolled (VMs as usual), and the
//!   students the link enrolled who left the group are unenrolled — their
//!   VMs and layers stay, so no work is lost, and re-joining gives them back.
//!   Students a teacher enrolled are never unenrolled by the directory.
//!   What changes is decided by [`link_plan`], a pure function.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use crate::auth::Role;
use crate::auth::rules::Attributes;
use crate::db::{self, Pool};
use crate::libvirt::GraphicsKind;
use crate::names;
use crate::storage::Storage;
use crate::templates::{self, TemplateState};
use crate::users::{self, User};
use crate::vms::layers::LayerStorage;
use crate::vms::{self, VmError, VmManager, VmSpec};

pub const MAX_SPECS: usize = 10;
pub const MAX_ENROL_BATCH: usize = 5000;

#[derive(Debug, Clone, Serialize)]
pub struct Course {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub teacher_id: Uuid,
    pub vm_specs: Vec<VmSpec>,
    /// Each student's VMs of the course share a private isolated network
    /// (see [`crate::labnets`]).
    pub lab_network: bool,
    /// The desktop page pastes from the student's computer into the VM.
    pub clipboard_to_guest: bool,
    /// The desktop page copies text the guest put on its clipboard to the
    /// student's computer.
    pub clipboard_from_guest: bool,
    /// The course's VMs get a clipboard channel for a guest agent
    /// (qemu-vdagent): the clipboard then works both ways through QEMU's
    /// VNC server where the guest runs spice-vdagent.
    pub clipboard_agent: bool,
    /// The directory group whose members are this course's students.
    pub directory_link: Option<DirectoryLink>,
    pub student_count: u64,
    pub created_at: String,
    /// The end of a term ([`crate::term`]): when the course ends (RFC 3339,
    /// none: no end), how many days after the end the students' layers are
    /// kept, and whether it is archived (`active` | `archived`) since when.
    pub ends_at: Option<String>,
    pub retention_days: u32,
    pub state: &'static str,
    pub archived_at: Option<String>,
}

/// A course's directory group: students whose `attribute` holds `value`
/// (names compared case-insensitively, values exactly, as in the sign-in rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryLink {
    pub attribute: String,
    pub value: String,
}

/// How a student came into a course (`enrolments.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrolSource {
    Teacher,
    Directory,
}

impl EnrolSource {
    fn as_str(self) -> &'static str {
        match self {
            EnrolSource::Teacher => "teacher",
            EnrolSource::Directory => "directory",
        }
    }
}

/// One course's side of a student's directory membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub course_id: Uuid,
    pub link: DirectoryLink,
    /// `None`: not enrolled.
    pub enrolled: Option<EnrolSource>,
}

/// A change the directory makes to a student's enrolments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkChange {
    Enrol(Uuid),
    /// The enrolment goes; the VMs and their layers stay.
    Leave(Uuid),
}

/// What a student's attributes mean for the linked courses: members not
/// enrolled are enrolled; those the directory enrolled who are no longer
/// members leave; a teacher's enrolment is never touched.
pub fn link_plan(states: &[LinkState], attrs: &Attributes) -> Vec<LinkChange> {
    states
        .iter()
        .filter_map(|s| {
            let member =
                crate::auth::rules::values(attrs, &s.link.attribute).any(|v| v == s.link.value);
            match (member, s.enrolled) {
                (true, None) => Some(LinkChange::Enrol(s.course_id)),
                (false, Some(EnrolSource::Directory)) => Some(LinkChange::Leave(s.course_id)),
                _ => None,
            }
        })
        .collect()
}

/// What the directory changed (or, in a dry run, would change) for one student.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkReport {
    /// Codes of the courses the student was enrolled in.
    pub enrolled: Vec<String>,
    /// Codes of the courses the student left (their VMs kept).
    pub left: Vec<String>,
}

fn valid_link(link: &DirectoryLink) -> Result<(), CourseError> {
    let a = &link.attribute;
    if a.is_empty()
        || a.len() > 64
        || !a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b';')
    {
        return Err(CourseError::Invalid(
            "the link's attribute: 1-64 letters, digits, - _ . ;".into(),
        ));
    }
    let v = &link.value;
    if v.trim().is_empty() || v.chars().count() > 256 || v.chars().any(char::is_control) {
        return Err(CourseError::Invalid(
            "the link's value: 1-256 characters, no control characters".into(),
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVmSpec {
    pub name: String,
    pub template_id: Uuid,
    pub vcpus: i64,
    pub memory_mib: i64,
    /// `"vnc"` (default) or `"spice"`; checked by `validate` for a clear 400.
    #[serde(default)]
    pub graphics: Option<String>,
}

impl NewVmSpec {
    /// The spec's console protocol; `None` if `graphics` is not a known one.
    fn graphics_kind(&self) -> Option<GraphicsKind> {
        match self.graphics.as_deref() {
            None | Some("vnc") => Some(GraphicsKind::Vnc),
            Some("spice") => Some(GraphicsKind::Spice),
            Some(_) => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCourse {
    pub code: String,
    pub name: String,
    pub vm_specs: Vec<NewVmSpec>,
    /// Give each student a private lab network for their VMs of this course.
    #[serde(default)]
    pub lab_network: bool,
    /// Clipboard switches of the desktop page ([`Course`]); on unless turned off.
    #[serde(default = "on")]
    pub clipboard_to_guest: bool,
    #[serde(default = "on")]
    pub clipboard_from_guest: bool,
    /// A clipboard channel for a guest agent in the course's VMs ([`Course`]); off unless asked.
    #[serde(default)]
    pub clipboard_agent: bool,
    /// Admins may create a course on behalf of a teacher.
    pub teacher_id: Option<Uuid>,
}

fn on() -> bool {
    true
}

/// The clipboard switches of an existing course (`PUT /api/courses/{id}/clipboard`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipboardSwitches {
    pub to_guest: bool,
    pub from_guest: bool,
    /// The guest-agent channel; not given: unchanged. Applies from each VM's next start.
    #[serde(default)]
    pub agent: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct EnrolReport {
    /// Every student of the request: enrolled now, or already before.
    pub enrolled: Vec<String>,
    /// Those of `enrolled` who were already in the course (no new VMs for them
    /// unless a spec was added since).
    pub already_enrolled: Vec<String>,
    pub unknown: Vec<String>,
    /// Usernames that exist but are not students.
    pub not_students: Vec<String>,
    pub vms_created: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CourseError {
    #[error("{0}")]
    Invalid(String),
    /// Well-formed, but naming a template that can't serve (unknown, not
    /// ready, the blank root): 422.
    #[error("{0}")]
    Unacceptable(String),
    #[error("no such course")]
    NotFound,
    #[error("a course with code {0:?} already exists")]
    CodeTaken(String),
    #[error("{0}")]
    VmRunning(String),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

async fn validate(pool: &Pool, new: &NewCourse) -> Result<(), CourseError> {
    let invalid = |e: names::NameError| CourseError::Invalid(e.to_string());
    names::COURSE_CODE.check(&new.code).map_err(invalid)?;
    names::COURSE_NAME.check(&new.name).map_err(invalid)?;
    if new.vm_specs.is_empty() || new.vm_specs.len() > MAX_SPECS {
        return Err(CourseError::Invalid(format!(
            "a course needs 1-{MAX_SPECS} vm_specs"
        )));
    }
    for (i, s) in new.vm_specs.iter().enumerate() {
        names::VM_SPEC_NAME
            .check_as(&format!("vm_specs[{i}].name"), &s.name)
            .map_err(invalid)?;
        // No JSON Schema says "distinct by name": well-formed, unacceptable.
        if new.vm_specs[..i].iter().any(|o| o.name == s.name) {
            return Err(CourseError::Unacceptable(format!(
                "vm_specs[{i}].name is used twice"
            )));
        }
        if !(1..=32).contains(&s.vcpus) {
            return Err(CourseError::Invalid(format!(
                "vm_specs[{i}].vcpus must be 1-32"
            )));
        }
        if !(64..=262_144).contains(&s.memory_mib) {
            return Err(CourseError::Invalid(format!(
                "vm_specs[{i}].memory_mib must be 64-262144"
            )));
        }
        if s.graphics_kind().is_none() {
            return Err(CourseError::Invalid(format!(
                "vm_specs[{i}].graphics must be \"vnc\" or \"spice\""
            )));
        }
        let t = match templates::get(pool, s.template_id).await {
            Ok(t) => t,
            Err(templates::TemplateError::NotFound) => {
                return Err(CourseError::Unacceptable(format!(
                    "vm_specs[{i}].template_id: no such template"
                )));
            }
            Err(templates::TemplateError::Db(e)) => return Err(e.into()),
            Err(e) => return Err(CourseError::Invalid(e.to_string())),
        };
        if t.state != TemplateState::Ready || t.parent_id.is_none() {
            return Err(CourseError::Unacceptable(format!(
                "vm_specs[{i}].template_id: template {:?} is not a ready, bootable template",
                t.name
            )));
        }
    }
    Ok(())
}

pub async fn create(pool: &Pool, actor: &User, new: NewCourse) -> Result<Course, CourseError> {
    validate(pool, &new).await?;
    let teacher_id = match (actor.role, new.teacher_id) {
        (Role::Admin, Some(t)) => {
            let teacher = users::get(pool, t)
                .await
                .map_err(|_| CourseError::Unacceptable("teacher_id: no such user".into()))?;
            if !matches!(teacher.role, Role::Teacher | Role::Admin) {
                return Err(CourseError::Unacceptable(
                    "teacher_id must be a teacher or admin".into(),
                ));
            }
            t
        }
        (_, Some(t)) if t != actor.id => {
            return Err(CourseError::Unacceptable(
                "only admins may set teacher_id".into(),
            ));
        }
        _ => actor.id,
    };
    let id = Uuid::new_v4();
    let mut tx = db::begin(pool).await?;
    let res = sqlx::query(
        "INSERT INTO courses (id, code, name, teacher_id, lab_network, clipboard_to_guest, clipboard_from_guest, clipboard_agent, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id.to_string())
    .bind(&new.code)
    .bind(&new.name)
    .bind(teacher_id.to_string())
    .bind(db::Flag(new.lab_network))
    .bind(db::Flag(new.clipboard_to_guest))
    .bind(db::Flag(new.clipboard_from_guest))
    .bind(db::Flag(new.clipboard_agent))
    .bind(db::now())
    .execute(&mut *tx)
    .await;
    match res {
        Err(e) if db::unique_violation(&e).is_some() => {
            return Err(CourseError::CodeTaken(new.code));
        }
        other => {
            other?;
        }
    }
    for (pos, s) in new.vm_specs.iter().enumerate() {
        let graphics = s.graphics_kind().unwrap_or(GraphicsKind::Vnc);
        sqlx::query("INSERT INTO vm_specs (id, course_id, name, template_id, vcpus, memory_mib, graphics, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(Uuid::new_v4().to_string())
            .bind(id.to_string())
            .bind(&s.name)
            .bind(s.template_id.to_string())
            .bind(s.vcpus)
            .bind(s.memory_mib)
            .bind(graphics.to_string())
            .bind(pos as i64)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    load(pool, id).await
}

async fn specs(pool: &Pool, course_id: Uuid) -> Result<Vec<VmSpec>, CourseError> {
    let rows = sqlx::query("SELECT id, name, template_id, vcpus, memory_mib, graphics FROM vm_specs WHERE course_id = $1 ORDER BY position")
        .bind(course_id.to_string())
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(VmSpec {
            id: db::uuid(r, "id")?,
            name: r.try_get("name")?,
            template_id: db::uuid(r, "template_id")?,
            vcpus: u32::try_from(r.try_get::<i64, _>("vcpus")?).unwrap_or(1),
            memory_mib: u32::try_from(r.try_get::<i64, _>("memory_mib")?).unwrap_or(64),
            graphics: vms::graphics_from_db(&r.try_get::<String, _>("graphics")?),
        });
    }
    Ok(out)
}

/// The `graphics` column (constrained to 'vnc' | 'spice' by the schema).
/// Loads a course without any visibility check.
pub async fn load(pool: &Pool, id: Uuid) -> Result<Course, CourseError> {
    let row = sqlx::query(
        "SELECT c.id, c.code, c.name, c.teacher_id, c.lab_network, c.clipboard_to_guest,
                c.clipboard_from_guest, c.clipboard_agent, c.created_at, c.link_attribute, c.link_value,
                c.ends_at, c.retention_days, c.archived_at,
                (SELECT COUNT(*) FROM enrolments e WHERE e.course_id = c.id) AS student_count
         FROM courses c WHERE c.id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(pool)
    .await?
    .ok_or(CourseError::NotFound)?;
    Ok(Course {
        id,
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        teacher_id: db::uuid(&row, "teacher_id")?,
        lab_network: row.try_get::<i64, _>("lab_network")? != 0,
        clipboard_to_guest: row.try_get::<i64, _>("clipboard_to_guest")? != 0,
        clipboard_from_guest: row.try_get::<i64, _>("clipboard_from_guest")? != 0,
        clipboard_agent: row.try_get::<i64, _>("clipboard_agent")? != 0,
        directory_link: match (
            row.try_get::<Option<String>, _>("link_attribute")?,
            row.try_get::<Option<String>, _>("link_value")?,
        ) {
            (Some(attribute), Some(value)) => Some(DirectoryLink { attribute, value }),
            _ => None,
        },
        student_count: u64::try_from(row.try_get::<i64, _>("student_count")?).unwrap_or(0),
        created_at: row.try_get("created_at")?,
        ends_at: row.try_get("ends_at")?,
        retention_days: u32::try_from(row.try_get::<i64, _>("retention_days")?).unwrap_or(0),
        state: match row.try_get::<Option<String>, _>("archived_at")? {
            Some(_) => "archived",
            None => "active",
        },
        archived_at: row.try_get("archived_at")?,
        vm_specs: specs(pool, id).await?,
    })
}

/// True if `user` may see the course (students: enrolled; teachers: own; admins: all).
pub async fn can_view(pool: &Pool, user: &User, course: &Course) -> Result<bool, CourseError> {
    Ok(match user.role {
        Role::Admin => true,
        Role::Teacher => course.teacher_id == user.id,
        Role::Student => is_enrolled(pool, course.id, user.id).await?,
        // Staff read every course (the desk filters and dispatches by course).
        Role::Staff => true,
    })
}

/// True if `user` may manage the course (its teacher or an admin).
pub fn can_manage(user: &User, course: &Course) -> bool {
    user.role == Role::Admin || (user.role == Role::Teacher && course.teacher_id == user.id)
}

async fn is_enrolled(pool: &Pool, course_id: Uuid, user_id: Uuid) -> Result<bool, CourseError> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM enrolments WHERE course_id = $1 AND user_id = $2")
            .bind(course_id.to_string())
            .bind(user_id.to_string())
            .fetch_one(pool)
            .await?;
    Ok(n > 0)
}

/// A course the user may see, or NotFound (never reveals existence).
pub async fn get_visible(pool: &Pool, user: &User, id: Uuid) -> Result<Course, CourseError> {
    let course = load(pool, id).await?;
    if can_view(pool, user, &course).await? {
        Ok(course)
    } else {
        Err(CourseError::NotFound)
    }
}

/// A course the user may manage; NotFound if it may not even see it, else Forbidden-as-NotFound.
pub async fn get_managed(pool: &Pool, user: &User, id: Uuid) -> Result<Course, CourseError> {
    let course = load(pool, id).await?;
    if can_manage(user, &course) {
        Ok(course)
    } else {
        Err(CourseError::NotFound)
    }
}

pub async fn list(pool: &Pool, user: &User) -> Result<Vec<Course>, CourseError> {
    let uid = user.id.to_string();
    let ids: Vec<String> = match user.role {
        Role::Admin | Role::Staff => sqlx::query_scalar("SELECT id FROM courses ORDER BY code").fetch_all(pool).await?,
        Role::Teacher => {
            sqlx::query_scalar("SELECT id FROM courses WHERE teacher_id = $1 ORDER BY code")
                .bind(&uid)
                .fetch_all(pool)
                .await?
        }
        Role::Student => sqlx::query_scalar(
            "SELECT c.id FROM courses c JOIN enrolments e ON e.course_id = c.id WHERE e.user_id = $1 ORDER BY c.code",
        )
        .bind(&uid)
        .fetch_all(pool)
        .await?,
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let id = db::parse_uuid(&id)?;
        out.push(load(pool, id).await?);
    }
    Ok(out)
}

/// The students enrolled in a course, by username.
pub async fn students(pool: &Pool, course_id: Uuid) -> Result<Vec<User>, CourseError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT e.user_id FROM enrolments e JOIN users u ON u.id = e.user_id WHERE e.course_id = $1 ORDER BY u.username",
    )
    .bind(course_id.to_string())
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(u) = users::get_by_id_str(pool, &id).await? {
            out.push(u);
        }
    }
    Ok(out)
}

/// Courses as users reach them: the service the HTTP handlers call. Who
/// may manage a course ([`can_manage`]) and see it ([`can_view`]) is decided
/// here; VMs and their layers come and go through the VM manager.
#[derive(Debug)]
pub struct Courses {
    pool: Pool,
    storage: Storage,
    vms: Arc<VmManager>,
}

impl Courses {
    pub fn new(pool: Pool, storage: Storage, vms: Arc<VmManager>) -> Self {
        Self { pool, storage, vms }
    }

    pub async fn list(&self, user: &User) -> Result<Vec<Course>, CourseError> {
        list(&self.pool, user).await
    }

    pub async fn create(&self, actor: &User, new: NewCourse) -> Result<Course, CourseError> {
        create(&self.pool, actor, new).await
    }

    /// A course the user may see, else NotFound.
    pub async fn get(&self, user: &User, id: Uuid) -> Result<Course, CourseError> {
        get_visible(&self.pool, user, id).await
    }

    /// Deletes a course the user manages, with its (stopped) VMs and layers.
    pub async fn delete(&self, user: &User, id: Uuid) -> Result<(), CourseError> {
        let course = get_managed(&self.pool, user, id).await?;
        delete(&self.pool, &self.vms, &course).await
    }

    /// Turns the desktop page's clipboard directions of a course the user
    /// manages on or off; sessions read them when the desktop page opens.
    pub async fn set_clipboard(
        &self,
        user: &User,
        id: Uuid,
        switches: ClipboardSwitches,
    ) -> Result<Course, CourseError> {
        let course = get_managed(&self.pool, user, id).await?;
        sqlx::query(
            "UPDATE courses SET clipboard_to_guest = $1, clipboard_from_guest = $2,
                    clipboard_agent = COALESCE($3, clipboard_agent) WHERE id = $4",
        )
        .bind(db::Flag(switches.to_guest))
        .bind(db::Flag(switches.from_guest))
        .bind(switches.agent.map(db::Flag))
        .bind(course.id.to_string())
        .execute(&self.pool)
        .await?;
        load(&self.pool, course.id).await
    }

    pub async fn students(&self, user: &User, id: Uuid) -> Result<Vec<User>, CourseError> {
        let course = get_managed(&self.pool, user, id).await?;
        students(&self.pool, course.id).await
    }

    pub async fn enrol(
        &self,
        user: &User,
        id: Uuid,
        usernames: &[String],
    ) -> Result<EnrolReport, CourseError> {
        let course = get_managed(&self.pool, user, id).await?;
        enrol(
            &self.pool,
            &self.storage,
            self.vms.layer_mode(),
            &course,
            usernames,
            EnrolSource::Teacher,
        )
        .await
    }

    /// Links a course the user manages to a directory group (`None`: unlinks
    /// it; the students it enrolled stay until they or a teacher act).
    pub async fn set_link(
        &self,
        user: &User,
        id: Uuid,
        link: Option<DirectoryLink>,
    ) -> Result<Course, CourseError> {
        let course = get_managed(&self.pool, user, id).await?;
        if let Some(l) = &link {
            valid_link(l)?;
        }
        sqlx::query("UPDATE courses SET link_attribute = $1, link_value = $2 WHERE id = $3")
            .bind(link.as_ref().map(|l| l.attribute.clone()))
            .bind(link.as_ref().map(|l| l.value.clone()))
            .bind(course.id.to_string())
            .execute(&self.pool)
            .await?;
        load(&self.pool, course.id).await
    }

    /// A student's enrolments in the linked courses, made to follow what the
    /// directory says of them now ([`link_plan`]); `dry_run` only reports.
    /// Non-students are never enrolled by a link.
    pub async fn follow_directory(
        &self,
        student: &User,
        attrs: &Attributes,
        dry_run: bool,
    ) -> Result<LinkReport, CourseError> {
        let mut report = LinkReport::default();
        if student.role != Role::Student || student.disabled {
            return Ok(report);
        }
        let rows = sqlx::query(
            "SELECT c.id, c.code, c.link_attribute, c.link_value, e.source
             FROM courses c LEFT JOIN enrolments e ON e.course_id = c.id AND e.user_id = $1
             WHERE c.link_attribute IS NOT NULL AND c.link_value IS NOT NULL",
        )
        .bind(student.id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut states = Vec::with_capacity(rows.len());
        let mut codes = std::collections::HashMap::new();
        for row in rows {
            let course_id = db::uuid(&row, "id")?;
            codes.insert(course_id, row.try_get::<String, _>("code")?);
            states.push(LinkState {
                course_id,
                link: DirectoryLink {
                    attribute: row.try_get("link_attribute")?,
                    value: row.try_get("link_value")?,
                },
                enrolled: match row.try_get::<Option<String>, _>("source")?.as_deref() {
                    None => None,
                    Some("directory") => Some(EnrolSource::Directory),
                    Some(_) => Some(EnrolSource::Teacher),
                },
            });
        }
        for change in link_plan(&states, attrs) {
            match change {
                LinkChange::Enrol(course_id) => {
                    if !dry_run {
                        let course = load(&self.pool, course_id).await?;
                        enrol(
                            &self.pool,
                            &self.storage,
                            self.vms.layer_mode(),
                            &course,
                            std::slice::from_ref(&student.username),
                            EnrolSource::Directory,
                        )
                        .await?;
                    }
                    report.enrolled.push(codes[&course_id].clone());
                }
                LinkChange::Leave(course_id) => {
                    if !dry_run {
                        // Only the enrolment: the VMs and layers stay.
                        sqlx::query(
                            "DELETE FROM enrolments WHERE course_id = $1 AND user_id = $2 AND source = 'directory'",
                        )
                        .bind(course_id.to_string())
                        .bind(student.id.to_string())
                        .execute(&self.pool)
                        .await?;
                    }
                    report.left.push(codes[&course_id].clone());
                }
            }
        }
        if !dry_run && (!report.enrolled.is_empty() || !report.left.is_empty()) {
            tracing::info!(student = %student.username, enrolled = ?report.enrolled, left = ?report.left, "course enrolments follow the directory");
        }
        Ok(report)
    }

    pub async fn unenrol(&self, user: &User, id: Uuid, student: Uuid) -> Result<(), CourseError> {
        let course = get_managed(&self.pool, user, id).await?;
        unenrol(&self.pool, &self.vms, &course, student).await
    }
}

impl crate::auth::sso::AfterSignIn for Courses {
    fn signed_in<'a>(
        &'a self,
        user: &'a User,
        attributes: &'a Attributes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            // A failed enrolment (a full disk, a template gone) must not keep
            // the student out: the next sign-in or sync tries again.
            if let Err(e) = self.follow_directory(user, attributes, false).await {
                tracing::warn!(user = %user.username, error = %e, "course links not applied at sign-in");
            }
        })
    }
}

/// Enrols students by username and provisions their personal VMs.
pub async fn enrol(
    pool: &Pool,
    storage: &Storage,
    layer_storage: LayerStorage,
    course: &Course,
    usernames: &[String],
    source: EnrolSource,
) -> Result<EnrolReport, CourseError> {
    if usernames.len() > MAX_ENROL_BATCH {
        return Err(CourseError::Invalid(format!(
            "at most {MAX_ENROL_BATCH} usernames per request"
        )));
    }
    let mut names: Vec<String> = usernames.iter().map(|u| u.trim().to_owned()).collect();
    names.retain(|n| !n.is_empty());
    names.sort();
    names.dedup();
    let (found, unknown) = users::find_by_usernames(pool, &names)
        .await
        .map_err(|e| match e {
            users::UserError::Db(e) => CourseError::Db(e),
            other => CourseError::Invalid(other.to_string()),
        })?;
    let (students, others): (Vec<User>, Vec<User>) =
        found.into_iter().partition(|u| u.role == Role::Student);

    // Who was already in the course, read before the transaction: a report
    // for the teacher, not a rule (a concurrent enrolment may slip between).
    let mut already_enrolled = Vec::new();
    for s in &students {
        let here: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM enrolments WHERE course_id = $1 AND user_id = $2")
                .bind(course.id.to_string())
                .bind(s.id.to_string())
                .fetch_optional(pool)
                .await?;
        if here.is_some() {
            already_enrolled.push(s.username.clone());
        }
    }

    // Enrolments and VM rows commit together (a student is never enrolled
    // without their VMs), the layers staged before and published after. The
    // work runs in its own task so a client that hangs up cannot cancel it
    // between the commit and the publication.
    let owners: Vec<Uuid> = students.iter().map(|s| s.id).collect();
    let (pool, storage, course_id, specs) = (
        pool.clone(),
        storage.clone(),
        course.id,
        course.vm_specs.clone(),
    );
    let vms_created = tokio::spawn(async move {
        let plan =
            vms::Provision::stage(&pool, &storage, layer_storage, course_id, &specs, &owners)
                .await?;
        crate::crashpoint::hit("enrol.layers_staged");
        let committed = async {
            let now = db::now();
            let mut tx = db::begin(&pool).await?;
            for owner in &owners {
                sqlx::query("INSERT INTO enrolments (course_id, user_id, created_at, source) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                    .bind(course_id.to_string())
                    .bind(owner.to_string())
                    .bind(&now)
                    .bind(source.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            plan.insert(&mut tx).await?;
            tx.commit().await?;
            crate::crashpoint::hit("enrol.rows_committed");
            Ok::<_, CourseError>(())
        }
        .await;
        if let Err(e) = committed {
            plan.discard();
            return Err(e);
        }
        let created = plan.count();
        if let Err(e) = plan.publish().await {
            // The rows are committed; the start-up sweep finishes the move.
            tracing::error!(error = %e, "publishing new personal layers failed");
            return Err(e.into());
        }
        crate::crashpoint::hit("enrol.layers_published");
        Ok(created)
    })
    .await
    .map_err(|e| CourseError::Io(std::io::Error::other(e.to_string())))??;
    Ok(EnrolReport {
        enrolled: students.into_iter().map(|u| u.username).collect(),
        already_enrolled,
        unknown,
        not_students: others.into_iter().map(|u| u.username).collect(),
        vms_created,
    })
}

/// Removes a student from a course together with their (stopped) VMs and layers.
async fn unenrol(
    pool: &Pool,
    vms: &VmManager,
    course: &Course,
    user_id: Uuid,
) -> Result<(), CourseError> {
    if !is_enrolled(pool, course.id, user_id).await? {
        return Err(CourseError::NotFound);
    }
    vms.delete_for(course.id, Some(user_id))
        .await
        .map_err(running_to_conflict)?;
    sqlx::query("DELETE FROM enrolments WHERE course_id = $1 AND user_id = $2")
        .bind(course.id.to_string())
        .bind(user_id.to_string())
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes a course, its VMs and their layers (all VMs must be stopped).
async fn delete(pool: &Pool, vms: &VmManager, course: &Course) -> Result<(), CourseError> {
    vms.delete_for(course.id, None)
        .await
        .map_err(running_to_conflict)?;
    sqlx::query("DELETE FROM courses WHERE id = $1")
        .bind(course.id.to_string())
        .execute(pool)
        .await?;
    Ok(())
}

fn running_to_conflict(e: VmError) -> CourseError {
    match e {
        VmError::Running(msg) => CourseError::VmRunning(msg),
        other => CourseError::Vm(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(n: u128, value: &str, enrolled: Option<EnrolSource>) -> LinkState {
        LinkState {
            course_id: Uuid::from_u128(n),
            link: DirectoryLink {
                attribute: "groups".into(),
                value: value.into(),
            },
            enrolled,
        }
    }

    #[test]
    fn members_join_leavers_leave_and_a_teachers_enrolment_stays() {
        let attrs: Attributes = [(
            "Groups".to_owned(),
            vec!["cs101".to_owned(), "os".to_owned()],
        )]
        .into_iter()
        .collect();
        let states = [
            state(1, "cs101", None),                      // member, not enrolled
            state(2, "os", Some(EnrolSource::Directory)), // member, enrolled
            state(3, "db", Some(EnrolSource::Directory)), // left the group
            state(4, "net", Some(EnrolSource::Teacher)),  // a teacher's enrolment
            state(5, "ai", None),                         // neither
            state(6, "CS101", None),                      // values compare exactly
        ];
        assert_eq!(
            link_plan(&states, &attrs),
            vec![
                LinkChange::Enrol(Uuid::from_u128(1)),
                LinkChange::Leave(Uuid::from_u128(3)),
            ]
        );
        // Applying the plan reaches a fixed point: nothing more to do.
        assert!(
            link_plan(
                &[
                    state(1, "cs101", Some(EnrolSource::Directory)),
                    state(3, "db", None)
                ],
                &attrs
            )
            .is_empty()
        );
    }

    #[test]
    fn links_are_checked() {
        let l = |a: &str, v: &str| DirectoryLink {
            attribute: a.into(),
            value: v.into(),
        };
        assert!(valid_link(&l("groups", "cs101")).is_ok());
        assert!(valid_link(&l("eduPersonAffiliation", "课程 101")).is_ok());
        for bad in [
            l("", "x"),
            l("gr(oups", "x"),
            l("groups", " "),
            l("groups", "a\nb"),
        ] {
            assert!(valid_link(&bad).is_err(), "{bad:?}");
        }
    }
}
