//! Loading ONNX Runtime and building sessions.
//!
//! `ort` is built with `load-dynamic`: the shared library is not linked but opened at run time,
//! because ort's default (downloading binaries from a CDN at build time) cannot work offline.
//! `scripts/setup.sh` puts a pinned `libonnxruntime.so` under `third_party/onnxruntime/`.
//!
//! We always go through [`ort::init_from`], which returns a `Result`; `ort::init()` (and any
//! ort call made before initialisation) panics when the library is missing. ONNX Runtime allows
//! one environment per process, so the first successful [`Runtime::init`] wins and later calls
//! return the same runtime whatever path they pass.
//!
//! # Threads
//! The environment owns one intra-op thread pool with a thread per core, shared by every session
//! that asks for that many threads (`intra_threads` = the number of cores, which is what
//! `[runtime] intra_threads = 0` means). Per-session pools are the default in ONNX Runtime, but
//! a pipeline has at least two sessions (detector, embedder) and each pool's idle threads spin
//! waiting for work, on the cores the other session needs: measured on 2 cores at 2 threads,
//! YuNet then SFace took 29 ms with a pool each and 13 ms with the shared one (15.5 ms with
//! per-session pools that do not spin). One shared pool also keeps several worker threads, each
//! with its own sessions, from multiplying the thread count past the core count. A session with
//! 1 thread runs on the caller's thread; any other count gets its own pool, spinning off unless
//! [`SessionOptions::intra_spinning`] says otherwise.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::{Environment, GlobalThreadPoolOptions};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use serde::{Deserialize, Serialize};

use super::VisionError;

/// Where the library is looked for when neither an explicit path nor `ORT_DYLIB_PATH` is given,
/// relative to the current directory (the repository root in development).
pub const DEFAULT_DYLIB: &str = "third_party/onnxruntime/libonnxruntime.so";

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// The process-wide ONNX Runtime: the loaded library and its single environment.
#[derive(Debug)]
pub struct Runtime {
    env: Environment,
    path: PathBuf,
    /// Threads of the environment's shared intra-op pool (the number of cores); 1 when there is
    /// no shared pool.
    shared_threads: usize,
}

impl Runtime {
    /// Loads ONNX Runtime once per process. The path is `explicit`, else `$ORT_DYLIB_PATH`, else
    /// [`DEFAULT_DYLIB`] relative to the current directory. Idempotent and thread-safe: once a
    /// runtime is loaded it is returned as is.
    pub fn init(explicit: Option<&Path>) -> Result<&'static Runtime, VisionError> {
        if let Some(rt) = RUNTIME.get() {
            return Ok(rt);
        }
        // Serialise first loads so that two threads do not both try to build an environment
        // (the second would fail with "only one environment is allowed per process").
        let _guard = INIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rt) = RUNTIME.get() {
            return Ok(rt);
        }
        let (path, origin) = resolve_path(explicit);
        let rt = load(&path, origin)?;
        Ok(RUNTIME.get_or_init(|| rt))
    }

    /// The library file that was loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size of the shared intra-op thread pool: sessions with this many `intra_threads` run
    /// on it (see the module doc). 1 when there is none (one core).
    pub fn shared_threads(&self) -> usize {
        self.shared_threads
    }

    /// Builds a session for `model`. A missing file or a model ONNX Runtime rejects is a
    /// [`VisionError::ModelLoad`] naming the file.
    pub fn session(&self, model: &Path, opts: &SessionOptions) -> Result<Session, VisionError> {
        let fail = |reason: String| VisionError::ModelLoad { model: model.to_path_buf(), reason };
        if !model.is_file() {
            return Err(fail("file not found (run scripts/setup.sh, or check the path)".into()));
        }
        if opts.rewrite_prelu
            && let Some(bytes) = rewritten_prelu(model)
        {
            match self.session_from_memory(model, &bytes, opts) {
                Ok(session) => return Ok(session),
                // Never worse than without the rewrite: fall back to the file as it is.
                Err(e) => tracing::warn!(
                    error = %e,
                    "ONNX Runtime refused the model with its PRelu nodes rewritten; loading it unchanged"
                ),
            }
        }
        self.builder(opts).and_then(|mut b| b.commit_from_file(model)).map_err(|e| fail(e.to_string()))
    }

    /// Builds a session from model bytes; `model` names them in errors.
    pub(crate) fn session_from_memory(
        &self,
        model: &Path,
        bytes: &[u8],
        opts: &SessionOptions,
    ) -> Result<Session, VisionError> {
        self.builder(opts)
            .and_then(|mut b| b.commit_from_memory(bytes))
            .map_err(|e| VisionError::ModelLoad { model: model.to_path_buf(), reason: e.to_string() })
    }

    fn builder(&self, opts: &SessionOptions) -> ort::Result<SessionBuilder> {
        let threads = opts.intra_threads.max(1);
        let b = Session::builder(&self.env)?.with_optimization_level(opts.opt_level.into())?;
        if threads > 1 && threads == self.shared_threads {
            return Ok(b);
        }
        Ok(b.with_independent_thread_pool()?
            .with_intra_threads(threads)?
            .with_intra_op_spinning(opts.intra_spinning)?)
    }
}

/// The model with its PRelu nodes rewritten (see [`super::prelu`]), or `None` when it has none
/// the rewrite handles or cannot be read (the caller then loads the file, which reports errors).
fn rewritten_prelu(model: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(model).ok()?;
    match super::prelu::rewrite_prelu(&bytes) {
        Ok(rewritten) => rewritten,
        Err(e) => {
            tracing::debug!(model = %model.display(), error = %e, "not rewriting PRelu nodes");
            None
        }
    }
}

/// Per-session settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionOptions {
    /// Threads ONNX Runtime uses inside one operator. Default 1: we scale by running one session
    /// per worker thread, and several sessions each spinning many threads fight over the cores.
    /// The number of cores means the process-wide pool shared by all such sessions (see the
    /// module doc).
    #[serde(default = "default_intra_threads")]
    pub intra_threads: usize,
    /// Graph optimisation level. Default `all`.
    #[serde(default)]
    pub opt_level: OptLevel,
    /// Rewrite PRelu nodes into BatchNormalization + Relu + Add before loading (same outputs;
    /// ONNX Runtime's own PRelu is slow, see [`super::prelu`]). Default true: SFace runs twice
    /// as fast. Models without PRelu load unchanged either way.
    #[serde(default = "default_rewrite_prelu")]
    pub rewrite_prelu: bool,
    /// Let the idle threads of a session's own pool (`intra_threads` other than 1 and the number
    /// of cores) spin for more work instead of sleeping. Default false: spinning threads take
    /// the cores other sessions need (the shared pool does spin: it has no rival).
    #[serde(default)]
    pub intra_spinning: bool,
}

fn default_rewrite_prelu() -> bool {
    true
}

fn default_intra_threads() -> usize {
    1
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            intra_threads: default_intra_threads(),
            opt_level: OptLevel::default(),
            rewrite_prelu: default_rewrite_prelu(),
            intra_spinning: false,
        }
    }
}

/// ONNX Runtime graph optimisation level (our own enum so that it can live in config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptLevel {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

impl From<OptLevel> for GraphOptimizationLevel {
    fn from(l: OptLevel) -> Self {
        match l {
            OptLevel::Disable => GraphOptimizationLevel::Disable,
            OptLevel::Basic => GraphOptimizationLevel::Level1,
            OptLevel::Extended => GraphOptimizationLevel::Level2,
            OptLevel::All => GraphOptimizationLevel::All,
        }
    }
}

/// The path to try and a words-for-humans note on where it came from.
fn resolve_path(explicit: Option<&Path>) -> (PathBuf, &'static str) {
    let (p, origin) = match explicit {
        Some(p) => (p.to_path_buf(), "given explicitly"),
        None => match std::env::var_os("ORT_DYLIB_PATH") {
            Some(v) if !v.is_empty() => (PathBuf::from(v), "from ORT_DYLIB_PATH"),
            _ => (PathBuf::from(DEFAULT_DYLIB), "the default location"),
        },
    };
    // ort resolves relative paths against the executable's directory first; make it absolute
    // against the current directory so that the error names the file really tried.
    let abs = if p.is_relative() { std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p) } else { p };
    (abs, origin)
}

fn load(path: &Path, origin: &str) -> Result<Runtime, VisionError> {
    let fail = |reason: String| VisionError::Runtime {
        path: path.to_path_buf(),
        reason: format!("{reason} (path {origin})"),
    };
    check_library_file(path).map_err(fail)?;
    let mut builder =
        ort::init_from(path).map_err(|e| fail(e.to_string()))?.with_name("redeye").with_telemetry(false);
    let shared_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if shared_threads > 1 {
        // Spinning on: this pool's idle threads have no other pool to compete with. One inter-op
        // thread: sessions run their graphs sequentially.
        let pool = GlobalThreadPoolOptions::default()
            .with_intra_threads(shared_threads)
            .and_then(|p| p.with_inter_threads(1))
            .and_then(|p| p.with_spin_control(true))
            .map_err(|e| fail(format!("cannot configure the shared thread pool: {e}")))?;
        builder = builder.with_global_thread_pool(pool);
    }
    let env = builder.build().map_err(|e| fail(format!("cannot create the environment: {e}")))?;
    tracing::info!(path = %path.display(), shared_threads, "Loaded ONNX Runtime.");
    Ok(Runtime { env, path: path.to_path_buf(), shared_threads })
}

/// Cheap checks before handing the file to the dynamic loader: once a library is loaded, ort
/// ignores later paths, so only these checks can reject a bad file deterministically.
fn check_library_file(path: &Path) -> Result<(), String> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "file not found".to_string(),
        _ => format!("cannot open: {e}"),
    })?;
    if cfg!(target_os = "linux") {
        use std::io::Read;
        let is_elf = f.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF";
        if !is_elf {
            return Err("not a shared library (no ELF header)".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope/libonnxruntime.so");
        let err = load(&p, "given explicitly").unwrap_err().to_string();
        assert!(err.contains(&*p.to_string_lossy()), "{err}");
        assert!(err.contains("file not found") && err.contains("scripts/setup.sh"), "{err}");
    }

    #[test]
    fn text_file_is_not_a_library() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("libonnxruntime.so");
        std::fs::write(&p, "this is not a library\n").unwrap();
        let err = load(&p, "from ORT_DYLIB_PATH").unwrap_err().to_string();
        assert!(err.contains("no ELF header") && err.contains("ORT_DYLIB_PATH"), "{err}");
    }

    #[test]
    fn relative_paths_are_made_absolute() {
        let (p, origin) = resolve_path(Some(Path::new("x/lib.so")));
        assert!(p.is_absolute() && p.ends_with("x/lib.so"));
        assert_eq!(origin, "given explicitly");
    }

    #[test]
    fn opt_level_parses_from_config() {
        #[derive(Deserialize)]
        struct W {
            s: SessionOptions,
        }
        let w: W = serde_json::from_str(r#"{"s":{"opt_level":"basic"}}"#).unwrap();
        assert_eq!(w.s, SessionOptions { opt_level: OptLevel::Basic, ..SessionOptions::default() });
    }
}
