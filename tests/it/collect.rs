//! Teacher collects work from every student's layer, end to end on the real
//! local libvirtd with the tiny guest: files written inside the guests (serial
//! shell) come back in one tar; a running VM is skipped and reported; the same
//! student's VM in another course is never read; outsiders get 404.

use std::process::Command;
use std::time::Duration;

use crate::common::lab::{course, import_tiny, spec, vm_of};
use crate::common::tool::run_tool;
use crate::common::{self, TestEnv, assert_error, download, serial_run, wait_serial};
use pvce::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test]
async fn collection_holds_each_students_files_and_nothing_from_other_courses() {
    // Four guests boot at once: alone (see common::gate).
    let _alone = common::gate::alone().await;
    let env = TestEnv::start().await;
    env.user("test-teacher", Role::Teacher).await;
    env.user("test-teacher2", Role::Teacher).await;
    for s in ["test-alice", "test-bob", "test-carol"] {
        env.user(s, Role::Student).await;
    }
    let teacher = env.client("test-teacher").await;
    let teacher2 = env.client("test-teacher2").await;
    let alice = env.client("test-alice").await;
    let bob = env.client("test-bob").await;
    let carol = env.client("test-carol").await;
    let tpl = import_tiny(&teacher, "test-tiny").await;
    let course_a = course(
        &teacher,
        json!({"code": "test-col-a", "name": "test-col-a", "vm_specs": [spec("linux", &tpl, 192)]}),
        &["test-alice", "test-bob", "test-carol"],
    )
    .await;
    let course_b = course(
        &teacher,
        json!({"code": "test-col-b", "name": "test-col-b", "vm_specs": [spec("linux", &tpl, 192)]}),
        &["test-alice"],
    )
    .await;
    let a = course_a["id"].as_str().unwrap();
    let alice_a = vm_of(&env, &alice, &course_a, "linux").await;
    let alice_b = vm_of(&env, &alice, &course_b, "linux").await;
    let bob_a = vm_of(&env, &bob, &course_a, "linux").await;
    let carol_a = vm_of(&env, &carol, &course_a, "linux").await;

    // Boot all four, write files through each guest's serial shell.
    for (client, vm) in [
        (&alice, &alice_a),
        (&alice, &alice_b),
        (&bob, &bob_a),
        (&carol, &carol_a),
    ] {
        let (s, v) = client.post_empty(&format!("/api/vms/{vm}/start")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let work = [
        (
            &alice_a,
            "echo alice-a-$((1+1)) > /root/lab1/report.txt; mkdir -p /root/lab1/src; echo 'int main(){}' > /root/lab1/src/main.c; ln -sf /etc/passwd /root/lab1/link",
        ),
        (
            &alice_b,
            "echo alice-b-secret-$((1+1)) > /root/lab1/report.txt",
        ),
        (&bob_a, "echo bob-a-$((1+1)) > /root/lab1/report.txt"),
        (&carol_a, "echo carol-a-$((1+1)) > /root/lab1/report.txt"),
    ];
    let boots = work.iter().map(|(vm, cmd)| {
        let env = &env;
        async move {
            wait_serial(env, vm, "BOOT-OK", BOOT_TIMEOUT).await;
            serial_run(
                env,
                vm,
                &format!("mkdir -p /root/lab1; {cmd}; sync; echo DONE-$((40+2))"),
                "DONE-42",
            )
            .await;
        }
    });
    futures::future::join_all(boots).await;
    // Carol keeps working; the others shut down.
    for (client, vm) in [(&alice, &alice_a), (&alice, &alice_b), (&bob, &bob_a)] {
        let (s, v) = client.post_empty(&format!("/api/vms/{vm}/shutdown")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    for (client, vm) in [(&alice, &alice_a), (&alice, &alice_b), (&bob, &bob_a)] {
        common::wait_vm_gone(client, vm).await;
    }

    // Only the course's teacher (or an admin) may collect; the path is checked.
    let collect = format!("/api/courses/{a}/collect?path=/root/lab1");
    for outsider in [&alice, &teacher2] {
        assert_error(
            &outsider.get(&collect).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    assert_error(
        &teacher
            .get(&format!("/api/courses/{a}/collect?path=/root/../etc"))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    let dir = env.dir.path().join("collected");
    std::fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("a.tar");
    let (s, headers) = download(&teacher, &collect, &archive).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-tar");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"test-col-a-lab1.tar\""
    );
    let listing = run_tool(Command::new("tar").arg("-tvf").arg(&archive));
    run_tool(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&dir),
    );
    let read = |p: &str| std::fs::read_to_string(dir.join("test-col-a").join(p)).unwrap();
    assert_eq!(read("test-alice/linux/lab1/report.txt"), "alice-a-2\n");
    assert_eq!(read("test-alice/linux/lab1/src/main.c"), "int main(){}\n");
    assert_eq!(read("test-bob/linux/lab1/report.txt"), "bob-a-2\n");
    // No symlink is ever written out, and the running VM was not read.
    assert!(!listing.contains("link"), "{listing}");
    assert!(
        !listing.starts_with('l') && !listing.contains("\nl"),
        "{listing}"
    );
    assert!(!dir.join("test-col-a/test-carol").exists(), "{listing}");
    // Nothing from the other course, though it is the same student and path.
    let bytes = std::fs::read(&archive).unwrap();
    assert!(
        !bytes.windows(14).any(|w| w == b"alice-b-secret"),
        "{listing}"
    );
    let report = read("REPORT.txt");
    assert!(report.contains("test-alice/linux: 2 files"), "{report}");
    assert!(report.contains("1 links/special files skipped"), "{report}");
    assert!(report.contains("test-bob/linux: 1 files"), "{report}");
    assert!(
        report.contains("test-carol/linux: skipped, the VM is running"),
        "{report}"
    );

    // A path nobody has: an archive with only the report.
    let missing = dir.join("missing.tar");
    let (s, _) = download(
        &teacher,
        &format!("/api/courses/{a}/collect?path=/root/lab9"),
        &missing,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let out = Command::new("tar")
        .arg("-tf")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "test-col-a/REPORT.txt\n"
    );

    let (s, _): (StatusCode, Value) = carol
        .post_empty(&format!("/api/vms/{carol_a}/poweroff"))
        .await;
    assert_eq!(s, StatusCode::OK);
}
