//! Campus sign-in against a real LDAP directory: Debian's `slapd`, started
//! by the test in a temporary directory (a generated slapd.conf, a test tree
//! loaded with slapadd, a CA and server certificate made with openssl), on
//! loopback ports, over LDAPS and StartTLS. pvce speaks to it only over TLS;
//! the test itself changes the directory over plain LDAP as its root.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, TestEnv, process::free_port};

pub const SUFFIX: &str = "dc=pvce,dc=test";
const ROOT_DN: &str = "cn=admin,dc=pvce,dc=test";
const ROOT_PASSWORD: &str = "root-secret-Qx7";
/// The service account pvce searches with (its password is in a file).
const SEARCH_DN: &str = "uid=pvce-search,ou=services,dc=pvce,dc=test";
pub const SEARCH_PASSWORD: &str = "search-secret-Zk4";

/// A person of the test tree: (uid, cn, employeeType, password).
pub const PEOPLE: &[(&str, &str, &str, &str)] = &[
    ("test-lin", "Lin Wei", "student", "lin-password-1"),
    ("test-prof", "Zhou Min", "faculty", "prof-password-1"),
    ("test-root", "Root Admin", "staff", "root-password-1"),
    ("test-alum", "Old Grad", "alum", "alum-password-1"),
];

/// The directory server; killed when dropped.
pub struct Slapd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub ldap_port: u16,
    pub ldaps_port: u16,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(cmd: &mut Command) {
    crate::common::tool::run_tool(cmd);
}

/// A CA and a certificate for 127.0.0.1 it signed, in `dir` as
/// `{name}-ca.pem`, `{name}-server.pem`, `{name}-server.key`.
fn make_certs(dir: &Path, name: &str) {
    let script = format!(
        r#"set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout {n}-ca.key -out {n}-ca.pem -days 2 -subj /CN=pvce-test-{n}-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
openssl req -newkey rsa:2048 -nodes -keyout {n}-server.key -out {n}-server.csr -subj /CN=127.0.0.1
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n' > {n}-ext.cnf
openssl x509 -req -in {n}-server.csr -CA {n}-ca.pem -CAkey {n}-ca.key -CAcreateserial -out {n}-server.pem -days 2 -extfile {n}-ext.cnf
"#,
        n = name
    );
    run(Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .stdout(Stdio::null()));
}

fn tree() -> String {
    let mut ldif = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: pvce\no: pvce test\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SEARCH_DN}\nobjectClass: account\nobjectClass: simpleSecurityObject\nuid: pvce-search\nuserPassword: {SEARCH_PASSWORD}\n\n\
         dn: cn=lab-admins,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: lab-admins\nmember: uid=test-root,ou=people,{SUFFIX}\n\n\
         dn: cn=cs101,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: cs101\nmember: {SEARCH_DN}\nmember: uid=test-lin,ou=people,{SUFFIX}\n\n"
    );
    for (uid, cn, kind, pw) in PEOPLE {
        let sn = cn.split(' ').next().unwrap_or(cn);
        ldif.push_str(&format!(
            "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: {sn}\nemployeeType: {kind}\nuserPassword: {pw}\n\n"
        ));
    }
    ldif
}

impl Slapd {
    pub async fn start() -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_certs(d, "good");
        // Another CA, which did not sign the server's certificate.
        make_certs(d, "other");
        std::fs::create_dir(d.join("data")).unwrap();
        let conf = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
TLSCACertificateFile {d}/good-ca.pem
TLSCertificateFile {d}/good-server.pem
TLSCertificateKeyFile {d}/good-server.key
database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {d}/data
access to attrs=userPassword by anonymous auth by * none
access to * by anonymous auth by * read
"#,
            d = d.display()
        );
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        std::fs::write(d.join("tree.ldif"), tree()).unwrap();
        run(Command::new("slapadd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("tree.ldif")));
        let ldap_port = free_port();
        let ldaps_port = free_port();
        let mut s = Slapd {
            child: None,
            dir,
            ldap_port,
            ldaps_port,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        // `-d 0`: in the foreground (a child the test can kill), quiet.
        let child = Command::new("slapd")
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
                self.ldap_port, self.ldaps_port
            ))
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until the directory answers a bind as its root.
    pub async fn ready(&self) {
        common::wait_for("slapd to answer", Duration::from_secs(20), || async {
            let mut ldap = self.root().await.ok()?;
            let _ = ldap.unbind().await;
            Some(())
        })
        .await;
    }

    /// The directory goes away (the "LDAP down" case).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The test's own connection, as the directory's root, over plain LDAP
    /// on loopback (only pvce is held to TLS).
    async fn root(&self) -> Result<ldap3::Ldap, ldap3::LdapError> {
        let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(
            ldap3::LdapConnSettings::new().set_conn_timeout(Duration::from_secs(2)),
            &format!("ldap://127.0.0.1:{}", self.ldap_port),
        )
        .await?;
        ldap3::drive!(conn);
        ldap.simple_bind(ROOT_DN, ROOT_PASSWORD).await?.success()?;
        Ok(ldap)
    }

    /// Replaces an attribute of a person.
    pub async fn set(&self, uid: &str, attribute: &str, values: &[&str]) {
        let mut ldap = self.root().await.unwrap();
        let values: HashSet<&str> = values.iter().copied().collect();
        ldap.modify(
            &format!("uid={uid},ou=people,{SUFFIX}"),
            vec![ldap3::Mod::Replace(attribute, values)],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        let _ = ldap.unbind().await;
    }

    /// Adds (`true`) or removes a member of a group.
    pub async fn membership(&self, group: &str, uid: &str, member: bool) {
        let mut ldap = self.root().await.unwrap();
        let dn = format!("uid={uid},ou=people,{SUFFIX}");
        let values: HashSet<&str> = [dn.as_str()].into_iter().collect();
        let m = if member {
            ldap3::Mod::Add("member", values)
        } else {
            ldap3::Mod::Delete("member", values)
        };
        ldap.modify(&format!("cn={group},ou=groups,{SUFFIX}"), vec![m])
            .await
            .unwrap()
            .success()
            .unwrap();
        let _ = ldap.unbind().await;
    }

    /// Removes a person from the directory.
    pub async fn remove(&self, uid: &str) {
        let mut ldap = self.root().await.unwrap();
        ldap.delete(&format!("uid={uid},ou=people,{SUFFIX}"))
            .await
            .unwrap()
            .success()
            .unwrap();
        let _ = ldap.unbind().await;
    }

    /// The settings file of a server signing in through this directory:
    /// provider `ldap` over LDAPS, `ldap-starttls` over StartTLS (both
    /// trusting the directory's CA) and `ldap-badca` trusting another CA.
    pub fn auth_file(&self, dir: &Path) -> PathBuf {
        let d = self.dir.path();
        std::fs::write(dir.join("ldap-bind"), format!("{SEARCH_PASSWORD}\n")).unwrap();
        let provider = |id: &str, label: &str, url: String, starttls: bool, ca: &str| {
            format!(
                r#"
[[provider]]
id = "{id}"
kind = "ldap"
label = "{label}"
label_zh = "校园目录"
url = "{url}"
starttls = {starttls}
ca_file = "{ca}"
bind_dn = "{SEARCH_DN}"
bind_password_file = "ldap-bind"
base_dn = "ou=people,{SUFFIX}"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"
group_base_dn = "ou=groups,{SUFFIX}"
timeout_secs = 3
"#,
                ca = d.join(ca).display()
            )
        };
        let text = [
            provider(
                "ldap",
                "Campus directory",
                format!("ldaps://127.0.0.1:{}", self.ldaps_port),
                false,
                "good-ca.pem",
            ),
            provider(
                "ldap-starttls",
                "Campus directory (StartTLS)",
                format!("ldap://127.0.0.1:{}", self.ldap_port),
                true,
                "good-ca.pem",
            ),
            provider(
                "ldap-badca",
                "Someone else's directory",
                format!("ldaps://127.0.0.1:{}", self.ldaps_port),
                false,
                "other-ca.pem",
            ),
            r#"
[rules]
default = "refuse"
[[rules.rule]]
attribute = "employeeType"
value = "gone"
then = "disable"
[[rules.rule]]
attribute = "groups"
value = "lab-admins"
then = "admin"
[[rules.rule]]
attribute = "employeeType"
value = "faculty"
then = "teacher"
[[rules.rule]]
attribute = "employeeType"
value = "student"
then = "student"
"#
            .to_owned(),
        ]
        .concat();
        let path = dir.join("auth.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

pub fn password_of(uid: &str) -> &'static str {
    PEOPLE
        .iter()
        .find(|p| p.0 == uid)
        .map(|p| p.3)
        .unwrap_or("")
}

/// A sign-in through provider `id`: (status, body, session cookie).
pub async fn ldap_login(
    env: &TestEnv,
    id: &str,
    username: &str,
    password: &str,
) -> (StatusCode, Value, Option<String>) {
    let r = reqwest::Client::new()
        .post(env.url(&format!("/api/auth/ldap/{id}/login")))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let session = r.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let pair = v.split(';').next()?;
        pair.strip_prefix("pvce_session=")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    });
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null), session)
}

async fn me(env: &TestEnv, session: &str) -> StatusCode {
    reqwest::Client::new()
        .get(env.url("/api/me"))
        .header("cookie", format!("pvce_session={session}"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn ldap_sign_in_over_tls_rules_refusals_and_outage() {
    let logs = common::logs::capture();
    let mut slapd = Slapd::start().await;
    slapd.ready().await;
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = slapd.auth_file(auth_dir.path());
    let env = TestEnv::start_with(|c| c.auth_config = Some(auth_file)).await;
    let anon = common::Client::anonymous(&env.server.url());

    let (s, list) = anon.get("/api/auth/providers").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        list[0],
        json!({"id": "ldap", "kind": "ldap", "label": "Campus directory", "label_zh": "校园目录"})
    );

    // First sign-in over LDAPS makes the account; the rules read the entry.
    let (s, body, lin_session) =
        ldap_login(&env, "ldap", "test-lin", password_of("test-lin")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["username"], "test-lin");
    assert_eq!(body["user"]["display_name"], "Lin Wei");
    assert_eq!(body["user"]["role"], "student");
    let lin_session = lin_session.expect("session cookie");
    assert_eq!(me(&env, &lin_session).await, StatusCode::OK);
    let lin_id = body["user"]["id"].clone();

    // Over StartTLS; a faculty member is a teacher.
    let (s, body, _) =
        ldap_login(&env, "ldap-starttls", "test-prof", password_of("test-prof")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["role"], "teacher");

    // Groups come from the group search: lab-admins makes an admin.
    let (s, body, _) = ldap_login(&env, "ldap", "test-root", password_of("test-root")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["role"], "admin");

    // Wrong password, unknown person, empty password (an LDAP
    // "unauthenticated bind" the directory would accept): the same 401 as
    // the local form.
    for (user, pw) in [
        ("test-lin", "not-her-password"),
        ("test-nobody", "whatever-1"),
        ("test-lin", ""),
    ] {
        let (s, body, session) = ldap_login(&env, "ldap", user, pw).await;
        common::assert_error(&(s, body), StatusCode::UNAUTHORIZED, "bad_credentials");
        assert!(session.is_none());
    }
    let local = anon
        .post(
            "/api/auth/login",
            json!({"username": "test-nobody", "password": "whatever-1"}),
        )
        .await;
    common::assert_error(&local, StatusCode::UNAUTHORIZED, "bad_credentials");

    // Filter injection: the typed name is a literal value, never a pattern
    // or extra clauses, even with her real password.
    for user in ["test-l*", "*", "test-lin)(uid=*", "test-lin)(|(uid=*"] {
        let (s, body, _) = ldap_login(&env, "ldap", user, password_of("test-lin")).await;
        common::assert_error(&(s, body), StatusCode::UNAUTHORIZED, "bad_credentials");
    }

    // No rule matches an alumna and the default refuses: no account.
    let (s, body, _) = ldap_login(&env, "ldap", "test-alum", password_of("test-alum")).await;
    common::assert_error(&(s, body), StatusCode::FORBIDDEN, "sign_in_refused");
    assert!(
        pvce::users::find_with_hash(&env.server.state.pool, "test-alum")
            .await
            .unwrap()
            .is_none()
    );

    // The directory changes: re-evaluated at the next sign-in, same account.
    slapd.set("test-lin", "employeeType", &["faculty"]).await;
    let (s, body, _) = ldap_login(&env, "ldap", "test-lin", password_of("test-lin")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["role"], "teacher");
    assert_eq!(body["user"]["id"], lin_id);

    // A server certificate the configured CA did not sign: no password is sent.
    let (s, body, _) = ldap_login(&env, "ldap-badca", "test-prof", password_of("test-prof")).await;
    common::assert_error(
        &(s, body),
        StatusCode::SERVICE_UNAVAILABLE,
        "provider_unavailable",
    );

    // Failures are in the audit log with the provider.
    let failures: Vec<(String, String)> = sqlx::query_as(
        "SELECT user_name, detail FROM audit_log WHERE action = 'sign_in' AND outcome = 'failed'",
    )
    .fetch_all(&env.server.state.pool)
    .await
    .unwrap();
    assert!(
        failures.iter().any(|(who, d)| who == "test-lin"
            && d.contains("\"ldap\"")
            && d.contains("wrong_password")),
        "{failures:?}"
    );
    assert!(
        failures
            .iter()
            .any(|(who, d)| who == "test-alum" && d.contains("refused_by_rules")),
        "{failures:?}"
    );

    // The directory is down: a clear 503, not a 401 that blames the user.
    slapd.stop();
    let (s, body, _) = ldap_login(&env, "ldap", "test-prof", password_of("test-prof")).await;
    common::assert_error(
        &(s, body.clone()),
        StatusCode::SERVICE_UNAVAILABLE,
        "provider_unavailable",
    );
    assert!(
        body["message"].as_str().unwrap_or("").contains("directory"),
        "{body}"
    );

    // No password (the people's, the service account's) reached a log.
    let text = logs.text();
    assert!(text.contains("LDAP"), "the outage was logged: {text}");
    for (_, _, _, pw) in PEOPLE {
        assert!(!text.contains(pw), "a password in the logs");
    }
    assert!(
        !text.contains(SEARCH_PASSWORD),
        "the bind password in the logs"
    );
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|x| match field {
                    "" => x.as_str().unwrap_or_default().to_owned(),
                    f => x[f].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Course links and the directory sync: a group's member is enrolled at
/// sign-in (a VM made), leaves at the sync keeping the VM, and comes back
/// to the same VM; people the directory removed or disabled are disabled
/// and their sessions end; a dry run reports the same and changes nothing;
/// an unreachable directory changes nothing.
#[tokio::test]
async fn course_links_and_directory_sync() {
    let mut slapd = Slapd::start().await;
    slapd.ready().await;
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = slapd.auth_file(auth_dir.path());
    let env = TestEnv::start_with(|c| c.auth_config = Some(auth_file)).await;
    env.user("test-sync-teacher", pvce::auth::Role::Teacher)
        .await;
    env.user("test-sync-admin", pvce::auth::Role::Admin).await;
    env.user("test-sync-local", pvce::auth::Role::Student).await;
    let teacher = env.client("test-sync-teacher").await;
    let admin = env.client("test-sync-admin").await;
    let tpl = crate::common::lab::import_tiny(&teacher, "test-sync-tiny").await;
    let course = crate::common::lab::course(
        &teacher,
        json!({"code": "CS101", "name": "Linked course", "vm_specs": [crate::common::lab::spec("linux", &tpl, 128)]}),
        &["test-sync-local"],
    )
    .await;
    let cid = course["id"].as_str().unwrap().to_owned();

    // Bad links are 400s; a good one is shown on the course.
    for bad in [
        json!({"link": {"attribute": "", "value": "cs101"}}),
        json!({"link": {"attribute": "groups", "value": " "}}),
        json!({"link": {"attribute": "gr(oups", "value": "cs101"}}),
        json!({"link": {"attribute": "groups"}}),
    ] {
        let got = teacher
            .send(
                reqwest::Method::PUT,
                &format!("/api/courses/{cid}/directory-link"),
                Some(bad),
            )
            .await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    }
    let (s, c) = teacher
        .send(
            reqwest::Method::PUT,
            &format!("/api/courses/{cid}/directory-link"),
            Some(json!({"link": {"attribute": "groups", "value": "cs101"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(
        c["directory_link"],
        json!({"attribute": "groups", "value": "cs101"})
    );

    // Sign-in enrols the group's member; her VM is made.
    let (s, body, _) = ldap_login(&env, "ldap", "test-lin", password_of("test-lin")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let lin_id = body["user"]["id"].as_str().unwrap().to_owned();
    let students = || async {
        let (s, list) = teacher.get(&format!("/api/courses/{cid}/students")).await;
        assert_eq!(s, StatusCode::OK, "{list}");
        let mut n = names(&list, "username");
        n.sort();
        n
    };
    assert_eq!(students().await, ["test-lin", "test-sync-local"]);
    let lin_vms = || async {
        sqlx::query_scalar::<_, String>("SELECT id FROM vms WHERE course_id = $1 AND owner_id = $2")
            .bind(&cid)
            .bind(&lin_id)
            .fetch_all(&env.server.state.pool)
            .await
            .unwrap()
    };
    let vm = lin_vms().await;
    assert_eq!(vm.len(), 1, "one VM per spec");
    // A teacher and an admin sign in too (sessions the sync will end).
    let (s, _, prof_session) =
        ldap_login(&env, "ldap", "test-prof", password_of("test-prof")).await;
    assert_eq!(s, StatusCode::OK);
    let prof_session = prof_session.unwrap();
    let (s, _, root_session) =
        ldap_login(&env, "ldap", "test-root", password_of("test-root")).await;
    assert_eq!(s, StatusCode::OK);
    let root_session = root_session.unwrap();

    // The directory changes: Lin leaves the group, the professor is marked
    // gone, the admin's entry is deleted.
    slapd.membership("cs101", "test-lin", false).await;
    slapd.set("test-prof", "employeeType", &["gone"]).await;
    slapd.remove("test-root").await;

    let check = |r: &Value, dry: bool| {
        assert_eq!(r["dry_run"], dry, "{r}");
        let p = &r["providers"][0];
        assert_eq!(p["provider"], "ldap", "{r}");
        let mut disabled = names(&p["disabled"], "");
        disabled.sort();
        assert_eq!(disabled, ["test-prof", "test-root"], "{r}");
        assert_eq!(
            p["left"],
            json!([{"username": "test-lin", "course": "CS101"}]),
            "{r}"
        );
        assert_eq!(p["enrolled"], json!([]), "{r}");
    };
    // Not an admin: refused.
    let got = teacher.post_empty("/api/directory/sync?dry_run=true").await;
    assert_eq!(got.0, StatusCode::FORBIDDEN, "{}", got.1);
    // A dry run reports and changes nothing.
    let (s, r) = admin.post_empty("/api/directory/sync?dry_run=true").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    check(&r, true);
    assert_eq!(students().await, ["test-lin", "test-sync-local"]);
    assert_eq!(me(&env, &prof_session).await, StatusCode::OK);
    // The command line's summary says the same.
    let lines = env.server.state.directory.sync(true).await.unwrap().lines();
    assert!(
        lines.iter().any(|l| l.contains("would disable test-prof")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("would unenrol test-lin from CS101")),
        "{lines:?}"
    );

    // "Sync now".
    let (s, r) = admin.post_empty("/api/directory/sync").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    check(&r, false);
    assert_eq!(
        students().await,
        ["test-sync-local"],
        "the teacher's enrolment stays"
    );
    assert_eq!(lin_vms().await, vm, "leaving keeps the VM and its layer");
    for session in [&prof_session, &root_session] {
        assert_eq!(me(&env, session).await, StatusCode::UNAUTHORIZED);
    }
    // A second sync has nothing left to do.
    let (_, r) = admin.post_empty("/api/directory/sync").await;
    assert_eq!(r["providers"][0]["disabled"], json!([]), "{r}");
    assert_eq!(r["providers"][0]["left"], json!([]), "{r}");

    // Back in the group: enrolled again at sign-in, the same VM.
    slapd.membership("cs101", "test-lin", true).await;
    let (s, _, _) = ldap_login(&env, "ldap", "test-lin", password_of("test-lin")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(students().await, ["test-lin", "test-sync-local"]);
    assert_eq!(lin_vms().await, vm);

    // The directory is down: nothing changes, and the report says why.
    slapd.membership("cs101", "test-lin", false).await;
    slapd.stop();
    let (s, r) = admin.post_empty("/api/directory/sync").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["providers"][0]["unavailable"].is_string(), "{r}");
    assert_eq!(r["providers"][0]["left"], json!([]), "{r}");
    assert_eq!(students().await, ["test-lin", "test-sync-local"]);
}

/// The daily directory sync: due once per slot (`--directory-sync-at`,
/// 03:30 UTC in tests), on instants the test gives; each real run recorded
/// with what started it (`GET /api/directory/syncs`), a preview never.
#[tokio::test]
async fn scheduled_directory_sync_runs_once_per_slot() {
    let slapd = Slapd::start().await;
    slapd.ready().await;
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = slapd.auth_file(auth_dir.path());
    let env = TestEnv::start_with(|c| c.auth_config = Some(auth_file)).await;
    env.user("test-sched-admin", pvce::auth::Role::Admin).await;
    let admin = env.client("test-sched-admin").await;
    let (s, _, prof) = ldap_login(&env, "ldap", "test-prof", password_of("test-prof")).await;
    assert_eq!(s, StatusCode::OK);
    let prof = prof.unwrap();
    slapd.set("test-prof", "employeeType", &["gone"]).await;

    let (s, h) = admin.get("/api/directory/syncs").await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["schedule"], "03:30");
    assert_eq!(h["configured"], true);
    assert_eq!(h["runs"], json!([]));

    let directory = &env.server.state.directory;
    // The loop started watching at 03:00; the slot is 03:30.
    let since = time::macros::datetime!(2026-12-01 03:00 UTC).unix_timestamp();
    assert!(
        directory
            .run_if_due(since + 600, since)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        me(&env, &prof).await,
        StatusCode::OK,
        "not due: nothing done"
    );
    let r = directory
        .run_if_due(since + 40 * 60, since)
        .await
        .unwrap()
        .expect("due at 03:40");
    assert_eq!(r.providers[0].disabled, ["test-prof"]);
    assert_eq!(me(&env, &prof).await, StatusCode::UNAUTHORIZED);
    // The same slot again (a restart, the next poll): not due.
    assert!(
        directory
            .run_if_due(since + 50 * 60, 0)
            .await
            .unwrap()
            .is_none()
    );
    // A preview is not recorded; the admin's sync is.
    let (s, _) = admin.post_empty("/api/directory/sync?dry_run=true").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = admin.post_empty("/api/directory/sync").await;
    assert_eq!(s, StatusCode::OK);
    // The next day's slot.
    assert!(
        directory
            .run_if_due(since + 86_400 + 31 * 60, since)
            .await
            .unwrap()
            .is_some()
    );
    let (_, h) = admin.get("/api/directory/syncs?limit=10").await;
    let triggers: Vec<&str> = h["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(triggers, ["scheduled", "admin", "scheduled"], "{h}");
    assert_eq!(
        h["runs"][2]["report"]["providers"][0]["disabled"],
        json!(["test-prof"]),
        "{h}"
    );
    let (s, body) = admin.get("/api/directory/syncs?limit=nope").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
}
