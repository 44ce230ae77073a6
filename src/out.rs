//! Standard output that may be a pipe whose reader went away
//! (`kaon run wf.toml | head -2`). `println!` panics then; these macros
//! stop writing instead, so a closed pipe never changes how a command ends
//! (a run goes on to its end and exits with its own status).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes to stdout unless it has failed before; a failure (a closed pipe,
/// a full disk behind a redirect) ends all later output quietly.
pub fn write(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// True once stdout could not be written: loops that only print (`kaon
/// logs --follow`) end.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// True when `e` (or what caused it) is a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` for stdout that may close early.
#[macro_export]
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` for stdout that may close early.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*)) };
}
