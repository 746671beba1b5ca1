//! The one place where errors become HTTP responses.
//!
//! Every module has its own error enum; each gets a `From` impl here that
//! decides the status and the stable `error` code of API.md. Bodies are
//! `{"error": code, "message": text}`; for 5xx the message is generic and the
//! detail goes to the log only, so no SQL, path or stack ever reaches a client.
//!
//! A failure because the disk or the database is full is not an internal
//! error: whatever the module, it answers 507 `insufficient_storage` naming
//! the storage ([`crate::space::full_storage`] decides), and the response
//! carries a [`StorageFull`] marker so the router updates the `storage`
//! health check at once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::alerts::service::AlertError;
use crate::auth::AuthError;
use crate::builds::BuildError;
use crate::classtime::ClassError;
use crate::console::ConsoleError;
use crate::courses::CourseError;
use crate::desk::DeskError;
use crate::desk::notices::NoticeError;
use crate::idle::IdleError;
use crate::images::ImageError;
use crate::inspection::InspectionError;
use crate::labnets::LabNetError;
use crate::libvirt::LibvirtError;
use crate::nodes::NodeError;
use crate::placement::PlacementError;
use crate::reports::ReportError;
use crate::space::{StorageFull, Store};
use crate::templates::TemplateError;
use crate::usage::UsageError;
use crate::users::UserError;
use crate::vms::VmError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 and 503 that know when).
    pub retry_after: Option<u64>,
    /// Set for 507: which storage is full (becomes a [`StorageFull`] marker).
    storage_full: Option<Store>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            storage_full: None,
        }
    }
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "not found")
    }
    /// A server-side failure: logged in full, reported generically — or,
    /// when it is a full disk or database, 507 naming which.
    fn internal<E: std::error::Error + 'static>(detail: &E) -> Self {
        if let Some(store) = crate::space::full_storage(detail) {
            return Self::insufficient_storage(store, detail);
        }
        if crate::db::is_unavailable(detail) {
            tracing::warn!(error = %detail, "database unavailable");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database is unavailable; try again shortly",
            )
            .with_retry_after(5);
        }
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }
    /// 507: the request needed room the server does not have. The message
    /// names the storage, never a path.
    fn insufficient_storage(store: Store, detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(storage = %store, error = %detail, "out of storage space");
        let mut e = Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            format!(
                "the server's {store} is full, so the request could not be completed; \
                 an administrator needs to free space"
            ),
        );
        e.storage_full = Some(store);
        e
    }
    fn unavailable(detail: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %detail, "node unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_unavailable",
            "the hypervisor node is unavailable; try again later",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(json!({ "error": self.code, "message": self.message }));
        let mut res = (self.status, body).into_response();
        if let Some(store) = self.storage_full {
            res.extensions_mut().insert(StorageFull(store));
        }
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        res
    }
}

impl ApiError {
    /// The error for a bare status: what the framework (axum's rejections,
    /// hyper's automatic answers) says without a code of ours.
    pub fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status.as_u16() {
            400 => ("bad_request", "the request is malformed"),
            401 => ("unauthenticated", "not logged in"),
            403 => ("forbidden", "not allowed"),
            404 => ("not_found", "not found"),
            405 => ("method_not_allowed", "method not allowed"),
            408 => ("request_timeout", "the request took too long to arrive"),
            411 => ("length_required", "the request needs a Content-Length"),
            413 => ("too_large", "the request body is too large"),
            414 => ("uri_too_long", "the request target (URI) is too long"),
            415 => (
                "unsupported_media_type",
                "the request body's Content-Type is not accepted here",
            ),
            426 => (
                "upgrade_required",
                "this endpoint needs a WebSocket upgrade",
            ),
            431 => (
                "headers_too_large",
                "the request's header fields are too large",
            ),
            s if s >= 500 => ("internal", "internal server error"),
            _ => ("bad_request", "the request was refused"),
        };
        Self::new(status, code, message)
    }

    /// The JSON body of this error (for answers written below axum, see
    /// `super::serve`).
    pub fn body_text(&self) -> String {
        json!({ "error": self.code, "message": self.message }).to_string()
    }
}

/// Middleware over the whole router: an error response that is not JSON
/// (axum's own rejections are plain text; a WebSocket upgrade refused; a body
/// limit hit inside a stream) becomes API.md's `{error, message}`. 4xx keep
/// the framework's text as the message (it says what was wrong, and names no
/// internals); 5xx get the generic message. Other headers (`Allow`,
/// `Retry-After`, `WWW-Authenticate`…) are kept.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::header;
    use http_body_util::BodyExt;
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let mime = v.split(';').next().unwrap_or_default().trim();
            mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let mut err = ApiError::for_status(status);
    if status.is_client_error()
        && let Ok(collected) = http_body_util::Limited::new(body, 2048).collect().await
        && let Ok(text) = String::from_utf8(collected.to_bytes().to_vec())
        && !text.trim().is_empty()
    {
        err.message = text.trim().to_owned();
    }
    let mut out = err.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
        {
            out.headers_mut().append(name, value.clone());
        }
    }
    out
}

impl From<super::origin::OriginError> for ApiError {
    fn from(e: super::origin::OriginError) -> Self {
        Self::new(StatusCode::FORBIDDEN, "bad_origin", e.to_string())
    }
}

impl From<super::limits::LimitError> for ApiError {
    fn from(e: super::limits::LimitError) -> Self {
        use super::limits::LimitError as E;
        let status = match e {
            E::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            E::TooManyHeaders(_) | E::HeadersTooLarge(_) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
        };
        let mut err = Self::for_status(status);
        err.message = e.to_string();
        err
    }
}

impl From<super::metrics::MetricsError> for ApiError {
    fn from(e: super::metrics::MetricsError) -> Self {
        use super::metrics::MetricsError as E;
        match &e {
            E::Unauthorized => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
            }
            E::Unavailable(cause) => {
                tracing::warn!(error = %cause, "rendering metrics failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "metrics_unavailable",
                    e.to_string(),
                )
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::BadCredentials => {
                Self::new(StatusCode::UNAUTHORIZED, "bad_credentials", e.to_string())
            }
            AuthError::Unauthenticated => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
            }
            AuthError::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            AuthError::RateLimited(secs) => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                e.to_string(),
            )
            .with_retry_after(secs),
            AuthError::Busy(secs) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
                    .with_retry_after(secs)
            }
            AuthError::Hash | AuthError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Invalid(m) => Self::bad_request(m),
            UserError::UsernameTaken(_) => {
                Self::new(StatusCode::CONFLICT, "username_taken", e.to_string())
            }
            UserError::NotFound => Self::not_found(),
            UserError::OwnAccount(_) => {
                Self::new(StatusCode::CONFLICT, "own_account", e.to_string())
            }
            UserError::OwnsCourses(_) => Self::new(StatusCode::CONFLICT, "in_use", e.to_string()),
            UserError::WrongPassword => {
                Self::new(StatusCode::FORBIDDEN, "wrong_password", e.to_string())
            }
            UserError::PasswordChangeRequired => Self::new(
                StatusCode::FORBIDDEN,
                "password_change_required",
                e.to_string(),
            ),
            UserError::Auth(a) => a.into(),
            UserError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<crate::directory::DirectoryError> for ApiError {
    fn from(e: crate::directory::DirectoryError) -> Self {
        use crate::directory::DirectoryError as E;
        match e {
            E::User(u) => u.into(),
            E::Course(c) => c.into(),
            E::Db(_) => Self::internal(&e),
        }
    }
}

impl From<crate::auth::sso::SsoError> for ApiError {
    fn from(e: crate::auth::sso::SsoError) -> Self {
        use crate::auth::sso::SsoError as E;
        let msg = e.to_string();
        match e {
            E::UnknownProvider(_) => Self::new(StatusCode::NOT_FOUND, "unknown_provider", msg),
            E::BadRedirect => Self::new(StatusCode::BAD_REQUEST, "bad_redirect", msg),
            E::BadState => Self::new(StatusCode::BAD_REQUEST, "bad_state", msg),
            E::ProviderUnavailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable", msg)
            }
            E::ProviderRefused(_) => Self::new(StatusCode::UNAUTHORIZED, "provider_refused", msg),
            E::BadIdToken(_) => Self::new(StatusCode::UNAUTHORIZED, "bad_id_token", msg),
            E::Refused => Self::new(StatusCode::FORBIDDEN, "sign_in_refused", msg),
            E::Disabled => Self::new(StatusCode::FORBIDDEN, "account_disabled", msg),
            E::AccountConflict(_) => Self::new(StatusCode::CONFLICT, "account_conflict", msg),
            E::Busy => Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", msg).with_retry_after(60),
            E::User(u) => u.into(),
            E::Auth(a) => a.into(),
            E::Db(_) => Self::internal(&e),
        }
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Unsafe(_)
            | ImageError::FormatMismatch { .. }
            | ImageError::Invalid { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unsafe_image",
                e.to_string(),
            ),
            ImageError::BadLayer(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_layer", m)
            }
            ImageError::TooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            ImageError::UnknownFormat(_) => Self::bad_request(e.to_string()),
            ImageError::OverlayExists(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", "the layer already exists")
            }
            ImageError::BadOverlay(_)
            | ImageError::QemuImg { .. }
            | ImageError::Timeout { .. }
            | ImageError::Io(_) => Self::internal(&e),
        }
    }
}

impl From<TemplateError> for ApiError {
    fn from(e: TemplateError) -> Self {
        match e {
            TemplateError::Invalid(m) => Self::bad_request(m),
            TemplateError::Unacceptable(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unacceptable", m)
            }
            TemplateError::NotFound => Self::not_found(),
            TemplateError::NameTaken(_) => {
                Self::new(StatusCode::CONFLICT, "name_taken", e.to_string())
            }
            TemplateError::InUse(_) => Self::new(StatusCode::CONFLICT, "in_use", e.to_string()),
            TemplateError::NotReady => {
                Self::new(StatusCode::CONFLICT, "template_not_ready", e.to_string())
            }
            TemplateError::UploadTooLarge(_) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            TemplateError::UploadInterrupted(_) => Self::bad_request(e.to_string()),
            TemplateError::Unreadable => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_image",
                e.to_string(),
            ),
            TemplateError::Image(i) => i.into(),
            TemplateError::Io(_) | TemplateError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<CourseError> for ApiError {
    fn from(e: CourseError) -> Self {
        match e {
            CourseError::Invalid(m) => Self::bad_request(m),
            CourseError::Unacceptable(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unacceptable", m)
            }
            CourseError::NotFound => Self::not_found(),
            CourseError::CodeTaken(_) => {
                Self::new(StatusCode::CONFLICT, "code_taken", e.to_string())
            }
            CourseError::VmRunning(m) => Self::new(StatusCode::CONFLICT, "vm_running", m),
            CourseError::Vm(v) => v.into(),
            CourseError::Io(_) | CourseError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<LibvirtError> for ApiError {
    fn from(e: LibvirtError) -> Self {
        // libvirt relays a node's own "No space left on device" as text.
        if let Some(store) = crate::space::full_storage(&e) {
            return Self::insufficient_storage(store, &e);
        }
        match e {
            LibvirtError::Unreachable(_) | LibvirtError::Timeout => Self::unavailable(&e),
            // A libvirt object of our name that another installation made
            // (src/installation): pvce will not take it over.
            LibvirtError::NotOurs(_) => Self::new(
                StatusCode::CONFLICT,
                "foreign_libvirt_object",
                "a libvirt object of the name pvce needs belongs to another installation on that node",
            ),
            _ => {
                tracing::error!(error = %e, "libvirt call failed");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "hypervisor_error",
                    "the hypervisor refused the operation",
                )
            }
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Invalid(m) => Self::bad_request(m),
            NodeError::BadUri(_) | NodeError::BadForm(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_node_uri",
                e.to_string(),
            ),
            NodeError::NotFound => Self::not_found(),
            NodeError::Duplicate(_) => {
                Self::new(StatusCode::CONFLICT, "node_exists", e.to_string())
            }
            NodeError::Busy(_) => Self::new(StatusCode::CONFLICT, "node_busy", e.to_string()),
            NodeError::HoldsLayers(_) => {
                Self::new(StatusCode::CONFLICT, "node_holds_layers", e.to_string())
            }
            NodeError::Unavailable(_) => Self::unavailable(&e),
            NodeError::Libvirt(l) => l.into(),
            NodeError::Db(_) => Self::internal(&e),
        }
    }
}

/// A malformed bound is a bad request; bounds that make no range are
/// well-formed but unacceptable.
impl From<crate::range::RangeError> for ApiError {
    fn from(e: crate::range::RangeError) -> Self {
        use crate::range::RangeError;
        match e {
            RangeError::Bound(_) => Self::bad_request(e.to_string()),
            RangeError::Order | RangeError::TooLong(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_range",
                e.to_string(),
            ),
        }
    }
}

impl From<crate::slo::SloError> for ApiError {
    fn from(e: crate::slo::SloError) -> Self {
        use crate::slo::SloError;
        match e {
            SloError::BadQuery(m) => Self::bad_request(m),
            SloError::Forbidden => Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            SloError::InvalidTarget(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_target", m)
            }
            SloError::Range(r) => r.into(),
            SloError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<crate::audit::AuditError> for ApiError {
    fn from(e: crate::audit::AuditError) -> Self {
        use crate::audit::AuditError;
        match e {
            AuditError::BadQuery(m) => Self::bad_request(m),
            AuditError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<crate::events::EventError> for ApiError {
    fn from(e: crate::events::EventError) -> Self {
        use crate::events::EventError;
        match e {
            EventError::BadLimit => Self::bad_request(e.to_string()),
            EventError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<crate::monitor::MonitorError> for ApiError {
    fn from(e: crate::monitor::MonitorError) -> Self {
        use crate::monitor::MonitorError;
        match e {
            MonitorError::BadRange => Self::bad_request(e.to_string()),
            MonitorError::NodeNotFound => Self::not_found(),
            MonitorError::Node(n) => n.into(),
            MonitorError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<PlacementError> for ApiError {
    fn from(e: PlacementError) -> Self {
        match e {
            // No node can run the VM's spec at all: retrying will not help
            // until an admin changes a node (e.g. installs QEMU's SPICE module).
            PlacementError::NoCapableNode(_) => {
                Self::new(StatusCode::CONFLICT, "no_capable_node", e.to_string())
            }
            _ => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_capacity",
                e.to_string(),
            ),
        }
    }
}

impl From<VmError> for ApiError {
    fn from(e: VmError) -> Self {
        match e {
            VmError::NotFound => Self::not_found(),
            VmError::Running(m) => Self::new(StatusCode::CONFLICT, "vm_running", m),
            VmError::Stopping(m) => Self::new(StatusCode::CONFLICT, "vm_stopping", m),
            VmError::NotRunning(m) => Self::new(StatusCode::CONFLICT, "vm_not_running", m),
            VmError::NodeDown(m) => Self::new(StatusCode::CONFLICT, "node_down", m),
            VmError::NodeUp(m) => Self::new(StatusCode::CONFLICT, "node_up", m),
            VmError::NodeMaintenance(m) => Self::new(StatusCode::CONFLICT, "node_maintenance", m),
            VmError::LabNetwork(m) => Self::new(StatusCode::CONFLICT, "lab_network", m),
            VmError::LayerNodeLocal(m) => Self::new(StatusCode::CONFLICT, "layer_node_local", m),
            VmError::LayerBusy(m) => Self::new(StatusCode::CONFLICT, "layer_busy", m),
            VmError::InsufficientMemory(m) => {
                Self::new(StatusCode::CONFLICT, "insufficient_memory", m)
            }
            VmError::EnrolmentInProgress(m) => {
                Self::new(StatusCode::CONFLICT, "enrolment_in_progress", m)
            }
            VmError::CourseArchived(m) => Self::new(StatusCode::CONFLICT, "course_archived", m),
            VmError::SameNode(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "same_node", m),
            VmError::UnknownNode(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_node", m)
            }
            VmError::BadConsoleAddress(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_console_address", m)
            }
            // Each quota its own code, so the UI names it in any language.
            VmError::Quota(q, m) => {
                use crate::vms::gate::Quota;
                let code = match q {
                    Quota::Hours => "quota_hours",
                    Quota::UserVms => "quota_user_vms",
                    Quota::UserVcpus => "quota_user_vcpus",
                    Quota::UserMemory => "quota_user_memory",
                    Quota::CourseVms => "quota_course_vms",
                };
                Self::new(StatusCode::CONFLICT, code, m)
            }
            VmError::Placement(p) => p.into(),
            VmError::Node(n) => n.into(),
            VmError::Libvirt(l) => l.into(),
            VmError::Image(i) => i.into(),
            VmError::LabNet(l) => l.into(),
            VmError::Store(s) => s.into(),
            VmError::Layer(l) => l.into(),
            VmError::Template(t) => t.into(),
            VmError::Io(_) | VmError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<LabNetError> for ApiError {
    fn from(e: LabNetError) -> Self {
        match e {
            LabNetError::Node(n) => n.into(),
            LabNetError::Libvirt(l) => l.into(),
            LabNetError::Db(_) => Self::internal(&e),
            LabNetError::VnisExhausted => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_capacity",
                e.to_string(),
            ),
        }
    }
}

impl From<crate::vms::layers::LayerError> for ApiError {
    fn from(e: crate::vms::layers::LayerError) -> Self {
        use crate::vms::layers::LayerError;
        match e {
            LayerError::HomeDown(_) => {
                Self::new(StatusCode::CONFLICT, "layer_node_down", e.to_string())
            }
            LayerError::HomeMaintenance(_) => Self::new(
                StatusCode::CONFLICT,
                "layer_node_maintenance",
                e.to_string(),
            ),
            LayerError::NotCreated => {
                Self::new(StatusCode::CONFLICT, "layer_not_created", e.to_string())
            }
            LayerError::Shared => Self::new(StatusCode::CONFLICT, "layer_shared", e.to_string()),
            // The node wrote something else than it was sent: a node-side fault.
            LayerError::CopyMismatch(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "layer_copy_mismatch",
                e.to_string(),
            ),
            LayerError::Node(n) => n.into(),
            LayerError::Libvirt(l) => l.into(),
            LayerError::Image(i) => i.into(),
            LayerError::Io(_) | LayerError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<crate::stores::StoreError> for ApiError {
    fn from(e: crate::stores::StoreError) -> Self {
        use crate::stores::StoreError;
        match e {
            // The node can't serve this template; another node may (503 like
            // any node-side unavailability; the message says what to fix).
            StoreError::Mismatch { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "template_store_mismatch",
                e.to_string(),
            ),
            StoreError::Node(n) => n.into(),
            StoreError::Libvirt(l) => l.into(),
            StoreError::Template(t) => t.into(),
            StoreError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<ConsoleError> for ApiError {
    fn from(e: ConsoleError) -> Self {
        match e {
            ConsoleError::Vm(e) => e.into(),
            ConsoleError::Db(e) => Self::internal(&e),
            ConsoleError::BadToken => Self::new(StatusCode::FORBIDDEN, "bad_token", e.to_string()),
            ConsoleError::BadOrigin => {
                Self::new(StatusCode::FORBIDDEN, "bad_origin", e.to_string())
            }
            ConsoleError::NotRunning => {
                Self::new(StatusCode::CONFLICT, "vm_not_running", e.to_string())
            }
            ConsoleError::NotWebSocket(_) => Self::bad_request(e.to_string()),
            ConsoleError::TooMany(_) => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_consoles",
                e.to_string(),
            ),
        }
    }
}

impl From<crate::wall::WallError> for ApiError {
    fn from(e: crate::wall::WallError) -> Self {
        use crate::wall::WallError as E;
        match e {
            E::NotFound => Self::not_found(),
            E::NotRunning => Self::new(StatusCode::CONFLICT, "vm_not_running", e.to_string()),
            E::Invalid(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unacceptable", m),
            E::Vm(v) => v.into(),
            E::Course(c) => c.into(),
            E::Console(c) => c.into(),
            E::Libvirt(l) => l.into(),
            E::Picture(_) | E::Db(_) => Self::internal(&e),
        }
    }
}

impl From<crate::vms::snapshots::SnapshotError> for ApiError {
    fn from(e: crate::vms::snapshots::SnapshotError) -> Self {
        use crate::vms::snapshots::SnapshotError as E;
        match e {
            E::Vm(v) => v.into(),
            E::Invalid(m) => Self::bad_request(m),
            E::NotFound => Self::not_found(),
            E::Quota(_) => Self::new(StatusCode::CONFLICT, "snapshot_quota", e.to_string()),
            E::NameTaken(_) => {
                Self::new(StatusCode::CONFLICT, "snapshot_name_taken", e.to_string())
            }
            E::Missing => Self::new(StatusCode::CONFLICT, "snapshot_missing", e.to_string()),
            // qemu-img on our own layer failing is a server-side problem.
            E::Image(_) | E::Io(_) | E::Db(_) => Self::internal(&e),
        }
    }
}

impl From<crate::portable::PortableError> for ApiError {
    fn from(e: crate::portable::PortableError) -> Self {
        use crate::portable::PortableError as E;
        match e {
            E::Vm(v) => v.into(),
            E::Template(t) => t.into(),
            E::Snapshot(s) => s.into(),
            E::BadArchive(m) => Self::new(StatusCode::BAD_REQUEST, "bad_archive", m),
            E::UnsafeArchive(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unsafe_archive", m),
            E::CorruptExport(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "corrupt_export", m),
            E::UnsupportedExport(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unsupported_export", m)
            }
            E::TemplateMismatch(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "template_mismatch", m)
            }
            E::InvalidLayer(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_layer", m),
            E::TooLarge(_) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string()),
            E::Interrupted(_) => {
                Self::new(StatusCode::BAD_REQUEST, "upload_interrupted", e.to_string())
            }
            // Only bad-image variants come from the upload; the rest are ours.
            E::Image(i) if i.is_bad_image() || matches!(i, ImageError::TooLarge { .. }) => i.into(),
            E::Image(_) | E::Io(_) | E::Db(_) => Self::internal(&e),
        }
    }
}

impl From<BuildError> for ApiError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Template(t) => t.into(),
            BuildError::Vm(v) => v.into(),
            BuildError::NotOwner => Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            BuildError::StillRunning => {
                Self::new(StatusCode::CONFLICT, "vm_running", e.to_string())
            }
            BuildError::NotDraft(_) => Self::new(StatusCode::CONFLICT, "not_draft", e.to_string()),
        }
    }
}

impl From<crate::collect::CollectError> for ApiError {
    fn from(e: crate::collect::CollectError) -> Self {
        use crate::collect::CollectError as E;
        match e {
            E::Course(c) => c.into(),
            E::Invalid(m) => Self::bad_request(m),
            E::Db(_) => Self::internal(&e),
        }
    }
}

impl From<NoticeError> for ApiError {
    fn from(e: NoticeError) -> Self {
        use crate::desk::notify::NotifyError;
        match e {
            NoticeError::NotFound => Self::not_found(),
            NoticeError::Invalid(m) => Self::bad_request(m),
            NoticeError::Notify(NotifyError::BadWebhookUrl) => {
                Self::new(StatusCode::BAD_REQUEST, "bad_webhook_url", e.to_string())
            }
            NoticeError::WebhookNotAllowed => {
                Self::new(StatusCode::FORBIDDEN, "webhook_not_allowed", e.to_string())
            }
            NoticeError::Notify(_) | NoticeError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<DeskError> for ApiError {
    fn from(e: DeskError) -> Self {
        use crate::desk::screenshot::ShotError;
        match e {
            DeskError::NotFound => Self::not_found(),
            DeskError::Invalid(m) => Self::bad_request(m),
            DeskError::Range(r) => r.into(),
            DeskError::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, "forbidden", m),
            DeskError::Unacceptable(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unacceptable", m)
            }
            DeskError::WrongState(_) => {
                Self::new(StatusCode::CONFLICT, "ticket_state", e.to_string())
            }
            DeskError::Changed => Self::new(StatusCode::CONFLICT, "ticket_changed", e.to_string()),
            DeskError::ProblemResolved => {
                Self::new(StatusCode::CONFLICT, "problem_resolved", e.to_string())
            }
            DeskError::ArticleChanged => {
                Self::new(StatusCode::CONFLICT, "article_changed", e.to_string())
            }
            DeskError::ArticleRetired => {
                Self::new(StatusCode::CONFLICT, "article_retired", e.to_string())
            }
            DeskError::VmNotRunning => {
                Self::new(StatusCode::CONFLICT, "vm_not_running", e.to_string())
            }
            DeskError::Policy(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sla_policy_invalid",
                e.to_string(),
            ),
            DeskError::Calendar(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "calendar_invalid",
                e.to_string(),
            ),
            DeskError::Shot(ShotError::TooLarge) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "screenshot_too_large",
                e.to_string(),
            ),
            DeskError::Shot(_) => {
                tracing::warn!(error = %e, "screenshot not converted");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "hypervisor_error",
                    "the hypervisor's screen picture could not be read",
                )
            }
            DeskError::Vm(v) => v.into(),
            DeskError::Node(n) => n.into(),
            DeskError::Libvirt(l) => l.into(),
            DeskError::Users(u) => u.into(),
            DeskError::Io(_) | DeskError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<AlertError> for ApiError {
    fn from(e: AlertError) -> Self {
        match e {
            AlertError::NotFound => Self::not_found(),
            AlertError::NotOpen => Self::new(StatusCode::CONFLICT, "alert_not_open", e.to_string()),
            AlertError::InvalidRules(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_alert_rules",
                e.to_string(),
            ),
            AlertError::BadQuery(m) => Self::bad_request(m),
            AlertError::Desk(d) => d.into(),
            AlertError::Stored(_) | AlertError::Engine(_) | AlertError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<crate::backup::BackupError> for ApiError {
    fn from(e: crate::backup::BackupError) -> Self {
        use crate::backup::BackupError as E;
        match e {
            E::NotConfigured => {
                Self::new(StatusCode::CONFLICT, "backup_not_configured", e.to_string())
            }
            E::Busy => Self::new(StatusCode::CONFLICT, "backup_running", e.to_string()),
            E::PointNotFound => Self::new(StatusCode::NOT_FOUND, "backup_not_found", e.to_string()),
            E::BadPath(m) => Self::bad_request(m),
            E::Guest(crate::collect::GuestReadError::NotFound(_)) => {
                Self::new(StatusCode::NOT_FOUND, "guest_path_not_found", e.to_string())
            }
            E::Guest(
                crate::collect::GuestReadError::NotReadable(_)
                | crate::collect::GuestReadError::NoFileSystem,
            ) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "guest_path_unreadable",
                e.to_string(),
            ),
            E::Guest(_) | E::Image(_) => Self::internal(&e),
            E::Vm(v) => v.into(),
            E::Restic(_) | E::Io(_) | E::Db(_) | E::PgDump(_) => Self::internal(&e),
        }
    }
}

impl From<InspectionError> for ApiError {
    fn from(e: InspectionError) -> Self {
        match e {
            InspectionError::NotFound => Self::not_found(),
            InspectionError::BadLimit => Self::bad_request(e.to_string()),
            InspectionError::Node(n) => n.into(),
            InspectionError::Desk(d) => d.into(),
            InspectionError::Stored(_) | InspectionError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Invalid(m) => Self::bad_request(m),
            ReportError::Range(r) => r.into(),
            ReportError::NotFound => Self::not_found(),
            ReportError::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, "forbidden", m),
            ReportError::WrongState { .. } => {
                Self::new(StatusCode::CONFLICT, "report_state", e.to_string())
            }
            ReportError::PdfUnavailable(_) => {
                tracing::error!(error = %e, "report PDF");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "pdf_unavailable",
                    "the PDF cannot be made on this server (no CJK font); the CSV and the page still work",
                )
            }
            ReportError::Json(_) | ReportError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<crate::term::TermError> for ApiError {
    fn from(e: crate::term::TermError) -> Self {
        use crate::term::TermError as E;
        match e {
            E::Invalid(m) => Self::bad_request(m),
            E::Unacceptable(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unacceptable", m),
            E::NotFound => Self::not_found(),
            E::Archived(m) => Self::new(StatusCode::CONFLICT, "course_archived", m),
            E::HoldExists(m) => Self::new(StatusCode::CONFLICT, "hold_exists", m),
            E::NotDescendant(m) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "template_not_descendant",
                m,
            ),
            E::LayerInUse(m) => Self::new(StatusCode::CONFLICT, "layer_in_use", m),
            E::Course(c) => c.into(),
            E::Vm(v) => v.into(),
            E::Db(ref d) => Self::internal(d),
        }
    }
}

impl From<crate::mydata::MyDataError> for ApiError {
    fn from(e: crate::mydata::MyDataError) -> Self {
        match e {
            crate::mydata::MyDataError::Db(ref d) => Self::internal(d),
        }
    }
}

impl From<ClassError> for ApiError {
    fn from(e: ClassError) -> Self {
        match e {
            ClassError::Invalid(m) => Self::bad_request(m),
            ClassError::Schedule(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_schedule",
                e.to_string(),
            ),
            ClassError::Calendar(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_calendar",
                e.to_string(),
            ),
            ClassError::NotFound => Self::not_found(),
            ClassError::TooManySessions => {
                Self::new(StatusCode::CONFLICT, "too_many_sessions", e.to_string())
            }
            ClassError::Extension(r) => {
                use crate::classtime::extension::Refusal;
                let code = match r {
                    Refusal::Denied => "extension_denied",
                    Refusal::NotNow => "extension_not_now",
                    Refusal::Already => "extension_already",
                    Refusal::NodeNeeded => "extension_node_needed",
                };
                Self::new(StatusCode::CONFLICT, code, e.to_string())
            }
            ClassError::Course(c) => c.into(),
            ClassError::Vm(v) => v.into(),
            ClassError::Node(n) => n.into(),
            ClassError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<UsageError> for ApiError {
    fn from(e: UsageError) -> Self {
        match e {
            UsageError::Invalid(m) => Self::bad_request(m),
            UsageError::Unacceptable(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unacceptable", m)
            }
            UsageError::Range(r) => r.into(),
            UsageError::NotEnrolled => Self::not_found(),
            UsageError::Course(c) => c.into(),
            UsageError::Class(c) => c.into(),
            UsageError::Vm(v) => v.into(),
            UsageError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<IdleError> for ApiError {
    fn from(e: IdleError) -> Self {
        match e {
            // The body parsed: what is left are values that cannot be.
            IdleError::Invalid(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unacceptable", m),
            IdleError::Course(c) => c.into(),
            IdleError::Vm(v) => v.into(),
            IdleError::Usage(u) => u.into(),
            IdleError::Db(_) => Self::internal(&e),
        }
    }
}
