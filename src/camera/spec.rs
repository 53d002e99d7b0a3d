//! A camera as the pipeline sees it: its resolved source (RTSP or file) and fps.

use std::path::PathBuf;
use std::sync::Arc;

use url::Url;

use super::error::CameraError;
use super::rtsp::{self, RtspSource};
use crate::config::{CameraConfig, Config};

/// Where a camera's video comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Rtsp(RtspSource),
    /// A local mp4 or raw H.264/H.265 file, replayed at native pace, looping.
    File(PathBuf),
}

/// One camera, resolved from `cameras.toml`.
#[derive(Debug, Clone)]
pub struct CameraSpec {
    pub name: Arc<str>,
    pub source: Source,
    /// Frames per second handed to detection.
    pub fps: f64,
    /// Decode key frames only.
    pub key_frames_only: bool,
    /// Where in each sampling interval this camera's samples fall, a fraction in [0, 1):
    /// [`super::spread_sample_phases`] spreads a process's cameras over the interval.
    pub sample_phase: f64,
}

impl CameraSpec {
    /// Resolves a `[[group.camera]]` entry: `file://` paths against the config's directory,
    /// `rtsp://` URLs parsed and checked to carry no credentials.
    pub fn from_config(cam: &CameraConfig, config: &Config) -> Result<CameraSpec, CameraError> {
        let source = if let Some(path) = config.file_source_path(&cam.url) {
            Source::File(path)
        } else {
            let bad = |reason: &str| CameraError::BadUrl { camera: cam.name.clone(), reason: reason.into() };
            let url = Url::parse(&cam.url).map_err(|e| bad(&format!("not a URL ({e})")))?;
            if url.scheme() != "rtsp" {
                return Err(bad(&format!("scheme `{}` is neither rtsp nor file", url.scheme())));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(bad("credentials in the URL; use username_env / password_env"));
            }
            Source::Rtsp(RtspSource {
                url,
                transport: cam.transport,
                username_env: cam.username_env.clone(),
                password_env: cam.password_env.clone(),
            })
        };
        Ok(CameraSpec {
            name: cam.name.as_str().into(),
            source,
            fps: cam.fps,
            key_frames_only: cam.key_frames_only,
            sample_phase: 0.0,
        })
    }

    /// The source for logs: the URL without credentials, or the file path.
    pub fn describe_source(&self) -> String {
        match &self.source {
            Source::Rtsp(r) => rtsp::redact(&r.url),
            Source::File(p) => format!("file://{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(base: &Path) -> Config {
        let mut c = Config::default();
        c.base_dir = base.to_owned();
        c
    }

    fn cam(url: &str) -> CameraConfig {
        CameraConfig {
            name: "door".into(),
            url: url.into(),
            transport: Default::default(),
            fps: 2.0,
            key_frames_only: false,
            enabled: true,
            username_env: None,
            password_env: None,
        }
    }

    #[test]
    fn specs_from_config() {
        let c = config(Path::new("/etc/redeye"));
        let s = CameraSpec::from_config(&cam("file://clips/a.mp4"), &c).unwrap();
        assert!(matches!(&s.source, Source::File(p) if p == Path::new("/etc/redeye/clips/a.mp4")));
        let s = CameraSpec::from_config(&cam("rtsp://10.0.0.5:554/s1"), &c).unwrap();
        assert_eq!(s.describe_source(), "rtsp://10.0.0.5:554/s1");
        let e = CameraSpec::from_config(&cam("rtsp://u:secret@10.0.0.5/s1"), &c).unwrap_err().to_string();
        assert!(e.contains("username_env") && !e.contains("secret"), "{e}");
        let e = CameraSpec::from_config(&cam("http://x/y"), &c).unwrap_err().to_string();
        assert!(e.contains("door") && e.contains("http"), "{e}");
    }
}
