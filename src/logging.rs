//! Logging that can never take the server down.
//!
//! `tracing-subscriber`'s default writer reports a failed write with
//! `eprintln!`, which panics when stderr itself cannot be written — with the
//! log on a full disk every request that logged died with its connection.
//! Here a log line that cannot be written is dropped and counted
//! ([`dropped_lines`], exported as `pvce_log_lines_dropped_total`); the request
//! or background loop that logged it carries on.
//!
//! Invariant: nothing in this module panics or returns an error to its caller.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::fmt::MakeWriter;

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines that could not be written since the process started.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// A writer over any sink that swallows (and counts) write failures.
#[derive(Debug)]
pub struct Lossy<W>(pub W);

impl<W: Write> Write for Lossy<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.0.write_all(buf).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// Makes a [`Lossy`] stderr writer per event.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossyStderr;

impl<'a> MakeWriter<'a> for LossyStderr {
    type Writer = Lossy<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Lossy(io::stderr())
    }
}

/// Installs the process-wide subscriber (`RUST_LOG` filters; default
/// `pvce=info,tower_http=info`). Calling it twice is harmless.
pub fn init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "pvce=info,tower_http=info".into()),
        )
        .with_writer(LossyStderr)
        // Its own error report is an `eprintln!`, the panic we are avoiding.
        .log_internal_errors(false)
        .try_init();
}

/// Prints a line on stdout for the operator (start-up banners, CLI output)
/// without panicking when stdout is closed or full.
pub fn say(line: &str) {
    let mut out = io::stdout().lock();
    if writeln!(out, "{line}").is_err() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that fails every write, as a file on a full disk does.
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28)) // ENOSPC
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(28))
        }
    }

    #[test]
    fn a_failed_write_is_counted_not_raised() {
        let before = dropped_lines();
        let mut w = Lossy(Full);
        assert!(w.write_all(b"a log line\n").is_ok());
        assert!(w.flush().is_ok());
        assert_eq!(w.write(b"xy").ok(), Some(2));
        assert!(dropped_lines() >= before + 2);
    }

    #[test]
    fn a_subscriber_on_a_full_sink_does_not_panic() {
        #[derive(Clone, Copy)]
        struct MakeFull;
        impl<'a> MakeWriter<'a> for MakeFull {
            type Writer = Lossy<Full>;
            fn make_writer(&'a self) -> Self::Writer {
                Lossy(Full)
            }
        }
        let sub = tracing_subscriber::fmt()
            .with_writer(MakeFull)
            .log_internal_errors(false)
            .finish();
        let before = dropped_lines();
        tracing::subscriber::with_default(sub, || {
            tracing::info!("this line has nowhere to go");
        });
        assert!(dropped_lines() > before);
    }
}
