//! `redeye check-config`: parse and validate `cameras.toml`, print a summary or every problem.

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::bus::redact_url;
use crate::config::{Config, REDIS_URL_ENV};

use super::CommonArgs;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(common: &CommonArgs, _args: Args) -> anyhow::Result<ExitCode> {
    match Config::load(&common.config) {
        Ok(config) => {
            for warning in config.warnings() {
                eprintln!("warning: {warning}");
            }
            print!("{}", summary(&config));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What the configuration sets up, for an operator to eyeball.
pub fn summary(config: &Config) -> String {
    let mut out = String::new();
    let r = &config.redis;
    let _ = writeln!(out, "{}: ok", config.source.display());
    let override_url = std::env::var(REDIS_URL_ENV).ok().filter(|u| !u.is_empty());
    let topology = match &override_url {
        Some(url) => format!("one node {} (from {REDIS_URL_ENV}, overriding the file)", redact_url(url)),
        None => config.topology_description(),
    };
    let _ = writeln!(out, "redis: {topology}");
    let _ = writeln!(
        out,
        "  keys: prefix `{}`, cache `{}:<md5>` for {} s, events on `{}`; streams capped at ~{} faces, \
         ~{} dead letters, ~{} events",
        r.key_prefix,
        r.image_key_prefix,
        r.cache_ttl_secs,
        config.event_channel(),
        r.faces_stream_maxlen,
        r.dead_stream_maxlen,
        r.events_stream_maxlen
    );
    let cameras: usize = config.groups.iter().map(|g| g.cameras.len()).sum();
    let enabled: usize = config.groups.iter().map(|g| config.enabled_cameras(g).count()).sum();
    let _ = writeln!(out, "groups: {} with {cameras} cameras ({enabled} enabled)", config.groups.len());
    for group in &config.groups {
        let node = match (&override_url, &group.node) {
            (None, Some(node)) => format!("node {node}"),
            _ => "the shared Redis".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {}: {} cameras on {node}, stream {}:{{{}}}:faces, {} detect thread(s)",
            group.name,
            group.cameras.len(),
            r.key_prefix,
            group.name,
            group.detect_threads
        );
        for camera in &group.cameras {
            let mode = if camera.key_frames_only { ", key frames only" } else { "" };
            let state = if camera.enabled { "" } else { " (disabled)" };
            let _ = writeln!(
                out,
                "    {}: {} over {}, {} fps{mode}{state}",
                camera.name,
                camera.url,
                camera.transport.as_str(),
                camera.fps
            );
        }
    }
    let policy = config.match_policy();
    let _ = writeln!(
        out,
        "detector: {} (score >= {}, NMS {}, {}x{})",
        config.detector.model.display(),
        config.detector.score_threshold,
        config.detector.nms_threshold,
        config.detector.input_size,
        config.detector.input_size
    );
    let _ = writeln!(
        out,
        "recognizer: {} `{}` ({}-d, batch up to {}); match when cosine >= {} and {} ahead of the next person",
        config.recognizer.model.display(),
        config.recognizer.id,
        config.recognizer.dim,
        config.recognizer.max_batch,
        policy.threshold,
        policy.margin
    );
    let _ = writeln!(out, "onnxruntime: {}", config.runtime.onnxruntime.display());
    let _ = writeln!(out, "admin: http://{}/metrics", config.admin.listen);
    out
}
