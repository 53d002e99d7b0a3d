//! Logging: a tracing subscriber configured from the environment.
//!
//! - `REDEYE_LOG` is an `EnvFilter` directive (default `info`), e.g. `redeye=debug,retina=info`.
//! - `REDEYE_FORMAT=json` switches to one JSON object per line (for log shippers).
//!
//! A panic hook logs the panic through tracing as well, so it lands in the same sink as the logs.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init() {
    let filter = EnvFilter::try_from_env("REDEYE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("REDEYE_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    if installed.is_ok() {
        install_panic_hook();
    }
}

/// For tests: logs go to the test harness's captured output.
pub fn install_for_tests() {
    let filter = EnvFilter::try_from_env("REDEYE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

fn install_panic_hook() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        tracing::error!(thread = thread.name().unwrap_or("unnamed"), panic = %info, "Panic.");
        default_hook(info);
    }));
}
