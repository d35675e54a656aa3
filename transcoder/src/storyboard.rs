//! Poster and storyboard images: JPEG encoding of grabbed frames, one sprite of
//! thumbnails, and the WebVTT file whose cues point into it with `#xywh=`.

use jpeg_encoder::{ColorType, Encoder};

use crate::pipeline::Frame;

pub const SPRITE_COLUMNS: usize = 10;
pub const SPRITE_NAME: &str = "storyboard.jpg";

pub fn jpeg(frame: &Frame, quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    Encoder::new(&mut out, quality)
        .encode(
            &frame.rgb,
            frame.width as u16,
            frame.height as u16,
            ColorType::Rgb,
        )
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Lays thumbnails (all the same size) left to right, top to bottom.
pub fn sprite(thumbs: &[Frame]) -> Option<Frame> {
    let first = thumbs.first()?;
    let (tw, th) = (first.width as usize, first.height as usize);
    let columns = SPRITE_COLUMNS.min(thumbs.len());
    let rows = thumbs.len().div_ceil(columns);
    let (w, h) = (tw * columns, th * rows);
    let mut rgb = vec![0u8; w * h * 3];
    for (i, t) in thumbs.iter().enumerate() {
        if t.width as usize != tw || t.height as usize != th {
            continue;
        }
        let (cx, cy) = ((i % columns) * tw, (i / columns) * th);
        for y in 0..th {
            let dst = ((cy + y) * w + cx) * 3;
            let src = y * tw * 3;
            rgb[dst..dst + tw * 3].copy_from_slice(&t.rgb[src..src + tw * 3]);
        }
    }
    Some(Frame {
        pts_secs: 0.0,
        width: w as u32,
        height: h as u32,
        rgb,
    })
}

fn vtt_time(secs: f64) -> String {
    let ms = (secs * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// WebVTT cues, one per thumbnail, covering the lecture up to `duration`.
pub fn vtt(thumbs: &[Frame], interval: f64, duration: f64) -> String {
    let mut out = String::from("WEBVTT\n");
    let Some(first) = thumbs.first() else {
        return out;
    };
    let (tw, th) = (first.width, first.height);
    let columns = SPRITE_COLUMNS.min(thumbs.len());
    for (i, t) in thumbs.iter().enumerate() {
        let start = t.pts_secs.max(i as f64 * interval).min(duration);
        let end = thumbs
            .get(i + 1)
            .map(|n| n.pts_secs)
            .unwrap_or(duration)
            .max(start + 0.001);
        let (x, y) = ((i % columns) as u32 * tw, (i / columns) as u32 * th);
        out.push_str(&format!(
            "\n{} --> {}\n{SPRITE_NAME}#xywh={x},{y},{tw},{th}\n",
            vtt_time(start),
            vtt_time(end)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thumb(pts: f64, shade: u8) -> Frame {
        Frame {
            pts_secs: pts,
            width: 4,
            height: 2,
            rgb: vec![shade; 4 * 2 * 3],
        }
    }

    #[test]
    fn sprite_places_thumbnails_in_a_grid() {
        let thumbs: Vec<Frame> = (0..12).map(|i| thumb(i as f64, i as u8 * 10)).collect();
        let s = sprite(&thumbs).unwrap();
        assert_eq!((s.width, s.height), (40, 4));
        // Thumbnail 11 sits in row 1, column 1.
        let px = ((2 * 40) + 4) * 3;
        assert_eq!(s.rgb[px], 110);
        assert!(!jpeg(&s, 80).unwrap().is_empty());
    }

    #[test]
    fn vtt_cues_point_into_the_sprite() {
        let thumbs: Vec<Frame> = (0..3).map(|i| thumb(i as f64 * 2.0, 0)).collect();
        let text = vtt(&thumbs, 2.0, 5.5);
        assert!(text.starts_with("WEBVTT\n"));
        assert!(text.contains("00:00:00.000 --> 00:00:02.000\nstoryboard.jpg#xywh=0,0,4,2\n"));
        assert!(text.contains("00:00:04.000 --> 00:00:05.500\nstoryboard.jpg#xywh=8,0,4,2\n"));
        assert_eq!(vtt(&[], 2.0, 5.0), "WEBVTT\n");
    }
}
