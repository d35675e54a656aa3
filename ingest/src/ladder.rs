//! The H.264 ladder a source gets: the standard rungs that do not exceed it, plus a
//! top rung at its own size when it sits between rungs, so no quality is thrown away.
//! Rungs are named by the picture's short side, so portrait phone video gets the same
//! ladder as landscape.

use lectern_seams::messages::{Rung, SourceFacts};

/// (short side, video kbps), highest first.
pub const STANDARD_RUNGS: [(u32, u32); 5] = [
    (1080, 5000),
    (720, 2800),
    (480, 1400),
    (360, 800),
    (240, 400),
];

fn even(x: f64) -> u32 {
    ((x / 2.0).round() as u32 * 2).max(2)
}

/// The rungs for a source of this displayed size, highest first.
pub fn ladder_for(source: &SourceFacts) -> Vec<Rung> {
    let (w, h) = (source.width.max(2), source.height.max(2));
    let short = w.min(h);
    let landscape = w >= h;
    let aspect = w as f64 / h as f64;
    let size_for = |side: u32| -> (u32, u32) {
        if landscape {
            (even(side as f64 * aspect), even(side as f64))
        } else {
            (even(side as f64), even(side as f64 / aspect))
        }
    };
    let mut rungs: Vec<(u32, u32)> = STANDARD_RUNGS
        .iter()
        .copied()
        .filter(|(side, _)| *side <= short)
        .collect();
    let top_standard = STANDARD_RUNGS[0].0;
    let own_side = short.min(top_standard) / 2 * 2;
    if rungs.first().map(|(side, _)| *side) != Some(own_side) {
        // Between rungs: the bit rate of the rung below scaled by pixel count, never
        // above the rung above it. Below the lowest rung: the lowest one scaled down.
        let below = STANDARD_RUNGS
            .iter()
            .copied()
            .find(|(side, _)| *side < own_side);
        let above = STANDARD_RUNGS
            .iter()
            .rev()
            .copied()
            .find(|(side, _)| *side > own_side);
        let scaled =
            |(side, kbps): (u32, u32)| kbps as f64 * (own_side as f64 / side as f64).powi(2);
        let kbps = match (below, above) {
            (Some(b), Some((_, above_kbps))) => scaled(b).min(above_kbps as f64),
            (Some(b), None) => scaled(b),
            (None, Some(a)) => scaled(a),
            (None, None) => STANDARD_RUNGS[0].1 as f64,
        };
        let kbps = (kbps.round() as u32).max(100);
        rungs.insert(0, (own_side.max(2), kbps));
    }
    rungs
        .into_iter()
        .map(|(side, kbps)| {
            let (width, height) = size_for(side);
            Rung {
                name: format!("v{side}"),
                width,
                height,
                video_kbps: kbps,
                crf: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(w: u32, h: u32) -> SourceFacts {
        SourceFacts {
            duration_secs: 10.0,
            has_video: true,
            has_audio: true,
            width: w,
            height: h,
            fps_num: 30,
            fps_den: 1,
            audio_channels: 2,
            container: "video/quicktime".into(),
            video_codec: None,
            audio_codec: None,
        }
    }

    fn sizes(l: &[Rung]) -> Vec<(u32, u32, u32)> {
        l.iter()
            .map(|r| (r.width, r.height, r.video_kbps))
            .collect()
    }

    #[test]
    fn full_hd_gets_all_five_rungs() {
        let l = ladder_for(&source(1920, 1080));
        assert_eq!(
            sizes(&l),
            vec![
                (1920, 1080, 5000),
                (1280, 720, 2800),
                (854, 480, 1400),
                (640, 360, 800),
                (426, 240, 400)
            ]
        );
        assert_eq!(l[0].name, "v1080");
    }

    #[test]
    fn never_upscales_and_4k_tops_at_1080() {
        assert_eq!(ladder_for(&source(1280, 720)).len(), 4);
        assert_eq!(ladder_for(&source(3840, 2160))[0].height, 1080);
    }

    #[test]
    fn a_source_between_rungs_gets_its_own_top_rung() {
        let l = ladder_for(&source(1024, 768));
        assert_eq!(l[0].height, 768);
        assert_eq!(l[0].width, 1024);
        assert!(
            l[0].video_kbps > l[1].video_kbps && l[0].video_kbps < 5000,
            "{l:?}"
        );
        assert_eq!(
            l.iter().map(|r| r.height).collect::<Vec<_>>(),
            vec![768, 720, 480, 360, 240]
        );
    }

    #[test]
    fn bit_rates_fall_with_every_rung() {
        for short in [250, 300, 400, 500, 600, 700, 719, 721, 800, 900, 1000, 1079] {
            let l = ladder_for(&source(short * 16 / 9, short));
            assert!(
                l.windows(2).all(|w| w[0].video_kbps > w[1].video_kbps),
                "{short}: {l:?}"
            );
        }
    }

    #[test]
    fn tiny_sources_get_one_rung_at_their_own_even_size() {
        let l = ladder_for(&source(177, 145));
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].width % 2, l[0].height % 2), (0, 0));
        assert!(l[0].height <= 145 && l[0].width <= 178);
        assert!(l[0].video_kbps >= 100);
    }

    #[test]
    fn portrait_video_is_laddered_by_its_short_side() {
        let l = ladder_for(&source(1080, 1920));
        assert_eq!((l[0].width, l[0].height), (1080, 1920));
        assert_eq!((l[1].width, l[1].height), (720, 1280));
        assert!(l.iter().all(|r| r.width % 2 == 0 && r.height % 2 == 0));
    }

    #[test]
    fn every_dimension_is_even_for_odd_aspect_ratios() {
        for (w, h) in [(1001, 563), (720, 576), (853, 480), (2, 2), (4000, 3)] {
            for r in ladder_for(&source(w, h)) {
                assert_eq!((r.width % 2, r.height % 2), (0, 0), "{w}x{h} -> {r:?}");
                assert!(
                    r.width <= w.max(2) + 1 && r.height <= h.max(2) + 1,
                    "{w}x{h} -> {r:?}"
                );
            }
        }
    }
}
