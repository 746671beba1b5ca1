//! Notifications against real servers started by the tests: mail to a real
//! SMTP server (aiosmtpd, `tests/it/smtp_sink.py`, from Debian's
//! `python3-aiosmtpd` that scripts/setup.sh installs) — plain SMTP, STARTTLS
//! with a certificate from a lab CA and AUTH — and webhooks to a local axum
//! listener. What arrived is checked as the receiving side parsed it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use pvce::desk::notify::mail::Secret;
use pvce::desk::notify::{
    Destination, Event, Lang, Mailer, Notifier, NotifyError, SmtpSecurity, SmtpSettings, TicketRef,
    WebhookFormat, WebhookSender, WebhookTarget, render,
};
use pvce::desk::sla::Clock;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;

/// The Python that has aiosmtpd: Debian's (`/usr/bin/python3`), not
/// whatever `python3` comes first on PATH (pyenv, a venv...).
fn python() -> String {
    std::env::var("PVCE_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

pub(crate) struct SmtpSink {
    pub(crate) port: u16,
    lines: Lines<BufReader<ChildStdout>>,
    _child: Child,
}

impl SmtpSink {
    pub(crate) async fn start(args: &[&str]) -> SmtpSink {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/smtp_sink.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 (run scripts/setup.sh)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the SMTP sink to start")
            .unwrap()
            .expect(
                "the SMTP sink printed its port (is python3-aiosmtpd installed? scripts/setup.sh)",
            );
        SmtpSink {
            port: first.trim().parse().unwrap(),
            lines,
            _child: child,
        }
    }

    /// The next message the server accepted, as it parsed it.
    pub(crate) async fn next_mail(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
            .await
            .expect("a message within 20 s")
            .unwrap()
            .expect("the sink is still running");
        serde_json::from_str(&line).unwrap()
    }
}

fn ticket() -> TicketRef {
    TicketRef {
        number: "42".into(),
        title: "虚拟机启动后黑屏".into(),
        url: Some("https://pvce.lab.example/desk/tickets/42".into()),
    }
}

fn assigned() -> Event {
    Event::Assigned {
        ticket: ticket(),
        by: "王老师".into(),
    }
}

fn smtp(port: u16, security: SmtpSecurity) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port: Some(port),
        security,
        from: "pvce 服务台 <desk@lab.example>".into(),
        username: None,
        password: None,
        ca_file: None,
        timeout_secs: Some(10),
    }
}

/// A lab CA and a server certificate for 127.0.0.1 signed by it, made with
/// the openssl CLI: `(ca, cert, key)`. The mailer is told to trust the CA.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl (scripts/setup.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=pvce test lab CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        p("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "cert.pem",
    ]);
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

/// The body as sent: CRLF line ends back to LF, and without the final line
/// end a 7-bit transfer encoding adds.
fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").trim_end_matches('\n').to_string() + "\n"
}

#[tokio::test]
async fn plain_smtp_delivers_a_chinese_message() {
    let mut sink = SmtpSink::start(&[]).await;
    let mailer = Mailer::new(&smtp(sink.port, SmtpSecurity::None)).unwrap();
    let msg = render(&assigned(), Lang::ZhCn);
    mailer.send("李雷 <lilei@lab.example>", &msg).await.unwrap();

    let got = sink.next_mail().await;
    assert_eq!(got["mail_from"], "desk@lab.example");
    assert_eq!(got["rcpt_tos"], serde_json::json!(["lilei@lab.example"]));
    assert_eq!(got["tls"], false);
    // The subject went over the wire RFC 2047-encoded and decodes back whole.
    assert_eq!(got["subject"], msg.subject.as_str());
    assert_eq!(
        got["subject"],
        "[pvce] 工单 #42 已分派给你：虚拟机启动后黑屏"
    );
    let raw = got["raw_subject"].as_str().unwrap();
    assert!(raw.to_ascii_lowercase().contains("=?utf-8?"), "{raw}");
    assert_eq!(got["raw_is_ascii"], true, "the body is transfer-encoded");
    assert_eq!(got["from"], "pvce 服务台 <desk@lab.example>");
    assert_eq!(got["to"], "李雷 <lilei@lab.example>");
    assert_eq!(got["content_type"], "text/plain");
    assert_eq!(got["charset"], "utf-8");
    let body = crlf(got["body"].as_str().unwrap());
    assert_eq!(body, msg.text);
    assert!(body.contains("王老师 把工单 #42「虚拟机启动后黑屏」分派给了你。"));
    assert!(body.contains("查看工单：https://pvce.lab.example/desk/tickets/42"));
}

#[tokio::test]
async fn starttls_with_credentials_and_a_lab_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let mut sink = SmtpSink::start(&[
        "--tls",
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        "--auth",
        "desk",
        "s3cret-pass",
    ])
    .await;
    let mut s = smtp(sink.port, SmtpSecurity::Starttls);
    s.ca_file = Some(ca);
    s.username = Some("desk".into());
    s.password = Some(Secret::new("s3cret-pass"));
    let mailer = Mailer::new(&s).unwrap();
    let event = Event::Escalated {
        ticket: ticket(),
        clock: Clock::Resolution,
        percent: 100,
        breach: true,
        due_at: None,
    };
    let msg = render(&event, Lang::En);
    mailer.send("admin@lab.example", &msg).await.unwrap();
    let got = sink.next_mail().await;
    assert_eq!(got["tls"], true);
    assert_eq!(got["auth_login"], "desk");
    assert_eq!(
        got["subject"],
        "[pvce] Ticket #42 missed its resolution target: 虚拟机启动后黑屏"
    );
    assert_eq!(crlf(got["body"].as_str().unwrap()), msg.text);

    // A wrong password is refused by the server: a typed error that does
    // not carry the password.
    s.password = Some(Secret::new("wrong-pass"));
    let err = Mailer::new(&s)
        .unwrap()
        .send("admin@lab.example", &msg)
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Smtp { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("wrong-pass"));

    // Without the lab CA the server's certificate is not trusted.
    s.password = Some(Secret::new("s3cret-pass"));
    s.ca_file = None;
    let err = Mailer::new(&s)
        .unwrap()
        .send("admin@lab.example", &msg)
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Smtp { .. }), "{err:?}");
}

#[tokio::test]
async fn starttls_is_required_when_asked_for() {
    // The plain server offers no STARTTLS: the mailer must not fall back.
    let mut sink = SmtpSink::start(&[]).await;
    let err = Mailer::new(&smtp(sink.port, SmtpSecurity::Starttls))
        .unwrap()
        .send("a@lab.example", &render(&assigned(), Lang::En))
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Smtp { .. }), "{err:?}");
    // The server is fine: the same message in plain SMTP arrives.
    Mailer::new(&smtp(sink.port, SmtpSecurity::None))
        .unwrap()
        .send("a@lab.example", &render(&assigned(), Lang::En))
        .await
        .unwrap();
    assert_eq!(
        sink.next_mail().await["subject"],
        "[pvce] Ticket #42 assigned to you: 虚拟机启动后黑屏"
    );
}

#[tokio::test]
async fn a_server_that_stops_answering_is_a_timeout() {
    // Accepts the connection and never greets: the send gives up after
    // four times the configured timeout instead of hanging.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let (conn, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
        drop(conn);
    });
    let mut s = smtp(port, SmtpSecurity::None);
    s.timeout_secs = Some(1);
    let started = std::time::Instant::now();
    let err = Mailer::new(&s)
        .unwrap()
        .send("a@lab.example", &render(&assigned(), Lang::En))
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::SmtpTimeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    held.abort();
}

// --- webhooks ---------------------------------------------------------------

#[derive(Debug)]
pub(crate) struct Hit {
    pub(crate) token: String,
    pub(crate) content_type: String,
    pub(crate) body: String,
}

/// A local webhook receiver: `/hook/{token}` records the request and
/// answers 200; `/fail` answers 500; `/hang` never answers; `/moved`
/// redirects to a hook.
pub(crate) async fn receiver() -> (String, mpsc::UnboundedReceiver<Hit>) {
    let (tx, rx) = mpsc::unbounded_channel();
    async fn hook(
        State(tx): State<mpsc::UnboundedSender<Hit>>,
        UrlPath(token): UrlPath<String>,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        tx.send(Hit {
            token,
            content_type,
            body,
        })
        .unwrap();
        StatusCode::OK
    }
    async fn fail() -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
    async fn hang() -> Response {
        std::future::pending::<()>().await;
        StatusCode::OK.into_response()
    }
    async fn moved() -> Redirect {
        Redirect::temporary("/hook/redirected")
    }
    let app = axum::Router::new()
        .route("/hook/{token}", post(hook))
        .route("/fail", post(fail))
        .route("/hang", post(hang))
        .route("/moved", post(moved))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, rx)
}

fn target(url: String, format: WebhookFormat) -> WebhookTarget {
    WebhookTarget { url, format }
}

/// Posts `event` to `url` in `format`, written in `lang`.
async fn send_to(
    sender: &WebhookSender,
    url: String,
    format: WebhookFormat,
    event: &Event,
    lang: Lang,
) -> Result<(), NotifyError> {
    sender.send(&target(url, format), event, lang).await
}

#[tokio::test]
async fn webhook_formats_arrive_as_documented() {
    let (base, mut rx) = receiver().await;
    let sender = WebhookSender::new(Duration::from_secs(10)).unwrap();
    let event = Event::Resolved {
        ticket: ticket(),
        by: "张工".into(),
        resolution: "重建了个人层 *已验证*".into(),
    };

    send_to(
        &sender,
        format!("{base}/hook/json"),
        WebhookFormat::Json,
        &event,
        Lang::ZhCn,
    )
    .await
    .unwrap();
    let hit = rx.recv().await.unwrap();
    assert_eq!(hit.token, "json");
    assert_eq!(hit.content_type, "application/json");
    let v: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(v["event"], "resolved");
    assert_eq!(v["lang"], "zh-CN");
    assert_eq!(v["subject"], "[pvce] 你的工单 #42 已解决：虚拟机启动后黑屏");
    assert_eq!(v["ticket"]["number"], "42");
    assert_eq!(v["details"]["resolution"], "重建了个人层 *已验证*");
    assert!(v["text"].as_str().unwrap().contains("评分"));

    send_to(
        &sender,
        format!("{base}/hook/text"),
        WebhookFormat::Text,
        &event,
        Lang::En,
    )
    .await
    .unwrap();
    let hit = rx.recv().await.unwrap();
    assert_eq!(hit.content_type, "text/plain; charset=utf-8");
    assert!(
        hit.body
            .starts_with("[pvce] Your ticket #42 was resolved: 虚拟机启动后黑屏\n\n张工 resolved")
    );

    send_to(
        &sender,
        format!("{base}/hook/md"),
        WebhookFormat::Markdown,
        &event,
        Lang::En,
    )
    .await
    .unwrap();
    let hit = rx.recv().await.unwrap();
    assert_eq!(hit.content_type, "text/markdown; charset=utf-8");
    assert!(
        hit.body.contains("**\\#42**") || hit.body.contains("**#42**"),
        "{}",
        hit.body
    );
    assert!(
        hit.body.contains("> 重建了个人层 \\*已验证\\*"),
        "{}",
        hit.body
    );
    assert!(
        hit.body
            .contains("[Open the ticket](https://pvce.lab.example/desk/tickets/42)")
    );

    send_to(
        &sender,
        format!("{base}/hook/chat"),
        WebhookFormat::Chat,
        &event,
        Lang::ZhCn,
    )
    .await
    .unwrap();
    let hit = rx.recv().await.unwrap();
    assert_eq!(hit.content_type, "application/json");
    let v: Value = serde_json::from_str(&hit.body).unwrap();
    assert!(v["text"].as_str().unwrap().contains("已解决你的工单"));

    // Through the Notifier, as the desk uses it.
    let notifier = Notifier::new(None, sender.clone());
    let to = Destination::Webhook {
        target: target(format!("{base}/hook/notifier"), WebhookFormat::Json),
        lang: Lang::En,
    };
    notifier.deliver(&to, &assigned()).await.unwrap();
    let hit = rx.recv().await.unwrap();
    assert_eq!(hit.token, "notifier");
    assert_eq!(
        serde_json::from_str::<Value>(&hit.body).unwrap()["event"],
        "assigned"
    );
    // No mail server configured: a typed error, not a panic.
    let to = Destination::Email {
        address: "a@lab.example".into(),
        lang: Lang::En,
    };
    assert!(matches!(
        notifier.deliver(&to, &assigned()).await,
        Err(NotifyError::MailDisabled)
    ));
}

#[tokio::test]
async fn webhook_failures_are_typed_and_bounded() {
    let (base, mut rx) = receiver().await;
    let sender = WebhookSender::new(Duration::from_millis(500)).unwrap();
    let e = assigned();

    let err = send_to(
        &sender,
        format!("{base}/fail"),
        WebhookFormat::Json,
        &e,
        Lang::En,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, NotifyError::WebhookStatus { status: 500, .. }),
        "{err:?}"
    );

    // A receiver that never answers: the timeout ends the request.
    let started = std::time::Instant::now();
    let err = send_to(
        &sender,
        format!("{base}/hang?token=SECRET"),
        WebhookFormat::Json,
        &e,
        Lang::En,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, NotifyError::WebhookTimeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!format!("{err} {err:?}").contains("SECRET"));

    // Redirects are not followed.
    let err = send_to(
        &sender,
        format!("{base}/moved"),
        WebhookFormat::Json,
        &e,
        Lang::En,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, NotifyError::WebhookStatus { status: 307, .. }),
        "{err:?}"
    );
    assert!(
        rx.try_recv().is_err(),
        "the redirect target was not posted to"
    );

    // Nobody listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = send_to(
        &sender,
        format!("http://{closed}/hook/x?token=SECRET"),
        WebhookFormat::Json,
        &e,
        Lang::En,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, NotifyError::Webhook { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("SECRET"), "{err:?}");

    let err = send_to(
        &sender,
        "ftp://127.0.0.1/x".into(),
        WebhookFormat::Json,
        &e,
        Lang::En,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, NotifyError::BadWebhookUrl));
}
