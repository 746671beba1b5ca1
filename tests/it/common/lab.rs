//! The lab most VM tests start from, built through the API as a teacher
//! would: the tiny guest imported as a template, a course on it, students
//! enrolled (one personal VM each per spec), and the VM a test drives.
//! Every step asserts its answer, so a test failing here says which.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Client, TestEnv};
use pvce::auth::Role;

/// Imports the tiny guest as template `name` (OS `tiny-linux`, software
/// `busybox`) as `teacher`; returns the template.
pub async fn import_tiny(teacher: &Client, name: &str) -> Value {
    let image = tokio::task::spawn_blocking(super::tiny_image)
        .await
        .unwrap();
    let (s, tpl) = teacher
        .upload(
            &format!(
                "/api/templates/import?name={name}&format=qcow2&os=tiny-linux&software=busybox"
            ),
            &image,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{tpl}");
    tpl
}

/// One VM spec of `memory_mib` on `template` (1 vCPU).
pub fn spec(name: &str, template: &Value, memory_mib: u32) -> Value {
    json!({"name": name, "template_id": template["id"], "vcpus": 1, "memory_mib": memory_mib})
}

/// Creates the course `body` describes (`code`, `name`, `vm_specs`, …) and
/// enrols `students`; returns the course.
pub async fn course(teacher: &Client, body: Value, students: &[&str]) -> Value {
    let (s, course) = teacher.post("/api/courses", body).await;
    assert_eq!(s, StatusCode::CREATED, "{course}");
    let (s, e) = teacher
        .post(
            &format!("/api/courses/{}/students", course["id"].as_str().unwrap()),
            json!({ "usernames": students }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    course
}

/// The id of `client`'s VM of spec `spec` in `course` (a VM is named after
/// its spec), destroyed with `env` whatever happens.
pub async fn vm_of(env: &TestEnv, client: &Client, course: &Value, spec: &str) -> String {
    let cid = course["id"].as_str().unwrap();
    let (s, vms) = client.get(&format!("/api/vms?course_id={cid}")).await;
    assert_eq!(s, StatusCode::OK, "{vms}");
    let id = vms
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == spec)
        .unwrap_or_else(|| panic!("no VM of spec {spec}: {vms}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.track_vm(&id);
    id
}

/// What [`course_with_student_vm`] builds.
pub struct Lab {
    pub alice: Client,
    pub template: Value,
    /// Alice's VM in the course.
    pub vm: String,
}

impl Lab {
    pub fn template_id(&self) -> String {
        self.template["id"].as_str().unwrap().to_owned()
    }
}

/// The usual lab: teacher `test-teacher`, students `test-alice` and
/// `test-bob`, the tiny guest as template `test-tiny`, and course `code`
/// with one spec `linux` (1 vCPU, 256 MiB) that both are enrolled in.
pub async fn course_with_student_vm(env: &TestEnv, code: &str) -> Lab {
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-alice", Role::Student).await;
    env.user("test-bob", Role::Student).await;
    let teacher = env.client("test-teacher").await;
    let alice = env.client("test-alice").await;
    let template = import_tiny(&teacher, "test-tiny").await;
    let course = course(
        &teacher,
        json!({"code": code, "name": code, "vm_specs": [spec("linux", &template, 256)]}),
        &["test-alice", "test-bob"],
    )
    .await;
    let vm = vm_of(env, &alice, &course, "linux").await;
    Lab {
        alice,
        template,
        vm,
    }
}

/// Starts `vm` as `client` and waits until its guest has booted (BOOT-OK
/// on its serial console).
pub async fn boot(env: &TestEnv, client: &Client, vm: &str) {
    let (s, v) = client.post_empty(&format!("/api/vms/{vm}/start")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    super::wait_serial(env, vm, "BOOT-OK", std::time::Duration::from_secs(120)).await;
}

/// A course `code` whose one spec `linux` (1 vCPU, `memory_mib`) has SPICE
/// graphics, on the tiny guest imported by `teacher` as `template`, with
/// `students` enrolled; returns the course and `student`'s VM in it, booted.
pub async fn spice_course_with_running_vm(
    env: &TestEnv,
    (teacher, template): (&Client, &str),
    (code, memory_mib): (&str, u32),
    student: &Client,
    students: &[&str],
) -> (Value, String) {
    let tpl = import_tiny(teacher, template).await;
    let mut linux = spec("linux", &tpl, memory_mib);
    linux["graphics"] = json!("spice");
    let course = course(
        teacher,
        json!({"code": code, "name": code, "vm_specs": [linux]}),
        students,
    )
    .await;
    let vm = vm_of(env, student, &course, "linux").await;
    boot(env, student, &vm).await;
    (course, vm)
}
