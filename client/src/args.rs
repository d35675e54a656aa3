//! The command line of `lectern upload`, and how it signs in.

use std::path::PathBuf;

use lectern_seams::ids::CourseId;
use reqwest::Url;

use crate::api::ClientError;

/// `lectern upload --server URL --course ID FILES…`
#[derive(clap::Args, Debug, Clone)]
#[command(
    next_help_heading = "Upload options",
    after_help = "Run it again after an interruption: it resumes each file where the \
                  server has it. Exit status: 0 every lecture ready (or uploaded, with \
                  --no-wait); 1 a file refused, a lecture failed or the run stopped; 2 a usage \
                  error; 3 not signed in or not allowed; 130 interrupted.\n\n\
                  Example: LECTERN_PASSWORD=... lectern upload --server https://lectures.example.edu \
                  --course 0b9e8c7a-1d2f-4e3a-9b8c-7d6e5f4a3b2c --email me@example.edu ./week-1/"
)]
pub struct UploadArgs {
    /// Lectern's address, e.g. https://lectures.example.edu.
    #[arg(long, env = "LECTERN_SERVER", value_name = "URL", value_parser = parse_server)]
    pub server: Url,
    /// The course's id (from its address in the web app, or the API).
    #[arg(long, value_name = "ID", value_parser = parse_course)]
    pub course: CourseId,
    /// Video or audio files, or folders of them (a folder's hidden and non-media files are
    /// skipped).
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// An access token of the course's owner (instead of --email).
    #[arg(
        long,
        env = "LECTERN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Signs in as this owner. The password is read from LECTERN_PASSWORD, else from
    /// --password-file, else asked for on the terminal.
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,
    /// A file holding the password (its first line).
    #[arg(long, value_name = "FILE", requires = "email")]
    pub password_file: Option<PathBuf>,
    /// One JSON object per line on stdout (events: created, reused, uploading, progress,
    /// uploaded, skipped, status, ready, failed, error, summary) and no bars.
    #[arg(long)]
    pub json: bool,
    /// Stops once every file is uploaded, without following the transcoding.
    #[arg(long)]
    pub no_wait: bool,
    /// Sends at most this many bytes a second (suffixes K, M, G: 1024-based), e.g. 2M.
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = parse_size)]
    pub limit_rate: Option<u64>,
    /// Bytes per request; an interruption costs at most one chunk.
    #[arg(long, value_name = "BYTES", default_value = "8M", value_parser = parse_size)]
    pub chunk_size: u64,
    /// The resume journal [default: $XDG_STATE_HOME/lectern/uploads.json, else
    /// ~/.local/state/lectern/uploads.json].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// How a lecture is titled: the file's name without its extension (`stem`), the same
    /// with `_` and `-` as spaces as the web app does (`tidy`), or the whole name
    /// (`filename`).
    #[arg(long, value_enum, default_value_t = TitleFrom::Stem)]
    pub title_from: TitleFrom,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TitleFrom {
    Stem,
    Tidy,
    Filename,
}

/// How the client proves who it is.
#[derive(Clone)]
pub enum Credentials {
    Token(String),
    Password { email: String, password: String },
}

impl UploadArgs {
    /// --email (with its password) wins over a token, which may come from the
    /// environment.
    pub fn credentials(&self) -> Result<Credentials, ClientError> {
        if let Some(email) = &self.email {
            return Ok(Credentials::Password {
                email: email.clone(),
                password: self.password()?,
            });
        }
        match &self.token {
            Some(t) if !t.trim().is_empty() => Ok(Credentials::Token(t.trim().to_string())),
            _ => Err(ClientError::Usage(
                "sign in with --email (password from LECTERN_PASSWORD, --password-file or \
                 the prompt) or --token / LECTERN_TOKEN"
                    .into(),
            )),
        }
    }

    fn password(&self) -> Result<String, ClientError> {
        if let Ok(p) = std::env::var("LECTERN_PASSWORD") {
            return Ok(p);
        }
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
            return Ok(text.lines().next().unwrap_or_default().to_string());
        }
        let term = console::Term::stderr();
        if !term.is_term() {
            return Err(ClientError::Usage(
                "no password: set LECTERN_PASSWORD or --password-file".into(),
            ));
        }
        let _ = term.write_str(&format!(
            "Password for {}: ",
            self.email.as_deref().unwrap_or("")
        ));
        let password = term.read_secure_line();
        let _ = term.write_line("");
        password.map_err(|e| ClientError::Usage(format!("reading the password: {e}")))
    }
}

fn parse_server(text: &str) -> Result<Url, String> {
    let mut url = Url::parse(text.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("the server's address must be http:// or https://HOST".into());
    }
    // A base to join API paths onto, keeping a path prefix (https://host/lectern/).
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

fn parse_course(text: &str) -> Result<CourseId, String> {
    CourseId::parse(text.trim()).ok_or_else(|| "a course id is a lowercase UUID".into())
}

/// A byte count: digits with an optional 1024-based suffix (K, M, G, with or without
/// "iB"/"B"), as curl's --limit-rate reads it.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{t:?} is not a byte count such as 524288, 512K or 2M"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown unit {other:?} (K, M or G)")),
    };
    match number.checked_mul(1 << shift) {
        Some(0) | None => Err(format!("{t:?} must be above 0 and below 2^64")),
        Some(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_curls() {
        assert_eq!(parse_size("524288"), Ok(524_288));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size(" 2m "), Ok(2 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        for bad in ["", "0", "K", "1.5M", "12X", "-3", "99999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_server_keeps_its_path_prefix_as_a_base() {
        let url = parse_server("https://example.edu/lectern?x=1").unwrap();
        assert_eq!(
            url.join("api/uploads").unwrap().as_str(),
            "https://example.edu/lectern/api/uploads"
        );
        assert!(parse_server("ftp://example.edu").is_err());
        assert!(parse_server("example.edu").is_err());
    }
}
