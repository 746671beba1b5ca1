//! Black-box API tests that need no running VM: the role matrix, input
//! validation, unsafe images, auth and sessions. Real server, real SQLite.

use crate::common::{self, PASSWORD, TestEnv, assert_error};
use pvce::auth::Role;
use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A request body of the role matrix.
enum Body {
    None,
    Json(Value),
    /// A media type and the bytes (CSV, an upload).
    Raw(&'static str, &'static str),
}

/// One row of the role matrix: an operation of `openapi.json` (method and
/// route as the document spells it), the query string to add, the body, and
/// the status expected for [anonymous, student, teacher, staff, admin]. Path
/// parameters are the nil UUID: nobody owns it, so "allowed" shows as 404
/// (or the answer to the body) and "not allowed" as 401/403 before any
/// lookup — or 404 where the API hides what exists from who may not see it.
struct Row {
    method: Method,
    route: &'static str,
    query: &'static str,
    body: Body,
    expected: [u16; 5],
}

fn row(method: Method, route: &'static str, body: Body, expected: [u16; 5]) -> Row {
    Row {
        method,
        route,
        query: "",
        body,
        expected,
    }
}

const NIL: &str = "00000000-0000-0000-0000-000000000000";

impl Row {
    fn with_query(self, query: &'static str) -> Row {
        Row { query, ..self }
    }

    /// The route with every `{param}` set to the nil UUID, plus the query.
    fn path(&self) -> String {
        let mut path = String::new();
        for (i, segment) in self.route.split('/').enumerate() {
            if i > 0 {
                path.push('/');
            }
            if segment.starts_with('{') && segment.ends_with('}') {
                path.push_str(NIL);
            } else {
                path.push_str(segment);
            }
        }
        path + self.query
    }
}

/// Every operation (method, route) of an OpenAPI document.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (route, item) in doc["paths"].as_object().unwrap() {
        for m in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&m.as_str()) {
                ops.insert((m.to_uppercase(), route.clone()));
            }
        }
    }
    ops
}

/// The role matrix, one row per operation of `openapi.json`. Logout comes
/// last: it ends the sessions the other rows use.
fn role_matrix() -> Vec<Row> {
    use Body::{Json, Raw};
    const NO: Body = Body::None;
    let csv = Raw("text/csv", "username,display_name,role,password\n");
    let bytes = || Raw("application/octet-stream", "");
    vec![
        row(
            Method::POST,
            "/api/auth/login",
            Json(json!({"username":"test-nobody","password":"not-the-password"})),
            [401, 401, 401, 401, 401],
        ),
        row(Method::GET, "/api/me", NO, [401, 200, 200, 200, 200]),
        row(
            Method::POST,
            "/api/me/password",
            Json(json!({"current_password":"x","new_password":"short"})),
            [401, 400, 400, 400, 400],
        ),
        row(Method::GET, "/api/users", NO, [401, 403, 403, 403, 200]),
        row(
            Method::POST,
            "/api/users",
            Json(json!({"username":"x","password":"short","role":"student"})),
            [401, 403, 403, 403, 400],
        ),
        row(
            Method::POST,
            "/api/users/import",
            csv,
            [401, 403, 403, 403, 200],
        ),
        row(
            Method::PATCH,
            "/api/users/{id}",
            Json(json!({"display_name":"x"})),
            [401, 403, 403, 403, 404],
        ),
        row(Method::GET, "/api/nodes", NO, [401, 403, 403, 200, 200]),
        row(
            Method::POST,
            "/api/nodes",
            Json(json!({"name":"n","uri":"bogus://"})),
            [401, 403, 403, 403, 422],
        ),
        row(
            Method::GET,
            "/api/nodes/{id}",
            NO,
            [401, 403, 403, 404, 404],
        ),
        row(
            Method::DELETE,
            "/api/nodes/{id}",
            NO,
            [401, 403, 403, 403, 404],
        ),
        row(
            Method::POST,
            "/api/nodes/{id}/maintenance",
            Json(json!({"enabled":true})),
            [401, 403, 403, 403, 404],
        ),
        row(
            Method::POST,
            "/api/nodes/{id}/overlay",
            Json(json!({"vtep_address":"10.0.0.2"})),
            [401, 403, 403, 403, 404],
        ),
        // ---- area: sso (new rows of this area go right below this line)
        row(
            Method::PUT,
            "/api/courses/{id}/directory-link",
            Json(json!({"link":{"attribute":"groups","value":"cs101"}})),
            [401, 403, 404, 403, 404],
        ),
        // No LDAP provider here: an empty report (a dry run changes nothing).
        row(
            Method::POST,
            "/api/directory/sync",
            NO,
            [401, 403, 403, 403, 200],
        )
        .with_query("?dry_run=true"),
        row(
            Method::GET,
            "/api/directory/syncs",
            NO,
            [401, 403, 403, 403, 200],
        ),
        // No LDAP provider is configured in this test server.
        row(
            Method::POST,
            "/api/auth/ldap/{id}/login",
            Json(json!({"username":"test-nobody","password":"not-the-password"})),
            [404, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/auth/providers",
            NO,
            [200, 200, 200, 200, 200],
        ),
        row(
            Method::GET,
            "/api/auth/oidc/{id}/start",
            NO,
            [404, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/auth/oidc/{id}/callback",
            NO,
            [404, 404, 404, 404, 404],
        )
        .with_query("?state=x&code=y"),
        // No CAS provider is configured in this test server.
        row(
            Method::GET,
            "/api/auth/cas/{id}/start",
            NO,
            [404, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/auth/cas/{id}/callback",
            NO,
            [404, 404, 404, 404, 404],
        )
        .with_query("?state=x&ticket=ST-1"),
        row(
            Method::POST,
            "/api/auth/cas/{id}/callback",
            Raw(
                "application/x-www-form-urlencoded",
                "logoutRequest=%3Cx%2F%3E",
            ),
            [404, 404, 404, 404, 404],
        ),
        // ---- area: backup (new rows of this area go right below this line)
        row(Method::GET, "/api/backups", NO, [401, 403, 403, 403, 200]),
        // No repository is configured in this test server.
        row(Method::POST, "/api/backups", NO, [401, 403, 403, 403, 409]),
        row(
            Method::GET,
            "/api/vms/{id}/backups",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/restore",
            Json(json!({"backup_id": NIL})),
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/vms/{id}/backups/{bid}/files",
            NO,
            [401, 404, 404, 404, 404],
        )
        .with_query("?path=/root"),
        // ---- area: class (new rows of this area go right below this line)
        row(
            Method::GET,
            "/api/courses/{id}/sessions",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/courses/{id}/sessions",
            Json(json!({"date":"2026-09-07","start":"08:00","end":"09:40"})),
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::PUT,
            "/api/courses/{id}/sessions/{sid}",
            Json(json!({"date":"2026-09-07","start":"08:00","end":"09:40"})),
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::DELETE,
            "/api/courses/{id}/sessions/{sid}",
            NO,
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::GET,
            "/api/vms/{id}/class",
            NO,
            [401, 404, 404, 404, 404],
        ),
        // ---- area: console2 (new rows of this area go right below this line)
        row(
            Method::POST,
            "/api/vms/{id}/serial",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(Method::GET, "/ws/serial", NO, [400, 400, 400, 400, 400]).with_query("?token=x"),
        row(
            Method::PUT,
            "/api/courses/{id}/clipboard",
            Json(json!({"to_guest":false,"from_guest":true})),
            [401, 403, 404, 403, 404],
        ),
        // ---- area: core (new rows of this area go right below this line)
        // ---- area: quota (new rows of this area go right below this line)
        row(
            Method::GET,
            "/api/courses/{id}/usage",
            NO,
            [401, 403, 404, 403, 404],
        ),
        row(Method::GET, "/api/me/usage", NO, [401, 200, 200, 200, 200]),
        row(
            Method::GET,
            "/api/courses/{id}/quota",
            NO,
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::PUT,
            "/api/courses/{id}/quota",
            Json(json!({"hours_outside": 10, "max_concurrent_vms": null})),
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::PUT,
            "/api/courses/{id}/quota/students/{uid}",
            Json(json!({"extra_hours": 1})),
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::GET,
            "/api/quota/limits",
            NO,
            [401, 200, 200, 200, 200],
        ),
        // Out of range: refused, nothing changed.
        row(
            Method::PUT,
            "/api/quota/limits",
            Json(json!({"max_running_vms": 0})),
            [401, 403, 403, 403, 400],
        ),
        row(
            Method::GET,
            "/api/courses/{id}/idle",
            NO,
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::PUT,
            "/api/courses/{id}/idle",
            Json(json!({"never_connected_minutes": 10})),
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::GET,
            "/api/vms/{id}/idle",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/class/extend",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/courses/{id}/extension",
            NO,
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::PUT,
            "/api/courses/{id}/extension",
            Json(json!({"allowed": true})),
            [401, 403, 404, 403, 404],
        ),
        // ---- area: wall (new rows of this area go right below this line)
        row(
            Method::GET,
            "/api/courses/{id}/wall",
            NO,
            [401, 403, 404, 404, 404],
        )
        .with_query("?running=true&hands=true"),
        row(
            Method::GET,
            "/api/courses/{id}/presentation",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::PUT,
            "/api/courses/{id}/presentation",
            Json(json!({ "vm_id": NIL })),
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::DELETE,
            "/api/courses/{id}/presentation",
            NO,
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::POST,
            "/api/courses/{id}/presentation/console",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/courses/{id}/teacher-vm",
            NO,
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::GET,
            "/api/vms/{id}/thumbnail",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/vms/{id}/screen",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/hand",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::DELETE,
            "/api/vms/{id}/hand",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/vms/{id}/assist",
            NO,
            [401, 404, 404, 404, 404],
        ),
        // ---- area: share (new rows of this area go right below this line)
        // ---- area: term (new rows of this area go right below this line)
        row(Method::GET, "/api/me/export", NO, [401, 200, 200, 200, 200]),
        row(
            Method::PATCH,
            "/api/courses/{id}",
            Json(json!({"retention_days": 30})),
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::POST,
            "/api/courses/{id}/archive",
            NO,
            [401, 403, 404, 403, 404],
        ),
        row(Method::GET, "/api/me/term", NO, [401, 200, 200, 200, 200]),
        row(Method::GET, "/api/erasures", NO, [401, 200, 200, 200, 200]),
        row(
            Method::GET,
            "/api/term-holds",
            NO,
            [401, 403, 403, 403, 200],
        ),
        // The nil course does not exist: well-formed, unacceptable.
        row(
            Method::POST,
            "/api/term-holds",
            Json(json!({"course_id": NIL, "reason": "appeal"})),
            [401, 403, 403, 403, 422],
        ),
        row(
            Method::DELETE,
            "/api/term-holds/{id}",
            NO,
            [401, 403, 403, 403, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/carry-over",
            Json(json!({"from_vm_id": NIL})),
            [401, 404, 404, 404, 404],
        ),
        row(Method::GET, "/api/audit", NO, [401, 403, 403, 403, 200]),
        row(Method::GET, "/api/audit.csv", NO, [401, 403, 403, 403, 200]),
        // ---- area: notify (new rows of this area go right below this line)
        row(
            Method::POST,
            "/api/tickets/{id}/reply",
            Json(json!({"text":"x"})),
            [401, 403, 403, 403, 404],
        ),
        row(
            Method::POST,
            "/api/tickets/{id}/template",
            Json(json!({"template_id": NIL})),
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/me/notifications",
            NO,
            [401, 200, 200, 200, 200],
        ),
        row(
            Method::POST,
            "/api/me/notifications/read-all",
            NO,
            [401, 200, 200, 200, 200],
        ),
        row(
            Method::POST,
            "/api/me/notifications/{id}/read",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/me/notification-settings",
            NO,
            [401, 200, 200, 200, 200],
        ),
        row(
            Method::PUT,
            "/api/me/notification-settings",
            Json(json!({"lang":"en","webhook_url":"ftp://x"})),
            [401, 400, 400, 400, 400],
        ),
        row(
            Method::POST,
            "/api/nodes/{id}/fence",
            Json(json!({"confirm_powered_off":true})),
            [401, 403, 403, 403, 404],
        ),
        row(
            Method::GET,
            "/api/nodes/{id}/metrics",
            NO,
            [401, 403, 403, 404, 404],
        )
        .with_query("?minutes=60"),
        row(
            Method::GET,
            "/api/nodes/metrics",
            NO,
            [401, 403, 403, 200, 200],
        ),
        row(Method::GET, "/api/cluster", NO, [401, 403, 403, 403, 200]),
        row(Method::GET, "/api/events", NO, [401, 403, 403, 200, 200]),
        row(Method::GET, "/api/templates", NO, [401, 403, 200, 403, 200]),
        row(
            Method::GET,
            "/api/templates/{id}",
            NO,
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::DELETE,
            "/api/templates/{id}",
            NO,
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::POST,
            "/api/templates/import",
            bytes(),
            [401, 403, 400, 403, 400],
        )
        .with_query("?name=x&format=raw"),
        row(
            Method::POST,
            "/api/templates/match",
            Json(json!({"os":"linux","software":[]})),
            [401, 403, 200, 403, 200],
        ),
        row(
            Method::POST,
            "/api/templates/{id}/derive",
            Json(json!({"name":"test-derived","software":["gcc"]})),
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::POST,
            "/api/templates/{id}/seal",
            NO,
            [401, 403, 404, 403, 404],
        ),
        // ---- area: sli (new rows of this area go right below this line)
        row(Method::GET, "/api/slo", NO, [401, 403, 200, 200, 200]),
        row(
            Method::PUT,
            "/api/slo/targets",
            Json(json!({"targets": {}})),
            [401, 403, 403, 403, 200],
        ),
        row(Method::GET, "/api/status", NO, [401, 200, 200, 200, 200]),
        row(
            Method::POST,
            "/api/templates/{id}/flatten",
            Json(json!({"name":"test-flat"})),
            [401, 403, 403, 403, 404],
        ),
        row(
            Method::GET,
            "/api/templates/usage",
            NO,
            [401, 403, 200, 403, 200],
        ),
        row(Method::GET, "/api/courses", NO, [401, 200, 200, 200, 200]),
        row(
            Method::POST,
            "/api/courses",
            Json(json!({"code":"","name":"x","vm_specs":[]})),
            [401, 403, 400, 403, 400],
        ),
        row(
            Method::GET,
            "/api/courses/{id}",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::DELETE,
            "/api/courses/{id}",
            NO,
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::GET,
            "/api/courses/{id}/students",
            NO,
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::POST,
            "/api/courses/{id}/students",
            Json(json!({"usernames":[]})),
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::DELETE,
            "/api/courses/{id}/students/{user_id}",
            NO,
            [401, 403, 404, 403, 404],
        ),
        row(
            Method::GET,
            "/api/courses/{id}/collect",
            NO,
            [401, 404, 404, 404, 404],
        )
        .with_query("?path=/root/lab1"),
        row(Method::GET, "/api/vms", NO, [401, 200, 200, 200, 200]),
        row(Method::GET, "/api/vms/{id}", NO, [401, 404, 404, 404, 404]),
        // ---- area: alerts (new rows of this area go right below this line)
        row(Method::GET, "/api/alerts", NO, [401, 403, 403, 200, 200]),
        row(
            Method::GET,
            "/api/alerts/rules",
            NO,
            [401, 403, 403, 200, 200],
        ),
        row(
            Method::PUT,
            "/api/alerts/rules",
            Body::Json(json!({"rules": []})),
            [401, 403, 403, 403, 200],
        ),
        row(
            Method::POST,
            "/api/alerts/{id}/ack",
            NO,
            [401, 403, 403, 404, 404],
        ),
        row(
            Method::GET,
            "/api/inspections",
            NO,
            [401, 403, 403, 200, 200],
        ),
        row(
            Method::POST,
            "/api/inspections",
            Body::Json(json!({"full": false})),
            [401, 403, 403, 201, 201],
        ),
        row(
            Method::GET,
            "/api/inspections/{id}",
            NO,
            [401, 403, 403, 404, 404],
        ),
        row(
            Method::GET,
            "/api/vms/{id}/history",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/start",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/shutdown",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/poweroff",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/reboot",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/reset",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/migrate",
            Json(json!({"node_id":NIL})),
            [401, 403, 403, 403, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/move",
            Json(json!({"node_id":NIL})),
            [401, 403, 403, 403, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/console",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/vms/{id}/console.vv",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(Method::GET, "/ws/console", NO, [400, 400, 400, 400, 400]).with_query("?token=x"),
        row(
            Method::GET,
            "/api/vms/{id}/snapshots",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/snapshots",
            Json(json!({"name":"test-snap"})),
            [401, 404, 404, 404, 404],
        ),
        // ---- area: report (new rows of this area go right below this line)
        row(Method::GET, "/api/reports", NO, [401, 403, 200, 200, 200]),
        // A custom report without its range: 400 for the admin, nothing made.
        row(
            Method::POST,
            "/api/reports",
            Json(json!({"period":"custom"})),
            [401, 403, 403, 403, 400],
        ),
        row(
            Method::GET,
            "/api/reports/{id}",
            NO,
            [401, 403, 404, 404, 404],
        ),
        row(
            Method::PATCH,
            "/api/reports/{id}",
            Json(json!({"texts":{"plan":"x"}})),
            [401, 403, 403, 403, 404],
        ),
        row(
            Method::PUT,
            "/api/reports/{id}",
            Json(json!({"texts":{"plan":"x"}})),
            [401, 403, 403, 403, 404],
        ),
        row(
            Method::POST,
            "/api/reports/{id}/regenerate",
            NO,
            [401, 403, 403, 403, 404],
        ),
        row(
            Method::POST,
            "/api/reports/{id}/review",
            NO,
            [401, 403, 403, 403, 404],
        ),
        row(
            Method::POST,
            "/api/reports/{id}/publish",
            NO,
            [401, 403, 403, 403, 404],
        ),
        row(
            Method::GET,
            "/api/reports/{id}/pdf",
            NO,
            [401, 403, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/reports/{id}/csv",
            NO,
            [401, 403, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/vms/{id}/snapshots/{sid}",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::DELETE,
            "/api/vms/{id}/snapshots/{sid}",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/snapshots/{sid}/revert",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/vms/{id}/export",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/vms/{id}/export/manifest",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/vms/{id}/import",
            bytes(),
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/vms/{id}/disk",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(Method::GET, "/healthz", NO, [200, 200, 200, 200, 200]),
        row(Method::GET, "/metrics", NO, [200, 200, 200, 200, 200]),
        // The service desk (issue 13).
        row(Method::GET, "/api/tickets", NO, [401, 200, 200, 200, 200]),
        row(
            Method::POST,
            "/api/tickets",
            Json(json!({"kind":"incident","title":""})),
            [401, 400, 400, 400, 400],
        ),
        row(
            Method::GET,
            "/api/tickets/{id}",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/tickets/{id}/assign",
            Json(json!({"assignee_id": NIL})),
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/tickets/{id}/state",
            Json(json!({"state":"in_progress"})),
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/tickets/{id}/priority",
            Json(json!({"priority":"P1","reason":"x"})),
            [401, 403, 403, 404, 404],
        ),
        row(
            Method::POST,
            "/api/tickets/{id}/comments",
            Json(json!({"text":"x"})),
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/tickets/{id}/resolve",
            Json(json!({"resolution":"x"})),
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/tickets/{id}/confirm",
            Json(json!({"rating":5})),
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/tickets/{id}/reopen",
            Json(json!({"reason":"x"})),
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/tickets/{id}/callbacks",
            Json(json!({"outcome":"no_answer"})),
            [401, 403, 403, 404, 404],
        ),
        row(
            Method::GET,
            "/api/tickets/{id}/screenshot",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/api/desk/screenshots",
            Json(json!({"vm_id": NIL})),
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/desk/screenshots/{id}",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::DELETE,
            "/api/desk/screenshots/{id}",
            NO,
            [401, 404, 404, 404, 404],
        ),
        row(Method::GET, "/api/problems", NO, [401, 403, 403, 200, 200]),
        row(
            Method::GET,
            "/api/desk/stats",
            NO,
            [401, 403, 403, 200, 200],
        ),
        // ---- area: desk-sla (new rows of this area go right below this line)
        row(
            Method::PUT,
            "/api/kb/{id}",
            Json(json!({"title":"t","symptom":"s","fix":"f","lang":"en"})),
            [401, 403, 403, 404, 404],
        ),
        row(
            Method::DELETE,
            "/api/kb/{id}",
            NO,
            [401, 403, 403, 404, 404],
        ),
        row(
            Method::GET,
            "/api/kb/{id}/revisions",
            NO,
            [401, 403, 403, 404, 404],
        ),
        row(Method::GET, "/api/desk/sla", NO, [401, 403, 403, 200, 200]),
        // A well-formed but invalid policy: only an admin gets as far as
        // its validation.
        row(
            Method::PUT,
            "/api/desk/sla",
            Json(json!({
                "p1": {"response_minutes": 0, "resolution_minutes": 0},
                "p2": {"response_minutes": 0, "resolution_minutes": 0},
                "p3": {"response_minutes": 0, "resolution_minutes": 0},
                "p4": {"response_minutes": 0, "resolution_minutes": 0},
            })),
            [401, 403, 403, 403, 422],
        ),
        row(
            Method::GET,
            "/api/desk/calendar",
            NO,
            [401, 403, 403, 200, 200],
        ),
        row(
            Method::PUT,
            "/api/desk/calendar",
            Json(json!({"week": {}})),
            [401, 403, 403, 403, 422],
        ),
        row(
            Method::POST,
            "/api/problems",
            Json(json!({"title":""})),
            [401, 403, 403, 400, 400],
        ),
        row(
            Method::GET,
            "/api/problems/{id}",
            NO,
            [401, 403, 403, 404, 404],
        ),
        row(
            Method::POST,
            "/api/problems/{id}/tickets",
            Json(json!({"ticket_id": NIL})),
            [401, 403, 403, 404, 404],
        ),
        row(
            Method::POST,
            "/api/problems/{id}/resolve",
            Json(json!({"resolution":"x"})),
            [401, 403, 403, 404, 404],
        ),
        row(Method::GET, "/api/kb", NO, [401, 200, 200, 200, 200]),
        row(
            Method::POST,
            "/api/kb",
            Json(json!({"title":"","symptom":"s","fix":"f","lang":"en"})),
            [401, 403, 403, 400, 400],
        ),
        row(Method::GET, "/api/kb/{id}", NO, [401, 404, 404, 404, 404]),
        row(
            Method::POST,
            "/api/kb/{id}/helped",
            Json(json!({})),
            [401, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/api/desk/members",
            NO,
            [401, 403, 403, 200, 200],
        ),
        row(
            Method::POST,
            "/api/auth/logout",
            NO,
            [401, 204, 204, 204, 204],
        ),
    ]
}

#[tokio::test]
async fn role_matrix_is_enforced_on_every_route() {
    let env = TestEnv::start().await;
    env.user("test-admin", Role::Admin).await;
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-student", Role::Student).await;
    env.user("test-staff", Role::Staff).await;
    let admin = env.client("test-admin").await;
    let teacher = env.client("test-teacher").await;
    let student = env.client("test-student").await;
    let staff = env.client("test-staff").await;
    let anon = common::Client::anonymous(&env.server.url());

    // Every operation the server documents has its row, and no row names
    // one it does not document.
    let matrix = role_matrix();
    let (_, doc) = anon.get("/api/openapi.json").await;
    let documented = documented_operations(&doc);
    let rows: BTreeSet<(String, String)> = matrix
        .iter()
        .map(|r| (r.method.to_string(), r.route.to_owned()))
        .collect();
    assert_eq!(rows.len(), matrix.len(), "two rows for one operation");
    let missing: Vec<_> = documented.difference(&rows).collect();
    assert!(
        missing.is_empty(),
        "operations of openapi.json without a row in the role matrix: {missing:?}"
    );
    let unknown: Vec<_> = rows.difference(&documented).collect();
    assert!(
        unknown.is_empty(),
        "role matrix rows for operations openapi.json lacks: {unknown:?}"
    );

    // Templates import is staff-only too (checked before the body is read).
    let got = student
        .post_empty("/api/templates/import?name=x&format=raw")
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");

    const WHO: [&str; 5] = ["anonymous", "student", "teacher", "staff", "admin"];
    let mut wrong = Vec::new();
    for r in &matrix {
        let path = r.path();
        for (who, client) in [&anon, &student, &teacher, &staff, &admin]
            .iter()
            .enumerate()
        {
            let mut req = client.request(r.method.clone(), &path);
            req = match &r.body {
                Body::None => req,
                Body::Json(v) => req.json(v),
                Body::Raw(media, bytes) => req.header("content-type", *media).body(*bytes),
            };
            let res = req.send().await.unwrap();
            let status = res.status();
            let text = res.text().await.unwrap();
            if status.as_u16() != r.expected[who] {
                wrong.push(format!(
                    "{} {path} as {}: {status} (expected {}) {text}",
                    r.method, WHO[who], r.expected[who]
                ));
            }
            if status.is_client_error() {
                let body: Value = serde_json::from_str(&text).unwrap_or_default();
                assert!(
                    body["error"].is_string(),
                    "{} {path}: JSON error body expected, got {text}",
                    r.method
                );
            }
        }
    }
    // Every wrong answer at once: one is rarely alone.
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn login_sessions_logout_and_rate_limit() {
    let env = TestEnv::start().await;
    env.user("test-alice", Role::Student).await;
    let http = reqwest::Client::new();

    let res = http
        .post(env.url("/api/auth/login"))
        .json(&json!({"username":"test-alice","password":PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("pvce_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && !cookie.contains("Secure"),
        "plain http: as before, {cookie}"
    );
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["user"]["username"], "test-alice");
    assert!(body["user"].get("password_hash").is_none());
    let token = body["token"].as_str().unwrap().to_owned();

    // The cookie alone authenticates.
    let session = cookie.split(';').next().unwrap().to_owned();
    let me = http
        .get(env.url("/api/me"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    // Logout revokes the token.
    let out = http
        .post(env.url("/api/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let me = http
        .get(env.url("/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);

    // Wrong passwords: 401 bad_credentials; after five, no lock: the right
    // password still gets in, once the progressive delay (1 s) has passed.
    let anon = common::Client::anonymous(&env.server.url());
    for _ in 0..5 {
        let got = anon
            .post(
                "/api/auth/login",
                json!({"username":"test-alice","password":"wrong-one"}),
            )
            .await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "bad_credentials");
    }
    let asked = std::time::Instant::now();
    let got = anon
        .post(
            "/api/auth/login",
            json!({"username":"test-alice","password":PASSWORD}),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert!(
        asked.elapsed() >= std::time::Duration::from_millis(900),
        "the sixth attempt was delayed"
    );
    // Unknown users get the same answer as wrong passwords.
    let got = anon
        .post(
            "/api/auth/login",
            json!({"username":"test-nobody","password":"x"}),
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "bad_credentials");
}

#[tokio::test]
async fn bad_input_gets_4xx_json_errors() {
    let env = TestEnv::start().await;
    env.user("test-admin", Role::Admin).await;
    env.user("test-teacher", Role::Teacher).await;
    let admin = env.client("test-admin").await;
    let teacher = env.client("test-teacher").await;

    // Unknown fields, wrong types, malformed JSON.
    let got = admin
        .post(
            "/api/users",
            json!({"username":"test-x","password":"longenough","role":"student","admin":true}),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    let got = admin
        .post(
            "/api/users",
            json!({"username":"test-x","password":"longenough","role":"root"}),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    let raw = admin
        .http
        .post(env.url("/api/users"))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(v["error"], "bad_request");

    // Huge names, bad usernames.
    let got = admin
        .post(
            "/api/users",
            json!({"username":"a".repeat(10_000),"password":"longenough","role":"student"}),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    let got = admin
        .post(
            "/api/users",
            json!({"username":"../etc","password":"longenough","role":"student"}),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");

    // Duplicate username → 409.
    let got = admin
        .post(
            "/api/users",
            json!({"username":"test-dup","password":"longenough","role":"student"}),
        )
        .await;
    assert_eq!(got.0, StatusCode::CREATED);
    let got = admin
        .post(
            "/api/users",
            json!({"username":"test-dup","password":"longenough","role":"student"}),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "username_taken");

    // Courses: negative memory, zero vcpus, unknown template, huge name.
    let (_, templates) = teacher.get("/api/templates").await;
    let root = templates
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["parent_id"].is_null())
        .unwrap()["id"]
        .clone();
    let spec = |mem: i64, vcpus: i64, tid: serde_json::Value| json!({"code":"test-c1","name":"C","vm_specs":[{"name":"vm","template_id":tid,"vcpus":vcpus,"memory_mib":mem}]});
    for body in [
        spec(-512, 1, root.clone()),
        spec(512, 0, root.clone()),
        spec(512, 1, json!("not-a-uuid")),
        json!({"code":"x".repeat(5000),"name":"C","vm_specs":[]}),
    ] {
        let got = teacher.post("/api/courses", body).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    }
    // Well-formed, but naming a template that can't serve: 422.
    for body in [
        spec(512, 1, json!("00000000-0000-0000-0000-000000000000")),
        spec(512, 1, root.clone()), // the blank root is not bootable
    ] {
        let got = teacher.post("/api/courses", body).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "unacceptable");
    }
    // Console protocol: vnc or spice only (checked before the template).
    for graphics in [json!("rdp"), json!(""), json!(5), json!("VNC")] {
        let mut body = spec(512, 1, root.clone());
        body["vm_specs"][0]["graphics"] = graphics.clone();
        let got = teacher.post("/api/courses", body).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
        if graphics.is_string() {
            assert!(
                got.1["message"].as_str().unwrap().contains("graphics"),
                "{graphics}: {}",
                got.1
            );
        }
    }

    // Nodes: bad URI (see also `node_addresses_that_could_run_programs_are_refused`).
    let got = admin
        .post(
            "/api/nodes",
            json!({"name":"test-n","uri":"file:///etc/passwd"}),
        )
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "bad_node_uri");
    // Unknown routes and methods are JSON too.
    let got = admin.get("/api/nope").await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");
    let got = admin.send(Method::PUT, "/api/users", None).await;
    assert_error(&got, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    // Import with a bad format name or missing name.
    let got = teacher
        .post_empty("/api/templates/import?name=test-t&format=exe")
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    let got = teacher.post_empty("/api/templates/import?format=raw").await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
}

/// Runs qemu-img to make a test image.
fn qemu_img(args: &[&str]) {
    let out = std::process::Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn unsafe_images_are_refused_and_leave_nothing_on_disk() {
    let env = TestEnv::start().await;
    env.user("test-teacher", Role::Teacher).await;
    let teacher = env.client("test-teacher").await;
    let work = tempfile::tempdir().unwrap();
    let p = |n: &str| work.path().join(n).to_string_lossy().into_owned();

    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-u",
        "-b",
        "/etc/passwd",
        "-F",
        "raw",
        &p("backing.qcow2"),
        "64M",
    ]);
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", p("data.raw")),
        &p("datafile.qcow2"),
        "64M",
    ]);
    qemu_img(&["create", "-f", "qcow2", &p("plain.qcow2"), "64M"]);
    std::fs::write(
        p("extent.vmdk"),
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"/etc/passwd\" 0\n",
    )
    .unwrap();

    let cases = [
        (
            "backing.qcow2",
            "qcow2",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsafe_image",
        ),
        (
            "datafile.qcow2",
            "qcow2",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsafe_image",
        ),
        (
            "extent.vmdk",
            "vmdk",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsafe_image",
        ),
        // A qcow2 declared raw would let a later probe read its backing file: refused.
        (
            "plain.qcow2",
            "raw",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsafe_image",
        ),
        (
            "backing.qcow2",
            "raw",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsafe_image",
        ),
    ];
    for (file, format, status, code) in cases {
        let got = teacher
            .upload(
                &format!("/api/templates/import?name=test-{file}&format={format}&os=linux"),
                &work.path().join(file),
            )
            .await;
        assert_error(&got, status, code);
    }
    // Nothing was left behind: no layer, no upload, no row.
    let leftovers: Vec<_> = ["uploads", "templates"]
        .iter()
        .flat_map(|d| std::fs::read_dir(env.data_dir().join(d)).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the blank root should exist: {leftovers:?}"
    );
    let (_, list) = teacher.get("/api/templates").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Over the size limit → 413, nothing left.
    drop(teacher);
    let env2 = TestEnv::start_with(|c| c.max_upload_bytes = 1024 * 1024).await;
    env2.user("test-teacher", Role::Teacher).await;
    let teacher = env2.client("test-teacher").await;
    let big = work.path().join("big.raw");
    std::fs::write(&big, vec![0u8; 2 * 1024 * 1024]).unwrap();
    let got = teacher
        .upload(
            "/api/templates/import?name=test-big&format=raw&os=linux",
            &big,
        )
        .await;
    assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    assert_eq!(
        std::fs::read_dir(env2.data_dir().join("uploads"))
            .unwrap()
            .count(),
        0
    );

    // A good raw image is accepted and becomes a qcow2 layer.
    std::fs::write(work.path().join("ok.raw"), vec![0u8; 512 * 1024]).unwrap();
    let got = teacher
        .upload(
            "/api/templates/import?name=test-ok&format=raw&os=linux&software=gcc,make",
            &work.path().join("ok.raw"),
        )
        .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    assert_eq!(got.1["state"], "ready");
    assert_eq!(got.1["depth"], 1);
    assert_eq!(got.1["software"], json!(["gcc", "make"]));
    // Same name again → 409.
    let got = teacher
        .upload(
            "/api/templates/import?name=test-ok&format=raw&os=linux",
            &work.path().join("ok.raw"),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "name_taken");
}

#[tokio::test]
async fn openapi_lists_every_route_and_health_and_metrics_answer() {
    let env = TestEnv::start().await;
    let anon = common::Client::anonymous(&env.server.url());
    let (s, health) = anon.get("/healthz").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    let (s, doc) = anon.get("/api/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/auth/login",
        "/api/auth/logout",
        "/api/me",
        "/api/users",
        "/api/users/import",
        "/api/nodes",
        "/api/nodes/{id}",
        "/api/nodes/{id}/maintenance",
        "/api/nodes/{id}/fence",
        "/api/vms/{id}/migrate",
        "/api/templates",
        "/api/templates/{id}",
        "/api/templates/import",
        "/api/courses",
        "/api/courses/{id}",
        "/api/courses/{id}/students",
        "/api/courses/{id}/students/{user_id}",
        "/api/vms",
        "/api/vms/{id}",
        "/api/vms/{id}/start",
        "/api/vms/{id}/shutdown",
        "/api/vms/{id}/poweroff",
        "/api/vms/{id}/reboot",
        "/api/vms/{id}/reset",
        "/api/vms/{id}/console",
        "/api/vms/{id}/console.vv",
        "/ws/console",
        "/api/nodes/{id}/metrics",
        "/api/nodes/metrics",
        "/api/users/{id}",
        "/api/vms/{id}/move",
        "/api/vms/{id}/history",
        "/api/events",
        "/api/cluster",
    ] {
        assert!(paths.contains_key(p), "openapi.json lacks {p}");
    }
    let text = common::metrics_text(&env).await;
    assert!(text.contains("pvce_vms{state=\"running\"}"), "{text}");
    assert!(text.contains("pvce_node_up{node=\"local\"} 1"), "{text}");
}

#[tokio::test]
async fn csv_import_creates_skips_and_reports_lines() {
    let env = TestEnv::start().await;
    env.user("test-admin", Role::Admin).await;
    env.user("test-existing", Role::Student).await;
    let admin = env.client("test-admin").await;
    let csv = "username,display_name,role,password\n\
               test-s1,Student One,student,password-one\n\
               test-existing,Old,student,password-two\n\
               test-s2,Bad Role,wizard,password-three\n\
               test-s3,Short,student,short\n\
               test-t1,Teacher,teacher,password-four\n";
    let (status, v) = admin.post_body("/api/users/import", "text/csv", csv).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["created"], json!(["test-s1", "test-t1"]));
    assert_eq!(v["skipped"], json!(["test-existing"]));
    let lines: Vec<u64> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![4, 5]);
    let s1 = env.client_with_password("test-s1", "password-one").await;
    let (_, me) = s1.get("/api/me").await;
    assert_eq!(me["user"]["display_name"], "Student One");
}

#[tokio::test]
async fn admin_changes_roles_disables_and_resets_passwords() {
    let env = TestEnv::start().await;
    let me = env.user("test-admin", Role::Admin).await;
    let t = env.user("test-teach", Role::Teacher).await;
    let s = env.user("test-stud", Role::Student).await;
    let admin = env.client("test-admin").await;
    let student = env.client("test-stud").await;
    let sid = s["id"].as_str().unwrap();
    let tid = t["id"].as_str().unwrap();

    // Role change and display name.
    let (status, u) = admin
        .send(
            Method::PATCH,
            &format!("/api/users/{sid}"),
            Some(json!({"role":"teacher","display_name":"  Li Lei "})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(u["role"], "teacher");
    assert_eq!(u["display_name"], "Li Lei");

    // Disabling ends the running session and refuses new logins.
    let (status, u) = admin
        .send(
            Method::PATCH,
            &format!("/api/users/{sid}"),
            Some(json!({"disabled":true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(u["disabled"], true);
    assert_error(
        &student.get("/api/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    let res = reqwest::Client::new()
        .post(env.url("/api/auth/login"))
        .json(&json!({"username":"test-stud","password":PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Re-enabled with a new password: only the new one works.
    let (status, _) = admin
        .send(
            Method::PATCH,
            &format!("/api/users/{sid}"),
            Some(json!({"disabled":false,"password":"new-password-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    env.client_with_password("test-stud", "new-password-1")
        .await;

    // An admin can't lock themself out; a teacher with courses stays a teacher.
    let my = format!("/api/users/{}", me["id"].as_str().unwrap());
    for body in [
        json!({"disabled":true}),
        json!({"role":"student"}),
        json!({"must_change_password":true}),
    ] {
        let got = admin.send(Method::PATCH, &my, Some(body)).await;
        assert_error(&got, StatusCode::CONFLICT, "own_account");
    }
    // A course owned by the teacher (straight in the database: a bootable
    // template is beside the point here).
    sqlx::query("INSERT INTO courses (id, code, name, teacher_id, created_at) VALUES ($1, 'test-c1', 'C1', $2, '2026-01-01T00:00:00Z')")
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(tid)
        .execute(&env.server.state.pool)
        .await
        .unwrap();
    let got = admin
        .send(
            Method::PATCH,
            &format!("/api/users/{tid}"),
            Some(json!({"role":"student"})),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "in_use");

    // Bad input at the boundary.
    for body in [
        json!({}),
        json!({"role":"root"}),
        json!({"password":"short"}),
        json!({"display_name":"a\u{7}b"}),
        json!({"display_name":"   "}),
        json!({"username":"rename"}),
    ] {
        let got = admin
            .send(
                Method::PATCH,
                &format!("/api/users/{tid}"),
                Some(body.clone()),
            )
            .await;
        assert!(
            got.0 == StatusCode::BAD_REQUEST || got.0 == StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {got:?}"
        );
        assert!(got.1["error"].is_string(), "{body}: {got:?}");
    }
}

#[tokio::test]
async fn the_event_log_records_node_changes_with_who_asked() {
    let env = TestEnv::start_with(|c| c.allow_test_nodes = true).await;
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    // The libvirt test driver answers like a remote host would.
    let (status, node) = admin
        .post(
            "/api/nodes",
            json!({"name": "test-ev", "uri": "test:///default", "console_address": "127.0.0.1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{node}");
    let id = node["id"].as_str().unwrap().to_owned();
    let maint = format!("/api/nodes/{id}/maintenance");
    for on in [true, true, false] {
        let (status, body) = admin.post(&maint, json!({"enabled": on})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = admin.delete(&format!("/api/nodes/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, events) = admin.get(&format!("/api/events?node_id={id}")).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let kinds = common::strings(&events, "kind");
    let events = events.as_array().unwrap();
    // Newest first; switching maintenance on twice is one change.
    assert_eq!(
        kinds,
        [
            "node_removed",
            "maintenance_off",
            "maintenance_on",
            "node_up",
            "node_added"
        ],
        "{events:?}"
    );
    for e in events {
        assert_eq!(e["node_name"], "test-ev", "{e}");
        assert!(e["at"].as_str().unwrap().ends_with('Z'), "{e}");
        let by_admin = e["kind"] != "node_up";
        assert_eq!(
            e["actor"],
            if by_admin {
                json!("test-admin")
            } else {
                Value::Null
            },
            "{e}"
        );
    }
    assert_eq!(events[4]["message"], "test:///default");

    // The whole log also has the server's own node, added by nobody.
    let (_, all) = admin.get("/api/events?limit=500").await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "node_added"
                && e["node_name"] == "local"
                && e["actor"].is_null()),
        "{all}"
    );
    // The settings placement runs with, for the overview.
    let (status, mut cluster) = admin.get("/api/cluster").await;
    assert_eq!(status, StatusCode::OK, "{cluster}");
    // This deployment's id and the template store pool named after it
    // (src/installation).
    let id = cluster["installation_id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{cluster}");
    assert!(cluster["template_pool"].is_string(), "{cluster}");
    let map = cluster.as_object_mut().unwrap();
    map.remove("installation_id");
    map.remove("template_pool");
    assert_eq!(
        cluster,
        json!({"placement_policy": "spread", "host_reserve_mib": 256, "layer_storage": "shared",
               "disk_cache": "writeback", "sample_interval_seconds": 5,
               // What POST /api/nodes accepts here: test nodes only in test mode.
               "node_transports": ["local", "xen", "tls", "ssh", "test"]})
    );
    let (_, two) = admin.get("/api/events?limit=2").await;
    assert_eq!(two.as_array().unwrap().len(), 2);
    assert_eq!(two[0]["kind"], "node_removed");
    for bad in ["limit=0", "limit=501", "limit=x", "node_id=nope", "since=1"] {
        assert_error(
            &admin.get(&format!("/api/events?{bad}")).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }
}

/// Issue 22, item 1: a node URI could make the server's root run any
/// program (`?command=`), open any socket or use libvirt's fake driver.
/// Every such address is refused with 422 `bad_node_uri`, naming what is
/// wrong, and nothing is registered.
#[tokio::test]
async fn node_addresses_that_could_run_programs_are_refused() {
    let env = TestEnv::start().await;
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    let (_, before) = admin.get("/api/nodes").await;
    let evil = [
        (
            json!({"uri": "qemu+ssh://x@127.0.0.1/system?command=/tmp/evil.sh"}),
            "command",
        ),
        (
            json!({"uri": "qemu:///system?socket=/etc/passwd"}),
            "socket",
        ),
        (
            json!({"uri": "qemu+ssh://h/system?netcat=/tmp/nc"}),
            "netcat",
        ),
        (
            json!({"uri": "qemu+ssh://root@h/system?keyfile=/tmp/k"}),
            "keyfile",
        ),
        (json!({"uri": "qemu+ssh://h/system?proxy=native"}), "proxy"),
        (
            json!({"uri": "qemu+ssh://h/system?no_verify=1&known_hosts=/dev/null"}),
            "no_verify",
        ),
        (json!({"uri": "test:///default"}), "--allow-test-nodes"),
        (
            json!({"uri": "qemu+tcp://127.0.0.1/system"}),
            "--allow-tcp-nodes",
        ),
        (json!({"uri": "qemu+ssh://a;reboot@h/system"}), "user"),
        (json!({"uri": "qemu+ssh://h/session"}), "path"),
        (json!({"uri": "qemu+unix:///system"}), "scheme"),
        // The structured form: a host or user smuggling URI parts.
        (
            json!({"transport": "tls", "host": "h/system?socket=/etc/passwd"}),
            "host",
        ),
        (json!({"transport": "ssh", "host": "h?command=/x"}), "host"),
        (
            json!({"transport": "ssh", "host": "h", "user": "root;id"}),
            "user",
        ),
        (
            json!({"transport": "tcp", "host": "127.0.0.1"}),
            "--allow-tcp-nodes",
        ),
        (json!({"transport": "tls", "host": "h", "port": 0}), "port"),
        (
            json!({"transport": "tls", "host": "h", "port": 65536}),
            "port",
        ),
        (json!({"transport": "unix"}), "transport"),
        // Both forms, or neither.
        (
            json!({"uri": "qemu+tls://h/system", "transport": "tls", "host": "h"}),
            "not both",
        ),
        (json!({}), "needs uri"),
    ];
    for (i, (mut body, says)) in evil.into_iter().enumerate() {
        body["name"] = json!(format!("test-evil-{i}"));
        let got = admin.post("/api/nodes", body.clone()).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "bad_node_uri");
        let msg = got.1["message"].as_str().unwrap();
        assert!(msg.contains(says), "{body}: {msg}");
    }
    let (_, after) = admin.get("/api/nodes").await;
    assert_eq!(after, before, "nothing was registered");
    let (_, events) = admin.get("/api/events?limit=500").await;
    assert!(
        !events.as_array().unwrap().iter().any(|e| e["node_name"]
            .as_str()
            .unwrap_or("")
            .starts_with("test-evil")),
        "{events}"
    );

    // The structured form builds the canonical URI (this one never answers).
    let (status, node) = admin
        .post(
            "/api/nodes",
            json!({"name": "test-tls", "transport": "tls", "host": "127.0.0.1", "port": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{node}");
    assert_eq!(node["uri"], "qemu+tls://127.0.0.1:1/system");
    assert_eq!(node["state"], "down");
    assert_eq!(node["capabilities"], Value::Null, "never reached");
    // The same address as a URI is the same node.
    let got = admin
        .post(
            "/api/nodes",
            json!({"name": "test-tls2", "uri": "qemu+tls://127.0.0.1:1/system"}),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "node_exists");
}

/// A URI stored before addresses were checked (or a `tcp` node on a server
/// no longer started to allow them) is never opened: the node stays down
/// and the event log says why. With the URI handed to libvirt, the ssh
/// transport would run `command=` at once.
#[tokio::test]
async fn a_stored_unsafe_uri_is_never_opened() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::start().await;
    env.user("test-admin", Role::Admin).await;
    let admin = env.client("test-admin").await;
    let marker = env.dir.path().join("ran");
    let script = env.dir.path().join("evil.sh");
    std::fs::write(&script, format!("#!/bin/sh\nid > {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let nodes = &env.server.state.nodes;
    for (name, uri) in [
        (
            "test-stored-cmd",
            format!("qemu+ssh://x@127.0.0.1/system?command={}", script.display()),
        ),
        ("test-stored-tcp", "qemu+tcp://127.0.0.1:1/system".into()),
    ] {
        let id = uuid::Uuid::new_v4();
        sqlx::query(
            "INSERT INTO nodes (id, name, uri, console_address, state, created_at) VALUES ($1, $2, $3, '127.0.0.1', 'up', '2024-01-01T00:00:00Z')",
        )
        .bind(id.to_string())
        .bind(name)
        .bind(&uri)
        .execute(&env.server.state.pool)
        .await
        .unwrap();
        assert!(nodes.probe(id).await.is_err(), "{uri}");
        let (_, node) = admin.get(&format!("/api/nodes/{id}")).await;
        assert_eq!(node["state"], "down", "{node}");
        let (_, events) = admin.get(&format!("/api/events?node_id={id}")).await;
        let down = &events[0];
        assert_eq!(down["kind"], "node_down", "{events}");
        let msg = down["message"].as_str().unwrap();
        assert!(msg.starts_with("refusing to connect"), "{msg}");
    }
    assert!(!marker.exists(), "the stored command ran");
}

/// Issue 22, item 13: a VM whose graphics no node offers is refused before
/// any node is asked, with 409 `no_capable_node` naming the node and what
/// it lacks (libvirt's test driver reports no graphics at all), instead of
/// libvirt's refusal surfacing as 502 `hypervisor_error`.
#[tokio::test]
async fn a_vm_no_node_can_run_is_refused_naming_what_is_missing() {
    let env = TestEnv::start_with(|c| c.allow_test_nodes = true).await;
    env.user("test-admin", Role::Admin).await;
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-student", Role::Student).await;
    let admin = env.client("test-admin").await;
    let teacher = env.client("test-teacher").await;
    let student = env.client("test-student").await;
    let (status, node) = admin
        .post(
            "/api/nodes",
            json!({"name": "test-caps", "uri": "test:///default"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{node}");
    assert_eq!(node["state"], "up", "{node}");
    let caps = &node["capabilities"];
    assert_eq!(caps["accelerators"], json!(["test"]), "{node}");
    assert_eq!(caps["graphics"], json!([]), "{node}");
    // Only the test node may take VMs.
    let (_, nodes) = admin.get("/api/nodes").await;
    for n in nodes.as_array().unwrap() {
        if n["name"] == "local" {
            let (status, body) = admin
                .post(
                    &format!("/api/nodes/{}/maintenance", n["id"].as_str().unwrap()),
                    json!({"enabled": true}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert!(
                n["capabilities"]["graphics"]
                    .as_array()
                    .is_some_and(|g| g.contains(&json!("vnc"))),
                "{n}"
            );
        }
    }
    let image = tokio::task::spawn_blocking(common::tiny_image)
        .await
        .unwrap();
    let (status, tpl) = teacher
        .upload(
            "/api/templates/import?name=test-caps-tiny&format=qcow2&os=tiny-linux",
            &image,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tpl}");
    let (status, course) = teacher
        .post(
            "/api/courses",
            json!({"code": "test-caps", "name": "Caps", "vm_specs": [
                {"name": "desk", "template_id": tpl["id"], "vcpus": 1, "memory_mib": 64, "graphics": "spice"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{course}");
    let cid = course["id"].as_str().unwrap();
    let (status, body) = teacher
        .post(
            &format!("/api/courses/{cid}/students"),
            json!({"usernames": ["test-student"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, vms) = student.get("/api/vms").await;
    let vm_id = vms[0]["id"].as_str().unwrap().to_owned();
    env.track_vm(&vm_id);
    let got = student.post_empty(&format!("/api/vms/{vm_id}/start")).await;
    assert_error(&got, StatusCode::CONFLICT, "no_capable_node");
    assert_eq!(
        got.1["message"],
        "no node can run this VM: node test-caps has no SPICE graphics"
    );
    let (_, vm) = student.get(&format!("/api/vms/{vm_id}")).await;
    assert_eq!(vm["state"], "stopped", "{vm}");
}

/// Asserts a 400 `bad_request` whose message names `field`.
fn assert_names_field(got: &(StatusCode, Value), field: &str, what: &str) {
    assert_error(got, StatusCode::BAD_REQUEST, "bad_request");
    let message = got.1["message"].as_str().unwrap();
    assert!(message.contains(field), "{what}: {message}");
}

#[tokio::test]
async fn names_that_could_become_paths_or_garbage_are_refused_at_the_boundary() {
    let env = TestEnv::start().await;
    env.user("test-admin", Role::Admin).await;
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-student", Role::Student).await;
    let admin = env.client("test-admin").await;
    let teacher = env.client("test-teacher").await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("plain.qcow2");
    qemu_img(&["create", "-f", "qcow2", image.to_str().unwrap(), "64M"]);
    let import = |name: &str| format!("/api/templates/import?name={name}&format=qcow2&os=linux");

    // Template names in the query string: traversal, separators, and bytes
    // that are not UTF-8 (refused, not stored as U+FFFD).
    for bad in [
        "..",
        ".",
        "a%2Fb",
        "%2Fetc%2Fpasswd",
        "a%5Cb",
        "%FF%FE",
        "%EF%BF%BD",
        "x%0Ay",
    ] {
        // (No body: a refused query string is answered before the upload is read.)
        let got = teacher.post_empty(&import(bad)).await;
        assert_names_field(&got, "name", bad);
    }
    let got = admin.get("/api/events?limit=%FF").await;
    assert_names_field(&got, "limit", "limit");
    // A CJK name with an inner space is a fine name.
    let (s, tpl) = teacher
        .upload(&import("%E5%AE%9E%E9%AA%8C%20%E4%B8%80"), &image)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{tpl}");
    assert_eq!(tpl["name"], "实验 一");
    let tid = tpl["id"].as_str().unwrap().to_owned();
    let (_, templates) = teacher.get("/api/templates").await;
    assert!(
        common::strings(&templates, "name")
            .iter()
            .all(|n| !n.contains('\u{fffd}') && *n != ".."),
        "{templates}"
    );
    let got = teacher
        .post(
            &format!("/api/templates/{tid}/derive"),
            json!({"name": "../x", "software": ["gcc"]}),
        )
        .await;
    assert_names_field(&got, "name", "derive");

    // Courses: code, name and VM-spec names.
    let course = |code: &str, name: &str, spec: &str| {
        json!({"code": code, "name": name, "vm_specs": [
            {"name": spec, "template_id": tid, "vcpus": 1, "memory_mib": 128}]})
    };
    for (body, field) in [
        (course("..", "C", "vm"), "code"),
        (course("test/c", "C", "vm"), "code"),
        (course("/abs", "C", "vm"), "code"),
        (course("test-c\u{fffd}", "C", "vm"), "code"),
        (course("test-c", "C\u{7}", "vm"), "name"),
        (course("test-c", "\u{202e}C", "vm"), "name"),
        (course("test-c", "C", ".."), "vm_specs[0].name"),
        (course("test-c", "C", "a/b"), "vm_specs[0].name"),
    ] {
        let got = teacher.post("/api/courses", body.clone()).await;
        assert_names_field(&got, field, &body.to_string());
    }
    let (s, c) = teacher
        .post(
            "/api/courses",
            course("test-计算机-101", "C/C++ 程序设计", "linux"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let cid = c["id"].as_str().unwrap();
    let (s, e) = teacher
        .post(
            &format!("/api/courses/{cid}/students"),
            json!({"usernames": ["test-student"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (_, vms) = env.client("test-student").await.get("/api/vms").await;
    let vm = vms[0]["id"].as_str().unwrap();

    // Snapshot names.
    for bad in ["..", "a/b", "/", "x\u{0}"] {
        let got = teacher
            .post(&format!("/api/vms/{vm}/snapshots"), json!({ "name": bad }))
            .await;
        assert_names_field(&got, "name", bad);
    }

    // Users: usernames and display names, by API and by CSV.
    for (body, field) in [
        (
            json!({"username": "..", "password": "longenough", "role": "student"}),
            "username",
        ),
        (
            json!({"username": ".hidden", "password": "longenough", "role": "student"}),
            "username",
        ),
        (
            json!({"username": "-rf", "password": "longenough", "role": "student"}),
            "username",
        ),
        (
            json!({"username": "test-u", "password": "longenough", "role": "student",
                   "display_name": "Bell\u{7}"}),
            "display_name",
        ),
    ] {
        let got = admin.post("/api/users", body.clone()).await;
        assert_names_field(&got, field, &body.to_string());
    }
    let (s, u) = admin
        .post(
            "/api/users",
            json!({"username": "test-wang", "password": "longenough", "role": "student",
                   "display_name": "王 小明"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let uid = u["id"].as_str().unwrap();
    let got = admin
        .send(
            Method::PATCH,
            &format!("/api/users/{uid}"),
            Some(json!({"display_name": "\u{202e}nimda"})),
        )
        .await;
    assert_names_field(&got, "display_name", "patch");
    let (_, v) = admin
        .post_body(
            "/api/users/import",
            "text/csv",
            "username,display_name,role,password\n..,Dots,student,password-one\n",
        )
        .await;
    assert_eq!(v["created"], json!([]), "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("username"),
        "{v}"
    );

    // Node names.
    let got = admin
        .post("/api/nodes", json!({"name": "..", "uri": "qemu:///system"}))
        .await;
    assert_names_field(&got, "name", "node");
}

/// The entries of the data dir's `uploads/`.
fn uploads(env: &TestEnv) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(env.data_dir().join("uploads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// Waits until an upload in progress has written at least `bytes` to uploads/.
async fn wait_partial_upload(env: &TestEnv, bytes: u64) {
    common::wait_for(
        "the partial upload on disk",
        Duration::from_secs(30),
        || async {
            uploads(env)
                .iter()
                .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= bytes))
                .then_some(())
        },
    )
    .await;
}

async fn wait_uploads_empty(env: &TestEnv, what: &str) {
    common::wait_for(what, Duration::from_secs(30), || async {
        uploads(env).is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn interrupted_uploads_leave_nothing_and_start_up_removes_leftovers() {
    // What a killed server left: a partial upload and a collection job.
    let env = TestEnv::start_with(|config| {
        let up = config.data_dir.join("uploads");
        std::fs::create_dir_all(up.join("x.collect")).unwrap();
        std::fs::write(up.join("x.upload"), vec![7u8; 3 << 20]).unwrap();
        std::fs::write(up.join("x.collect").join("disk.raw"), b"raw").unwrap();
    })
    .await;
    assert_eq!(uploads(&env), Vec::<std::path::PathBuf>::new());
    env.user("test-teacher", Role::Teacher).await;
    let teacher = env.client("test-teacher").await;
    let path = "/api/templates/import?name=test-cut&format=raw&os=linux";

    // A body stream that fails after some MiB (the client's side breaks).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let request = teacher
        .http
        .post(env.url(path))
        .bearer_auth(&teacher.token)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let feeder = async {
        for _ in 0..4 {
            tx.send(Ok(vec![0u8; 1 << 20])).await.unwrap();
        }
        wait_partial_upload(&env, 1 << 20).await;
        tx.send(Err(std::io::Error::other("client gave up")))
            .await
            .unwrap();
    };
    let (sent, ()) = tokio::join!(request, feeder);
    if let Ok(res) = sent {
        // The server may have answered before the connection went.
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    wait_uploads_empty(&env, "uploads/ to empty after a failed body").await;

    // A connection dropped mid-body (the handler's future is dropped).
    use tokio::io::AsyncWriteExt;
    let mut sock = tokio::net::TcpStream::connect(env.server.addr)
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        teacher.token,
        100u64 << 20
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..4 {
        sock.write_all(&vec![0u8; 1 << 20]).await.unwrap();
    }
    wait_partial_upload(&env, 1 << 20).await;
    drop(sock);
    wait_uploads_empty(&env, "uploads/ to empty after a dropped connection").await;
    let (_, templates) = teacher.get("/api/templates").await;
    assert!(!common::strings(&templates, "name").contains(&"test-cut"));
}

/// An admin resets a forgotten password and requires a change (issue 21):
/// the old sessions end, the reset password signs in but opens nothing but
/// /api/me and the change; after the change everything works again. Users
/// search and paging.
#[tokio::test]
async fn a_reset_password_must_be_changed_and_users_page_and_search() {
    let env = TestEnv::start().await;
    env.user("test-admin", Role::Admin).await;
    let s = env.user("test-stud", Role::Student).await;
    for n in ["test-pg1", "test-pg2", "test-pg3"] {
        env.user(n, Role::Student).await;
    }
    let admin = env.client("test-admin").await;
    let old = env.client("test-stud").await;
    let sid = s["id"].as_str().unwrap();
    let (status, u) = admin
        .send(
            Method::PATCH,
            &format!("/api/users/{sid}"),
            Some(json!({"password":"reset-pass-1","must_change_password":true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(u["must_change_password"], true, "{u}");
    assert_error(
        &old.get("/api/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    let stud = env.client_with_password("test-stud", "reset-pass-1").await;
    let (status, me) = stud.get("/api/me").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["must_change_password"], true, "{me}");
    assert_error(
        &stud.get("/api/vms").await,
        StatusCode::FORBIDDEN,
        "password_change_required",
    );
    // Wrong current password, the same password again, a short one.
    for (body, status, code) in [
        (
            json!({"current_password":"wrong-pass","new_password":"mine-now-123"}),
            StatusCode::FORBIDDEN,
            "wrong_password",
        ),
        (
            json!({"current_password":"reset-pass-1","new_password":"reset-pass-1"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"current_password":"reset-pass-1","new_password":"short"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        assert_error(&stud.post("/api/me/password", body).await, status, code);
    }
    let (status, me) = stud
        .post(
            "/api/me/password",
            json!({"current_password":"reset-pass-1","new_password":"mine-now-123"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert!(me["user"].get("must_change_password").is_none(), "{me}");
    let (status, _) = stud.get("/api/vms").await;
    assert_eq!(status, StatusCode::OK);
    env.client_with_password("test-stud", "mine-now-123").await;

    // Search (username or display name, case-insensitive, % literal) and pages.
    let names = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (_, page) = admin.get("/api/users?q=TEST-PG&limit=2").await;
    assert_eq!(names(&page), ["test-pg1", "test-pg2"]);
    let (_, page) = admin.get("/api/users?q=test-pg&limit=2&offset=2").await;
    assert_eq!(names(&page), ["test-pg3"]);
    let (_, page) = admin.get("/api/users?q=%25").await;
    assert_eq!(names(&page), Vec::<String>::new());
    for bad in [
        "/api/users?limit=0",
        "/api/users?limit=501",
        "/api/users?offset=-1",
    ] {
        assert_error(
            &admin.get(bad).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }
}
