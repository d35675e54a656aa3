//! The files to upload: folders expanded in natural order, each file checked and named
//! before anything is sent.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::api::ClientError;
use crate::args::TitleFrom;

/// Extensions taken from a folder: the containers Lectern accepts (docs/api.md), video
/// and audio. A file named on the command line is sent whatever its name.
const MEDIA: &[&str] = &[
    "mp4", "m4v", "mov", "3gp", "mkv", "webm", "avi", "wmv", "asf", "flv", "ts", "mts", "m2ts",
    "mpg", "mpeg", "vob", "ogv", "ogg", "oga", "opus", "rm", "rmvb", "dv", "mp3", "m4a", "aac",
    "wav", "aif", "aiff", "flac",
];

/// Longest title the catalog takes.
const TITLE_MAX_CHARS: usize = 200;

/// One file to upload, as found on disk.
#[derive(Debug, Clone)]
pub struct Source {
    /// As the user named it (or the folder joined with the name), for messages.
    pub shown: String,
    /// Canonical, for the journal.
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch, for the journal.
    pub modified_ns: u128,
    pub title: String,
    pub filetype: &'static str,
}

/// The files the arguments name, in order: a folder's media files in natural order.
pub fn collect(args: &[PathBuf], title_from: TitleFrom) -> Result<Vec<Source>, ClientError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for arg in args {
        for path in expand(arg)? {
            let source = describe(&path, title_from)?;
            if !seen.insert(source.path.clone()) {
                return Err(ClientError::Usage(format!(
                    "{} is named twice",
                    source.shown
                )));
            }
            out.push(source);
        }
    }
    Ok(out)
}

fn expand(arg: &Path) -> Result<Vec<PathBuf>, ClientError> {
    let unreadable = |e: std::io::Error| ClientError::Usage(format!("{}: {e}", arg.display()));
    if !arg.metadata().map_err(unreadable)?.is_dir() {
        return Ok(vec![arg.to_path_buf()]);
    }
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(arg).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && is_media(&name) && entry.path().is_file() {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(ClientError::Usage(format!(
            "{} holds no video or audio files",
            arg.display()
        )));
    }
    names.sort_by(|a, b| natural_cmp(a, b));
    Ok(names.into_iter().map(|n| arg.join(n)).collect())
}

fn describe(path: &Path, title_from: TitleFrom) -> Result<Source, ClientError> {
    let shown = path.display().to_string();
    let fail = |e: std::io::Error| ClientError::Usage(format!("{shown}: {e}"));
    let meta = std::fs::metadata(path).map_err(fail)?;
    if !meta.is_file() {
        return Err(ClientError::Usage(format!("{shown} is not a file")));
    }
    if meta.len() == 0 {
        return Err(ClientError::Usage(format!("{shown} is empty")));
    }
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| shown.clone());
    Ok(Source {
        path: path.canonicalize().map_err(fail)?,
        title: title(&name, title_from),
        filetype: filetype(&name),
        size: meta.len(),
        modified_ns,
        name,
        shown,
    })
}

fn extension(name: &str) -> String {
    Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

fn is_media(name: &str) -> bool {
    MEDIA.contains(&extension(name).as_str())
}

/// The lecture's title for a file name.
pub fn title(name: &str, from: TitleFrom) -> String {
    let stem = Path::new(name)
        .file_stem()
        .map_or_else(|| name.to_string(), |s| s.to_string_lossy().into_owned());
    let title = match from {
        TitleFrom::Filename => name.to_string(),
        TitleFrom::Stem => stem,
        TitleFrom::Tidy => stem
            .split(['_', '-'])
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let title = title.trim();
    let title = if title.is_empty() { name.trim() } else { title };
    title.chars().take(TITLE_MAX_CHARS).collect()
}

/// The MIME type tus clients send as `filetype` (kept by the server; the file's own
/// bytes decide what it is).
fn filetype(name: &str) -> &'static str {
    match extension(name).as_str() {
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "avi" => "video/x-msvideo",
        "wmv" | "asf" => "video/x-ms-asf",
        "flv" => "video/x-flv",
        "ts" | "mts" | "m2ts" => "video/mp2t",
        "mpg" | "mpeg" | "vob" => "video/mpeg",
        "ogv" => "video/ogg",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "m4a" | "aac" => "audio/mp4",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        _ => "application/octet-stream",
    }
}

/// Names compared as people read them: runs of digits by their value ("2" < "10"),
/// the rest without regard to case; equal names by their bytes.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a, b);
    loop {
        match (x.is_empty(), y.is_empty()) {
            (true, true) => return a.cmp(b),
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let (px, rx) = split_run(x);
        let (py, ry) = split_run(y);
        let order = compare_runs(px, py);
        if order != Ordering::Equal {
            return order;
        }
        (x, y) = (rx, ry);
    }
}

/// The leading run of digits or of non-digits, and the rest.
fn split_run(s: &str) -> (&str, &str) {
    let digit = s.starts_with(|c: char| c.is_ascii_digit());
    let end = s
        .find(|c: char| c.is_ascii_digit() != digit)
        .unwrap_or(s.len());
    s.split_at(end)
}

fn compare_runs(x: &str, y: &str) -> Ordering {
    let numeric = |s: &str| s.starts_with(|c: char| c.is_ascii_digit());
    if numeric(x) && numeric(y) {
        let (tx, ty) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
        return tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty));
    }
    x.to_lowercase().cmp(&y.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_reads_numbers_as_numbers() {
        let mut names = vec![
            "lecture 10.mp4",
            "Lecture 2.mp4",
            "lecture 1.mp4",
            "intro.mp4",
            "lecture 02b.mp4",
            "lecture 9.mkv",
            "lecture 100000000000000000000001.mp4",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "intro.mp4",
                "lecture 1.mp4",
                "Lecture 2.mp4",
                "lecture 02b.mp4",
                "lecture 9.mkv",
                "lecture 10.mp4",
                "lecture 100000000000000000000001.mp4",
            ]
        );
    }

    #[test]
    fn titles_from_names() {
        assert_eq!(title("week_1-intro.mp4", TitleFrom::Stem), "week_1-intro");
        assert_eq!(title("week_1-intro.mp4", TitleFrom::Tidy), "week 1 intro");
        assert_eq!(
            title("week_1-intro.mp4", TitleFrom::Filename),
            "week_1-intro.mp4"
        );
        assert_eq!(title("a.tar.mkv", TitleFrom::Stem), "a.tar");
        assert_eq!(
            title(&"x".repeat(300), TitleFrom::Stem).chars().count(),
            200
        );
    }

    #[test]
    fn a_folder_gives_its_media_files_in_natural_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "lecture 10.mp4",
            "lecture 2.webm",
            ".lecture 1.mp4",
            "notes.pdf",
        ] {
            std::fs::write(dir.path().join(name), b"bytes").unwrap();
        }
        std::fs::create_dir(dir.path().join("lecture 3.mp4")).unwrap();
        let found = collect(&[dir.path().to_path_buf()], TitleFrom::Stem).unwrap();
        let titles: Vec<_> = found.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["lecture 2", "lecture 10"]);
        assert_eq!(found[0].filetype, "video/webm");
        let twice = [
            dir.path().join("lecture 2.webm"),
            dir.path().join("lecture 2.webm"),
        ];
        assert!(matches!(
            collect(&twice, TitleFrom::Stem),
            Err(ClientError::Usage(_))
        ));
    }
}
