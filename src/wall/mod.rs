//! The teacher's video wall and assist (issue 15): a course's VMs as live
//! thumbnails of their screens, students' raised hands ("ask for help"),
//! who is watching or controlling a VM's console (the student's banner),
//! and a teacher showing their own screen to the class.
//!
//! Rooms: [`thumb`] shrinks the hypervisor's picture (pure), [`shots`]
//! caches one screenshot per VM per second and bounds screenshots per node,
//! [`lease`] tells who watches a live picture (pure), this file is the
//! service the handlers call and owns the queries of `vm_hands` and
//! `course_presentations` (migration 0032).
//!
//! Who may do what:
//! - The wall of a course and the thumbnails of its VMs: the course's
//!   teacher, staff and admins ([`may_watch`]); students never see other
//!   students' screens. A VM's owner may fetch their own thumbnail.
//! - Watching a VM's console view-only and taking control are console
//!   tokens ([`crate::console::Console::issue`]); each is written to the
//!   audit log and, for someone else's VM, the event log there.
//! - Watching a SPICE console view-only is the live picture instead (the
//!   proxy cannot filter SPICE input, so no session is opened at all): the
//!   full-size screenshot ([`Wall::screen`], the thumbnail's who-may rule,
//!   plus the class for the screen its teacher shows it), fetched about
//!   once a second. Each fetch renews a watch lease ([`lease`]); the lease's
//!   watchers are watchers like view-only sessions (the student's banner,
//!   the wall's tile) and a watch's first fetch records it like a view-only
//!   console open.
//! - A hand is raised by the VM's owner only (on a VM of a course) and
//!   lowered by the owner or by anyone who may watch the VM.
//! - A presentation: the course's teacher (or an admin) shows a running VM
//!   they own in that course; the course's students get view-only tokens
//!   for it while it lasts. It ends when stopped, or when the VM stops
//!   (the token issue then answers `vm_not_running`).
//!
//! Time: the thumbnail cache and the watch leases take `now` from their
//! caller (handlers pass `Instant::now()`, tests their own).

pub mod lease;
pub mod shots;
pub mod thumb;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::auth::Role;
use crate::console::{Console, ConsoleError, Grant};
use crate::courses::{self, CourseError};
use crate::db::{self, Pool};
use crate::desk::screenshot::{MAX_RAW_BYTES, ShotError};
use crate::libvirt::LibvirtError;
use crate::storage::Storage;
use crate::users::User;
use crate::vms::{Vm, VmError, VmManager, VmState};

pub use lease::{Leases, Renewal};
pub use shots::{Shot, Shots};

#[derive(Debug, thiserror::Error)]
pub enum WallError {
    #[error("not found")]
    NotFound,
    #[error("the VM is not running")]
    NotRunning,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Course(#[from] CourseError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error("the node's screenshot failed: {0}")]
    Libvirt(#[from] LibvirtError),
    #[error(transparent)]
    Picture(#[from] ShotError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Which tiles of the wall to show.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    /// Only running VMs.
    pub running: bool,
    /// Only VMs whose student raised a hand.
    pub hands: bool,
}

/// Someone with a console open on a VM (not its owner).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Watcher {
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    /// `view` (watching) or `control`.
    pub mode: &'static str,
}

/// One VM on the wall.
#[derive(Debug, Clone, Serialize)]
pub struct Tile {
    pub vm_id: Uuid,
    pub vm_name: String,
    pub owner_id: Uuid,
    pub owner_username: String,
    pub owner_display_name: String,
    /// The owner is the course's teacher (their own VM, which they may present).
    pub teacher_vm: bool,
    pub state: VmState,
    pub node_name: Option<String>,
    pub hand_raised_at: Option<String>,
    pub watchers: Vec<Watcher>,
    /// Where the screen's picture is, while the VM runs.
    pub thumbnail_url: Option<String>,
}

/// A course's wall.
#[derive(Debug, Clone, Serialize)]
pub struct WallView {
    pub course_id: Uuid,
    pub code: String,
    pub name: String,
    pub tiles: Vec<Tile>,
    /// VMs of the course in all, and with a raised hand (before filtering).
    pub total: usize,
    pub hands: usize,
    pub presentation: Option<Presentation>,
}

/// What a VM's owner sees: their hand, and who has their screen open.
#[derive(Debug, Clone, Serialize)]
pub struct Assist {
    pub vm_id: Uuid,
    pub hand_raised_at: Option<String>,
    pub watchers: Vec<Watcher>,
    /// The teacher showing their screen to the VM's course, if they do
    /// (and it is not this VM).
    pub presentation: Option<Presentation>,
}

/// A teacher's screen shown to a class.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Presentation {
    pub course_id: Uuid,
    pub vm_id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub started_at: String,
}

/// True if `user` may watch the VMs of `course` on the wall (module docs).
pub fn may_watch(user: &User, course: &courses::Course) -> bool {
    match user.role {
        Role::Admin | Role::Staff => true,
        Role::Teacher => course.teacher_id == user.id,
        Role::Student => false,
    }
}

/// The wall's service.
#[derive(Debug)]
pub struct Wall {
    pool: Pool,
    storage: Storage,
    vms: Arc<VmManager>,
    console: Arc<Console>,
    shots: Shots,
    /// Who watches which VM's live picture.
    leases: Mutex<Leases>,
}

impl Wall {
    /// `shots_per_node`: screenshots in flight per node at most (a
    /// screenshot makes QEMU write the whole framebuffer; a node with 40
    /// VMs on the wall is asked for 40 a second).
    pub fn new(
        pool: Pool,
        storage: Storage,
        vms: Arc<VmManager>,
        console: Arc<Console>,
        shots_per_node: usize,
    ) -> Self {
        Self {
            pool,
            storage,
            vms,
            console,
            shots: Shots::new(shots_per_node, shots::MAX_AGE),
            leases: Mutex::new(Leases::new(lease::LEASE)),
        }
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Screenshots taken so far (cache misses).
    pub fn screenshots_taken(&self) -> u64 {
        self.shots.taken.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A course the user may watch, or NotFound.
    async fn watched_course(&self, user: &User, id: Uuid) -> Result<courses::Course, WallError> {
        let course = courses::get_visible(&self.pool, user, id).await?;
        if may_watch(user, &course) {
            Ok(course)
        } else {
            Err(WallError::NotFound)
        }
    }

    /// A VM the user may watch (or owns), with its course; NotFound otherwise.
    async fn watched_vm(&self, user: &User, id: Uuid) -> Result<Vm, WallError> {
        let vm = crate::vms::load(&self.pool, id).await?;
        if vm.owner_id == user.id || user.role == Role::Admin {
            return Ok(vm);
        }
        let Some(course_id) = vm.course_id else {
            return Err(WallError::NotFound);
        };
        let course = courses::load(&self.pool, course_id).await?;
        if may_watch(user, &course) {
            Ok(vm)
        } else {
            Err(WallError::NotFound)
        }
    }

    /// A VM whose live picture the user may see: one they may watch (or
    /// own), or the one their course's teacher shows the class; NotFound
    /// otherwise.
    async fn screen_vm(&self, user: &User, id: Uuid) -> Result<Vm, WallError> {
        match self.watched_vm(user, id).await {
            Err(WallError::NotFound) => {}
            other => return other,
        }
        let vm = crate::vms::load(&self.pool, id).await?;
        let Some(course_id) = vm.course_id else {
            return Err(WallError::NotFound);
        };
        match self.presentation(user, course_id).await? {
            Some(p) if p.vm_id == vm.id => Ok(vm),
            _ => Err(WallError::NotFound),
        }
    }

    /// The wall of a course at `now`: its VMs (the filter applied), hands,
    /// watchers.
    pub async fn wall(
        &self,
        user: &User,
        id: Uuid,
        filter: Filter,
        now: Instant,
    ) -> Result<WallView, WallError> {
        let course = self.watched_course(user, id).await?;
        let vms = self.vms.of_course(course.id).await?;
        let names = self.owner_names(course.id).await?;
        let hands = self.hands_of(course.id).await?;
        let mut tiles = Vec::with_capacity(vms.len());
        for vm in vms {
            let (username, display_name) = names.get(&vm.owner_id).cloned().unwrap_or_default();
            let running = vm.state == VmState::Running;
            tiles.push(Tile {
                vm_id: vm.id,
                owner_id: vm.owner_id,
                owner_username: username,
                owner_display_name: display_name,
                teacher_vm: vm.owner_id == course.teacher_id,
                state: vm.state,
                node_name: vm.node_name.clone(),
                hand_raised_at: hands.get(&vm.id).cloned(),
                watchers: self.watchers_of(&vm, now).await?,
                thumbnail_url: running.then(|| format!("/api/vms/{}/thumbnail", vm.id)),
                vm_name: vm.name,
            });
        }
        let total = tiles.len();
        let raised = tiles.iter().filter(|t| t.hand_raised_at.is_some()).count();
        tiles.retain(|t| {
            (!filter.running || t.state == VmState::Running)
                && (!filter.hands || t.hand_raised_at.is_some())
        });
        // Raised hands first (longest waiting first), then by student.
        tiles.sort_by(|a, b| {
            let key = |t: &Tile| (t.hand_raised_at.is_none(), t.hand_raised_at.clone());
            key(a)
                .cmp(&key(b))
                .then_with(|| a.owner_username.cmp(&b.owner_username))
                .then_with(|| a.vm_name.cmp(&b.vm_name))
        });
        Ok(WallView {
            course_id: course.id,
            code: course.code.clone(),
            name: course.name.clone(),
            tiles,
            total,
            hands: raised,
            presentation: self.presentation_of(course.id).await?,
        })
    }

    /// The thumbnail of a running VM's screen at `now` (PNG), from the
    /// cache when fresh (module docs of [`shots`]).
    pub async fn thumbnail(&self, user: &User, id: Uuid, now: Instant) -> Result<Shot, WallError> {
        let vm = self.watched_vm(user, id).await?;
        self.picture(&vm, now, false).await
    }

    /// The running VM's screen at full size at `now` (PNG), at most about a
    /// second old: the live picture of a view-only watch. The fetch renews
    /// the user's watch lease; the first of a watch records it like a
    /// view-only console open (module docs).
    pub async fn screen(
        &self,
        user: &User,
        id: Uuid,
        now: Instant,
    ) -> Result<bytes::Bytes, WallError> {
        let vm = self.screen_vm(user, id).await?;
        if vm.state != VmState::Running {
            return Err(WallError::NotRunning);
        }
        let renewal = self.leases().renew(vm.id, user.id, now);
        if renewal == Renewal::Started {
            self.console.record_picture_watch(user, &vm).await;
        }
        self.picture(&vm, now, true)
            .await?
            .full
            .ok_or_else(|| WallError::Invalid("the screenshot has no full-size picture".into()))
    }

    /// The pictures of a running VM's screen at `now`, from the cache when
    /// fresh (module docs of [`shots`]); with the full size if `full`.
    async fn picture(&self, vm: &Vm, now: Instant, full: bool) -> Result<Shot, WallError> {
        if vm.state != VmState::Running {
            return Err(WallError::NotRunning);
        }
        // While someone watches the live picture, every screenshot of the
        // VM is made in both sizes, so the wall and the watcher share it.
        let full = full || self.leases().watched(vm.id, now);
        let boot = vm.last_started_at.clone().unwrap_or_default();
        // A fresh picture costs no call to the node.
        if let Some(shot) = self.shots.peek(vm.id, &boot, now, full) {
            return Ok(shot);
        }
        let (vm, node, conn) = self.vms.running_on_node(vm.id).await?;
        let boot = vm.last_started_at.clone().unwrap_or_default();
        let domain = self.vms.domain_name(vm.id);
        self.shots
            .get(vm.id, node.id, &boot, now, full, |full| async move {
                let (_, raw) = conn
                    .screenshot(&domain, MAX_RAW_BYTES)
                    .await?
                    .ok_or(WallError::NotRunning)?;
                // Shrinking and encoding a screen is CPU work: off the
                // async threads.
                let pictures =
                    tokio::task::spawn_blocking(move || thumb::pictures(&raw, thumb::WIDTH, full))
                        .await
                        .map_err(|e| WallError::Invalid(format!("thumbnail task: {e}")))??;
                Ok::<_, WallError>(pictures)
            })
            .await
    }

    /// Raises the owner's hand on their VM of a course; returns when it
    /// was raised (the first time, if it was already up) and the assist
    /// state at `now`.
    pub async fn raise_hand(
        &self,
        user: &User,
        id: Uuid,
        now: Instant,
    ) -> Result<Assist, WallError> {
        let vm = crate::vms::load(&self.pool, id).await?;
        if vm.owner_id != user.id {
            return Err(WallError::NotFound);
        }
        if vm.course_id.is_none() {
            return Err(WallError::Invalid(
                "a hand is raised on a VM of a course".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO vm_hands (vm_id, user_id, raised_at) VALUES ($1, $2, $3) \
             ON CONFLICT (vm_id) DO NOTHING",
        )
        .bind(vm.id.to_string())
        .bind(user.id.to_string())
        .bind(db::now())
        .execute(&self.pool)
        .await?;
        self.assist_of(&vm, now).await
    }

    /// Lowers the hand on a VM (its owner, or whoever may watch it).
    pub async fn lower_hand(&self, user: &User, id: Uuid) -> Result<(), WallError> {
        let vm = self.watched_vm(user, id).await?;
        sqlx::query("DELETE FROM vm_hands WHERE vm_id = $1")
            .bind(vm.id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The hand and the watchers at `now` of a VM, for its owner (the
    /// desktop's banner) or whoever may watch it.
    pub async fn assist(&self, user: &User, id: Uuid, now: Instant) -> Result<Assist, WallError> {
        let vm = self.watched_vm(user, id).await?;
        self.assist_of(&vm, now).await
    }

    async fn assist_of(&self, vm: &Vm, now: Instant) -> Result<Assist, WallError> {
        let hand: Option<String> =
            sqlx::query_scalar("SELECT raised_at FROM vm_hands WHERE vm_id = $1")
                .bind(vm.id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let presentation = match vm.course_id {
            Some(c) => self.presentation_of(c).await?.filter(|p| p.vm_id != vm.id),
            None => None,
        };
        Ok(Assist {
            vm_id: vm.id,
            hand_raised_at: hand,
            watchers: self.watchers_of(vm, now).await?,
            presentation,
        })
    }

    /// Who other than the owner has the VM's screen open at `now` — a
    /// console session, or a live picture watched while the VM runs — one
    /// entry per user (control wins over view when they have both).
    async fn watchers_of(&self, vm: &Vm, now: Instant) -> Result<Vec<Watcher>, WallError> {
        let mut live: Vec<(Uuid, bool)> = Vec::new();
        let pictures = if vm.state == VmState::Running {
            self.leases().watchers(vm.id, now)
        } else {
            Vec::new()
        };
        let sessions = self.console.watchers(vm.id).into_iter();
        let watches = pictures.into_iter().map(|user_id| crate::console::Watcher {
            user_id,
            view_only: true,
        });
        for w in sessions.chain(watches) {
            if w.user_id == vm.owner_id {
                continue;
            }
            match live.iter_mut().find(|(u, _)| *u == w.user_id) {
                Some((_, view_only)) => *view_only &= w.view_only,
                None => live.push((w.user_id, w.view_only)),
            }
        }
        let mut out = Vec::with_capacity(live.len());
        for (user_id, view_only) in live {
            let row = sqlx::query("SELECT username, display_name FROM users WHERE id = $1")
                .bind(user_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
            let Some(row) = row else { continue };
            out.push(Watcher {
                user_id,
                username: row.try_get("username")?,
                display_name: row.try_get("display_name")?,
                mode: if view_only { "view" } else { "control" },
            });
        }
        out.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(out)
    }

    /// Usernames and display names of the owners of a course's VMs.
    async fn owner_names(
        &self,
        course_id: Uuid,
    ) -> Result<std::collections::HashMap<Uuid, (String, String)>, WallError> {
        let rows = sqlx::query(
            "SELECT u.id, u.username, u.display_name FROM users u \
             WHERE u.id IN (SELECT owner_id FROM vms WHERE course_id = $1)",
        )
        .bind(course_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out = std::collections::HashMap::new();
        for r in rows {
            let id: String = r.try_get("id")?;
            if let Ok(id) = id.parse() {
                out.insert(id, (r.try_get("username")?, r.try_get("display_name")?));
            }
        }
        Ok(out)
    }

    /// Raised hands of a course's VMs: VM → when.
    async fn hands_of(
        &self,
        course_id: Uuid,
    ) -> Result<std::collections::HashMap<Uuid, String>, WallError> {
        let rows = sqlx::query(
            "SELECT h.vm_id, h.raised_at FROM vm_hands h JOIN vms v ON v.id = h.vm_id \
             WHERE v.course_id = $1",
        )
        .bind(course_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out = std::collections::HashMap::new();
        for r in rows {
            let id: String = r.try_get("vm_id")?;
            if let Ok(id) = id.parse() {
                out.insert(id, r.try_get("raised_at")?);
            }
        }
        Ok(out)
    }

    /// The course's presentation, if one runs.
    async fn presentation_of(&self, course_id: Uuid) -> Result<Option<Presentation>, WallError> {
        let row = sqlx::query(
            "SELECT p.vm_id, p.user_id, p.started_at, u.username, u.display_name \
             FROM course_presentations p JOIN users u ON u.id = p.user_id WHERE p.course_id = $1",
        )
        .bind(course_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let parse = |s: String| {
            s.parse::<Uuid>()
                .map_err(|e| WallError::Invalid(e.to_string()))
        };
        Ok(Some(Presentation {
            course_id,
            vm_id: parse(r.try_get("vm_id")?)?,
            user_id: parse(r.try_get("user_id")?)?,
            username: r.try_get("username")?,
            display_name: r.try_get("display_name")?,
            started_at: r.try_get("started_at")?,
        }))
    }

    /// The course's presentation for anyone who may see the course.
    pub async fn presentation(
        &self,
        user: &User,
        course_id: Uuid,
    ) -> Result<Option<Presentation>, WallError> {
        let course = courses::get_visible(&self.pool, user, course_id).await?;
        self.presentation_of(course.id).await
    }

    /// Starts showing `vm_id` (a running VM of the course's teacher in that
    /// course) to the class, replacing any other presentation of it.
    pub async fn present(
        &self,
        user: &User,
        course_id: Uuid,
        vm_id: Uuid,
    ) -> Result<Presentation, WallError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        let vm = crate::vms::load(&self.pool, vm_id)
            .await
            .map_err(|_| WallError::Invalid("no such VM".into()))?;
        if vm.course_id != Some(course.id) || vm.owner_id != course.teacher_id {
            return Err(WallError::Invalid(
                "only a VM of the course's teacher in this course can be shown to the class".into(),
            ));
        }
        if vm.state != VmState::Running {
            return Err(WallError::NotRunning);
        }
        sqlx::query(
            "INSERT INTO course_presentations (course_id, vm_id, user_id, started_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (course_id) DO UPDATE SET \
             vm_id = excluded.vm_id, user_id = excluded.user_id, started_at = excluded.started_at",
        )
        .bind(course.id.to_string())
        .bind(vm.id.to_string())
        .bind(vm.owner_id.to_string())
        .bind(db::now())
        .execute(&self.pool)
        .await?;
        self.presentation_of(course.id)
            .await?
            .ok_or(WallError::NotFound)
    }

    /// Stops the course's presentation (absent is fine).
    pub async fn stop_presenting(&self, user: &User, course_id: Uuid) -> Result<(), WallError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        sqlx::query("DELETE FROM course_presentations WHERE course_id = $1")
            .bind(course.id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The course teacher's own VM in the course (of its first VM spec),
    /// created on first use like a student's personal VM: what they show
    /// the class. `Ok((vm, created))`.
    pub async fn teacher_vm(&self, user: &User, course_id: Uuid) -> Result<(Vm, bool), WallError> {
        let course = courses::get_managed(&self.pool, user, course_id).await?;
        if let Some(vm) = self.teacher_vm_of(&course).await? {
            return Ok((vm, false));
        }
        let specs: Vec<_> = course.vm_specs.iter().take(1).cloned().collect();
        if specs.is_empty() {
            return Err(WallError::Invalid("the course has no VM spec".into()));
        }
        let plan = crate::vms::Provision::stage(
            &self.pool,
            &self.storage,
            self.vms.layer_mode(),
            course.id,
            &specs,
            &[course.teacher_id],
        )
        .await?;
        let committed = async {
            let mut tx = db::begin(&self.pool).await?;
            plan.insert(&mut tx).await?;
            tx.commit().await?;
            Ok::<_, WallError>(())
        }
        .await;
        if let Err(e) = committed {
            plan.discard();
            return Err(e);
        }
        plan.publish().await?;
        let vm = self
            .teacher_vm_of(&course)
            .await?
            .ok_or(WallError::NotFound)?;
        Ok((vm, true))
    }

    async fn teacher_vm_of(&self, course: &courses::Course) -> Result<Option<Vm>, WallError> {
        let vms = self.vms.of_course(course.id).await?;
        Ok(vms.into_iter().find(|v| v.owner_id == course.teacher_id))
    }

    /// A view-only console token for the course's presentation (or, for a
    /// SPICE screen, its live picture), for anyone who may see the course
    /// (its students above all).
    pub async fn presentation_console(
        &self,
        user: &User,
        course_id: Uuid,
    ) -> Result<Grant, WallError> {
        let p = self
            .presentation(user, course_id)
            .await?
            .ok_or(WallError::NotFound)?;
        Ok(self.console.issue_checked(user, p.vm_id, true).await?)
    }
}
