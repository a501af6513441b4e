//! Stopping a dataset write cleanly on SIGINT or SIGTERM.
//!
//! While a [`SignalGuard`] is alive, either signal sets a flag instead of
//! ending the process. The long loops of `convert` and `simulate` poll
//! [`check`], which then fails with an "interrupted" error, and their usual
//! failure path removes the partial shards, the temporary files and the
//! in-progress marker. A second signal ends the process at once, as it would
//! without the guard (the marker then lets the next run recognise the
//! partial folder). The handlers are `signal-hook`'s.
//!
//! Guards nest (conversions may run concurrently in one process, as in the
//! tests): the first registers the handlers, the last unregisters them.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};

/// The signal caught since the first live guard was made; 0 when none.
fn caught_flag() -> &'static Arc<AtomicUsize> {
    static CAUGHT: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    CAUGHT.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

struct Installed {
    guards: usize,
    ids: Vec<signal_hook::SigId>,
}

static STATE: Mutex<Installed> = Mutex::new(Installed {
    guards: 0,
    ids: Vec::new(),
});

/// Catches SIGINT and SIGTERM while it lives (see the module docs).
#[must_use = "signals are caught only while the guard lives"]
pub struct SignalGuard(());

/// Catch SIGINT and SIGTERM until the returned guard is dropped.
pub fn catch_signals() -> SignalGuard {
    let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if st.guards == 0 {
        caught_flag().store(0, Ordering::SeqCst);
        st.ids = register();
    }
    st.guards += 1;
    SignalGuard(())
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
        st.guards -= 1;
        if st.guards == 0 {
            for id in st.ids.drain(..) {
                signal_hook::low_level::unregister(id);
            }
            caught_flag().store(0, Ordering::SeqCst);
        }
    }
}

/// The signal caught, if any, while a guard lives.
pub fn caught() -> Option<i32> {
    match caught_flag().load(Ordering::Relaxed) {
        0 => None,
        s => Some(s as i32),
    }
}

/// An "interrupted" error once SIGINT or SIGTERM has been caught.
pub fn check() -> Result<()> {
    match caught() {
        None => Ok(()),
        Some(sig) => Err(Error::Invalid(format!(
            "interrupted by {}; the partial output was removed",
            signal_name(sig)
        ))),
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        signal_hook::consts::SIGINT => "SIGINT".into(),
        signal_hook::consts::SIGTERM => "SIGTERM".into(),
        _ => format!("signal {sig}"),
    }
}

/// For each signal: a second one (the flag already set) takes the default
/// action, the first sets the flag to the signal's number.
fn register() -> Vec<signal_hook::SigId> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let mut ids = Vec::new();
    for sig in [SIGINT, SIGTERM] {
        let flag = caught_flag().clone();
        let as_bool = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The conditional default runs first (handlers run in registration
        // order), so it sees the flag as the previous signal left it.
        if let Ok(id) = flag::register_conditional_default(sig, as_bool.clone()) {
            ids.push(id);
        }
        if let Ok(id) = flag::register(sig, as_bool) {
            ids.push(id);
        }
        if let Ok(id) = flag::register_usize(sig, flag, sig as usize) {
            ids.push(id);
        }
    }
    ids
}
