//! Panics as errors. redb may panic on a damaged file; where we call it, a panic becomes an
//! error that says what failed, and the process goes on serving what it still can. Panics
//! nobody catches are logged as one structured line by the hook [`install_hook`] sets.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe, UnwindSafe};

thread_local! {
    /// Set while a panic on this thread will be caught and reported by the catcher.
    static CAUGHT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(message)`. The hook stays silent about it: the
/// caller reports the message where it belongs (an error answer, a readiness reason).
pub fn catch<T>(f: impl FnOnce() -> T + UnwindSafe) -> Result<T, String> {
    let outer = CAUGHT.with(|caught| caught.replace(true));
    let result = panic::catch_unwind(f);
    CAUGHT.with(|caught| caught.set(outer));
    result.map_err(|payload| message(&*payload))
}

/// [`catch`] for closures that borrow mutable state which is abandoned after a panic.
pub fn catch_mut<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch(AssertUnwindSafe(f))
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Logs every uncaught panic as one error line (text or JSON like every other line),
/// instead of the default multi-line report on stderr.
pub fn install_hook() {
    panic::set_hook(Box::new(|info| {
        if CAUGHT.with(Cell::get) {
            return;
        }
        let thread = std::thread::current();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            %location,
            panic = %crate::echo::sanitize(&message(info.payload()), 1024),
            "panic"
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors_with_their_message() {
        assert_eq!(catch(|| 7), Ok(7));
        assert_eq!(
            catch(|| panic!("boom {}", 1)),
            Err::<(), _>("boom 1".into())
        );
        let mut state = vec![1];
        let result = catch_mut(|| {
            state.push(2);
            panic!("static text")
        });
        assert_eq!(result, Err::<(), _>("static text".into()));
    }
}
