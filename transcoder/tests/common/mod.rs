//! Helpers shared by the transcoder's integration tests.

use std::path::Path;
use std::process::Command;

/// The average PSNR (dB) that ffmpeg's filter graph `lavfi` over `a` and `b` prints.
pub fn psnr_with(a: &Path, b: &Path, lavfi: &str) -> f64 {
    let out = Command::new("ffmpeg")
        .args([
            "-i",
            a.to_str().unwrap(),
            "-i",
            b.to_str().unwrap(),
            "-lavfi",
            lavfi,
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    let text = String::from_utf8_lossy(&out.stderr);
    let average = text
        .split("average:")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or("0");
    if average == "inf" {
        f64::INFINITY
    } else {
        average.parse().unwrap_or(0.0)
    }
}
