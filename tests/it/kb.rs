//! Knowledge-base editing (issue 13): an edit is a new revision and the
//! earlier text stays in the history; a stale edit is refused; search and
//! suggestions follow the current text; a retired article leaves search,
//! deflection and non-staff readers but stays readable by staff.

use crate::common::{TestEnv, assert_error, strings};
use pvce::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn an_edit_keeps_the_old_text_and_a_retired_article_leaves_search() {
    let env = TestEnv::start().await;
    env.user("test-kb-student", Role::Student).await;
    env.user("test-kb-staff", Role::Staff).await;
    env.user("test-kb-admin", Role::Admin).await;
    let student = env.client("test-kb-student").await;
    let staff = env.client("test-kb-staff").await;
    let admin = env.client("test-kb-admin").await;

    let (s, a) = staff
        .post(
            "/api/kb",
            json!({"title":"Console stays black","symptom":"The console shows a black screen.",
                   "fix":"Restart the VM.","lang":"en"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(a["revision"], 1, "{a}");
    assert!(a["archived_at"].is_null(), "{a}");
    let id = a["id"].as_str().unwrap().to_owned();
    let url = format!("/api/kb/{id}");

    // The admin edits it: revision 2, by the admin; the search index follows.
    let edit = |rev: i64, fix: &str| {
        json!({"title":"Console stays black","symptom":"The console shows a black screen.",
               "cause":"The guest's display driver hung.","fix":fix,"lang":"en","revision":rev})
    };
    let (s, a) = admin
        .send(
            Method::PUT,
            &url,
            Some(edit(1, "Power the VM off and on; a reboot is not enough.")),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["revision"], 2, "{a}");
    assert_eq!(a["editor_name"], "test-kb-admin", "{a}");
    assert_eq!(a["author_name"], "test-kb-staff", "{a}");
    assert_eq!(a["cause"], "The guest's display driver hung.", "{a}");
    let (_, hits) = student.get("/api/kb?q=enough").await;
    assert_eq!(strings(&hits, "id"), [id.as_str()], "{hits}");
    let (_, hits) = student.get("/api/kb?q=Restart").await;
    assert_eq!(
        hits.as_array().unwrap().len(),
        0,
        "the old text left the index: {hits}"
    );

    // A colleague still editing revision 1 is refused, not silently overwritten.
    let got = staff
        .send(Method::PUT, &url, Some(edit(1, "Reinstall everything.")))
        .await;
    assert_error(&got, StatusCode::CONFLICT, "article_changed");

    // The history keeps both versions, newest first, with who and when.
    let (s, revs) = staff.get(&format!("{url}/revisions")).await;
    assert_eq!(s, StatusCode::OK, "{revs}");
    let revs = revs.as_array().unwrap().clone();
    assert_eq!(revs.len(), 2);
    assert_eq!(revs[0]["number"], 2);
    assert_eq!(revs[0]["editor_name"], "test-kb-admin");
    assert_eq!(revs[1]["number"], 1);
    assert_eq!(revs[1]["fix"], "Restart the VM.");
    assert_eq!(revs[1]["editor_name"], "test-kb-staff");

    // Students neither edit, retire nor read the history; bad input is 400.
    let got = student.send(Method::PUT, &url, Some(edit(2, "x"))).await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    assert_error(
        &student.delete(&url).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &student.get(&format!("{url}/revisions")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let got = staff
        .send(
            Method::PUT,
            &url,
            Some(json!({"title":"x","symptom":"s","fix":" ","lang":"en"})),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_request");
    let got = staff
        .send(
            Method::PUT,
            &url,
            Some(json!({"title":"x","symptom":"s","fix":"f","lang":"en","extra":1})),
        )
        .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    let got = staff
        .send(
            Method::PUT,
            "/api/kb/00000000-0000-0000-0000-000000000000",
            Some(edit(1, "x")),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");

    // Retired: out of search and suggestions, no deflection, hidden from
    // students; staff still read it and list it apart; no more edits.
    let (s, a) = staff.delete(&url).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert!(a["archived_at"].is_string(), "{a}");
    let (s, again) = staff.delete(&url).await;
    assert_eq!(s, StatusCode::OK, "retiring twice changes nothing: {again}");
    assert_eq!(again["archived_at"], a["archived_at"]);
    let (_, hits) = student.get("/api/kb?q=enough").await;
    assert_eq!(hits.as_array().unwrap().len(), 0, "{hits}");
    let (_, hits) = staff.get("/api/kb").await;
    assert_eq!(hits.as_array().unwrap().len(), 0, "{hits}");
    let (_, hits) = staff.get("/api/kb?archived=true&q=enough").await;
    assert_eq!(strings(&hits, "id"), [id.as_str()], "{hits}");
    assert_error(
        &student.get("/api/kb?archived=true").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(&student.get(&url).await, StatusCode::NOT_FOUND, "not_found");
    let got = student.post(&format!("{url}/helped"), json!({})).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");
    let (s, a) = staff.get(&url).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["revision"], 2);
    let got = staff.send(Method::PUT, &url, Some(edit(2, "x"))).await;
    assert_error(&got, StatusCode::CONFLICT, "article_retired");
}
