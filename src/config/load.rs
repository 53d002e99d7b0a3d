//! Reading `cameras.toml` and pointing every problem at its line and column.
//!
//! Why not `#[serde(deny_unknown_fields)]`: serde stops at the first unknown key, so a file with a
//! misspelled key *and* a duplicate camera would need two edit-run cycles. Instead the file is
//! deserialised through `serde_ignored`, which collects every key no struct consumed; those become
//! problems next to the semantic ones from `validate`, all reported at once. Wrong types and TOML
//! syntax errors still stop parsing (there is no value to validate), and toml already reports them
//! with line, column and a caret.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Config;

/// One step of a path into the document: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A problem found in the file, located by its path (e.g. `group[1].camera[0].url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: Vec<Seg>,
    pub message: String,
    /// Point at the key itself rather than its value (unknown keys).
    pub at_key: bool,
}

impl Problem {
    pub fn new(path: Vec<Seg>, message: impl Into<String>) -> Problem {
        Problem { path, message: message.into(), at_key: false }
    }
}

/// A problem with its place in the file.
#[derive(Debug, Clone)]
pub struct LocatedProblem {
    pub line: usize,
    pub column: usize,
    /// Dotted path, e.g. `group[1].camera[0].url`.
    pub path: String,
    pub message: String,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// TOML syntax error or a wrong type; the message carries line, column and a caret.
    #[error("{}: {message}\n(the commented example cameras.toml documents every key)", path.display())]
    Parse { path: PathBuf, message: String },
    /// Unknown keys and semantic problems, all of them.
    #[error("{}", render_invalid(path, problems))]
    Invalid { path: PathBuf, problems: Vec<LocatedProblem> },
}

fn render_invalid(path: &Path, problems: &[LocatedProblem]) -> String {
    let mut out = format!(
        "{} has {} problem{}:",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str(&format!("\n  {}:{}:{}: {}: {}", path.display(), p.line, p.column, p.path, p.message));
    }
    out
}

pub(super) fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
    from_str(&text, path, &base_dir)
}

/// Parses `text` as if read from `path`; relative paths resolve against `base_dir`.
pub fn from_str(text: &str, path: &Path, base_dir: &Path) -> Result<Config, ConfigError> {
    let parse_error =
        |e: toml::de::Error| ConfigError::Parse { path: path.to_owned(), message: e.to_string() };
    let deserializer = toml::Deserializer::parse(text).map_err(parse_error)?;
    let mut unknown = Vec::new();
    let mut config: Config =
        serde_ignored::deserialize(deserializer, |p| unknown.push(path_of(&p))).map_err(parse_error)?;
    config.source = path.to_owned();
    config.base_dir = base_dir.to_owned();
    config.text = text.to_owned();
    config.unknown_keys = unknown
        .into_iter()
        .map(|path| {
            let key = match path.last() {
                Some(Seg::Key(k)) => k.clone(),
                _ => String::new(),
            };
            Problem { path, message: format!("unknown key `{key}`"), at_key: true }
        })
        .collect();
    config.resolve_paths();
    Ok(config)
}

/// Turns serde_ignored's path into ours. serde_ignored calls sequence elements `Seq`.
fn path_of(p: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path as P;
    let mut segs = match p {
        P::Root => return Vec::new(),
        P::Seq { parent, .. }
        | P::Map { parent, .. }
        | P::Some { parent }
        | P::NewtypeStruct { parent }
        | P::NewtypeVariant { parent } => path_of(parent),
    };
    match p {
        P::Seq { index, .. } => segs.push(Seg::Index(*index)),
        P::Map { key, .. } => segs.push(Seg::Key(key.clone())),
        _ => {}
    }
    segs
}

/// Attaches line and column to each problem by walking the spanned document.
pub(super) fn locate_problems(config: &Config, problems: Vec<Problem>) -> ConfigError {
    // The text parsed once already, so this cannot fail; an empty table is a safe fallback.
    let doc = DeTable::parse(&config.text).ok();
    let mut located: Vec<LocatedProblem> = problems
        .into_iter()
        .map(|p| {
            let offset = doc.as_ref().map_or(0, |d| span_of(d, &p.path, p.at_key).start);
            let (line, column) = line_col(&config.text, offset);
            LocatedProblem { line, column, path: display_path(&p.path), message: p.message }
        })
        .collect();
    located.sort_by_key(|p| (p.line, p.column));
    ConfigError::Invalid { path: config.source.clone(), problems: located }
}

/// The span of the deepest part of `path` that exists in the document: a problem about a
/// missing key points at the table that lacks it.
fn span_of(doc: &Spanned<DeTable<'_>>, path: &[Seg], at_key: bool) -> Range<usize> {
    let mut span = 0..0;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
    for seg in path {
        let value: &Spanned<DeValue<'_>> = match (seg, table, array) {
            (Seg::Key(k), Some(t), _) => match t.get_key_value(k.as_str()) {
                Some((key, value)) => {
                    span = if at_key { key.span() } else { value.span() };
                    value
                }
                None => break,
            },
            (Seg::Index(i), _, Some(a)) => match a.get(*i) {
                Some(value) => {
                    span = value.span();
                    value
                }
                None => break,
            },
            _ => break,
        };
        table = None;
        array = None;
        match value.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a.as_ref()),
            _ => {}
        }
    }
    span
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() { "(top level)".into() } else { out }
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seg::Key(k) => f.write_str(k),
            Seg::Index(i) => write!(f, "[{i}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 9), (2, 4));
    }

    #[test]
    fn spans_follow_arrays_of_tables() {
        let text = "[[group]]\nname = \"a\"\n\n[[group]]\nname = \"b\"\n[[group.camera]]\nname = \"x\"\n";
        let doc = DeTable::parse(text).unwrap();
        let path = [
            Seg::Key("group".into()),
            Seg::Index(1),
            Seg::Key("camera".into()),
            Seg::Index(0),
            Seg::Key("name".into()),
        ];
        let (line, _) = line_col(text, span_of(&doc, &path, false).start);
        assert_eq!(line, 7);
        // A key that does not exist points at the deepest table that does.
        let missing = [Seg::Key("group".into()), Seg::Index(1), Seg::Key("node".into())];
        let (line, _) = line_col(text, span_of(&doc, &missing, false).start);
        assert!(line >= 4, "points into the second group, got line {line}");
    }

    #[test]
    fn paths_print_like_toml() {
        let path = [
            Seg::Key("group".into()),
            Seg::Index(2),
            Seg::Key("camera".into()),
            Seg::Index(0),
            Seg::Key("url".into()),
        ];
        assert_eq!(display_path(&path), "group[2].camera[0].url");
    }
}
