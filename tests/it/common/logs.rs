//! The process's one tracing subscriber, shared by every test of the binary:
//! the usual output (`RUST_LOG`, default `pvce=info`, shown with
//! `--nocapture`) and, while a test holds a [`LogCapture`], everything the
//! servers log at every level into that capture — so a test can check that a
//! secret never reaches a log. A subscriber is global, so it is installed
//! once here rather than by a test (a second `init` would panic).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

type Buf = Arc<Mutex<Vec<u8>>>;

/// The open captures; a dropped [`LogCapture`] leaves a dead `Weak` behind.
static CAPTURES: Mutex<Vec<Weak<Mutex<Vec<u8>>>>> = Mutex::new(Vec::new());
/// How many captures are open: the filter's cheap test, so that formatting
/// every trace event costs nothing while nobody captures.
static OPEN: AtomicUsize = AtomicUsize::new(0);

fn live_captures() -> Vec<Buf> {
    let mut all = CAPTURES.lock().unwrap();
    all.retain(|w| w.strong_count() > 0);
    all.iter().filter_map(Weak::upgrade).collect()
}

/// What a capture records: pvce, tower_http and axum at every level.
fn captured_targets() -> Targets {
    "pvce=trace,tower_http=trace,axum=trace".parse().unwrap()
}

/// Installs the subscriber (once per process).
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let usual = tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(EnvFilter::new(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "pvce=info".into()),
            ));
        let targets = captured_targets();
        let capture = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(ToCaptures)
            .with_filter(filter_fn(move |meta| {
                OPEN.load(Ordering::Relaxed) > 0
                    && targets.would_enable(meta.target(), meta.level())
            }));
        let _ = tracing_subscriber::registry()
            .with(usual)
            .with(capture)
            .try_init();
    });
}

/// Everything logged while it is alive (by any server of the process: other
/// tests' servers may add lines, never remove any).
///
/// Two routes into one buffer: this thread's own default subscriber (a
/// `#[tokio::test]` runs the server it starts on its own thread, so its
/// access log and handlers land here whatever the global subscriber's
/// callsite caches decided earlier in the binary — two full-suite runs
/// captured only INFO lines through the global route alone, no access log),
/// and the global
/// capture layer for what other threads (blocking pools) log.
pub struct LogCapture {
    buf: Buf,
    _local: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

/// Starts capturing; call it before the server starts, on the test's thread.
pub fn capture() -> LogCapture {
    init();
    let buf = Buf::default();
    CAPTURES.lock().unwrap().push(Arc::downgrade(&buf));
    OPEN.fetch_add(1, Ordering::Relaxed);
    let local = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(ToBuf(buf.clone()))
            .with_filter(captured_targets()),
    );
    let guard = tracing::subscriber::set_default(local);
    // The macros' global max level is computed from the dispatchers alive at
    // the last rebuild; recompute it now that this one (which wants DEBUG and
    // TRACE from tower_http) is among them.
    tracing::callsite::rebuild_interest_cache();
    assert_eq!(
        tracing::level_filters::LevelFilter::current(),
        tracing::level_filters::LevelFilter::TRACE,
        "a log capture must see every level"
    );
    LogCapture { buf, _local: guard }
}

/// Writes into one capture's buffer.
struct ToBuf(Buf);

impl<'a> MakeWriter<'a> for ToBuf {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> CaptureWriter {
        CaptureWriter(vec![self.0.clone()])
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

struct ToCaptures;

impl<'a> MakeWriter<'a> for ToCaptures {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> CaptureWriter {
        CaptureWriter(live_captures())
    }
}

struct CaptureWriter(Vec<Buf>);

impl Write for CaptureWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        for buf in &self.0 {
            buf.lock().unwrap().extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
