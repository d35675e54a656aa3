//! Cutting a lecture into chunk jobs (issue 8): time ranges of the source on the global
//! grid, so each chunk's segments are exactly the ones a single pass would cut. Edges are
//! whole segments counted in frames (at 29.97 fps a 6 s segment is 180 frames, 6.006 s),
//! measured from the start of the source's timeline as `TimeRange` defines it.
//! `schedule` turns the chunks into the jobs of a lecture, in the order they are to run.

use lectern_seams::messages::{JobPart, SourceFacts, TimeRange, TranscodeJob, grid_frames};

/// The chunks of `source` for `workers` workers, at most about `chunk_secs` each, or
/// nothing when one job should do it all (no video, an unknown rate or length, or a
/// lecture that fits one chunk). The last chunk runs to the end of the source
/// (`end_secs` None), whatever its probed length said.
///
/// One worker: chunks of `chunk_secs`, from the start; a tail shorter than half a chunk
/// joins the chunk before it. More: as many chunks as fill whole rounds of the workers
/// (never under `MIN_CHUNK_SEGMENTS`), their segments shared out evenly, since a round
/// with a few workers busy is time the others idle. A 10 min lecture on 8 workers is 15
/// chunks of 36 or 42 s (16 jobs with the first chunk's two) instead of 10 of 60 s, whose
/// 11 jobs left a second round with 3 of 8 workers busy.
pub fn plan(
    source: &SourceFacts,
    segment_secs: u32,
    keyframe_secs: u32,
    chunk_secs: u32,
    workers: u32,
) -> Vec<TimeRange> {
    if !source.has_video
        || source.fps_num == 0
        || source.fps_den == 0
        // NaN too: no duration to cut.
        || source.duration_secs.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        || chunk_secs == 0
    {
        return Vec::new();
    }
    let (num, den) = (source.fps_num as u64, source.fps_den as u64);
    let (_, segment_frames) =
        grid_frames(source.fps_num, source.fps_den, segment_secs, keyframe_secs);
    let segment_len = segment_frames as f64 * den as f64 / num as f64;
    let segments_per_chunk = ((chunk_secs as f64 / segment_len).round() as u64).max(1);
    let total_frames = (source.duration_secs * num as f64 / den as f64).ceil() as u64;
    // The first segment of each chunk.
    let starts: Vec<u64> = if workers <= 1 {
        let chunk_frames = segment_frames * segments_per_chunk;
        let mut chunks = total_frames / chunk_frames;
        if total_frames % chunk_frames >= chunk_frames / 2 {
            chunks += 1;
        }
        (0..chunks).map(|k| k * segments_per_chunk).collect()
    } else {
        let segments = total_frames as f64 / segment_frames as f64;
        let slots = workers as f64;
        // `schedule` encodes the first chunk in two jobs (its lowest rungs first), so a
        // round of the workers takes one chunk fewer than there are workers.
        let rounds = ((segments / segments_per_chunk as f64 + 1.0) / slots)
            .ceil()
            .max(1.0);
        let shortest = MIN_CHUNK_SEGMENTS.min(segments_per_chunk) as f64;
        let chunks = (slots * rounds - 1.0).min((segments / shortest).floor()) as u64;
        // Each start at the segment edge nearest its even share.
        let mut starts: Vec<u64> = (0..chunks)
            .map(|k| (k as f64 * segments / chunks as f64).round() as u64)
            .collect();
        starts.dedup();
        starts
    };
    if starts.len() <= 1 {
        return Vec::new();
    }
    // Seconds of frame `n`, exactly as the demuxers' own arithmetic gives it (ns).
    let at = |frame: u64| (frame as u128 * den as u128 * 1_000_000_000 / num as u128) as f64 / 1e9;
    starts
        .iter()
        .enumerate()
        .map(|(k, &first)| TimeRange {
            start_secs: at(first * segment_frames),
            end_secs: starts.get(k + 1).map(|next| at(next * segment_frames)),
            first_segment: first,
        })
        .collect()
}

/// The shortest chunk `plan` cuts for several workers, in segments (unless `chunk_secs`
/// is shorter): each chunk also encodes one GOP before its start and starts a
/// pipeline, which shorter chunks would pay too often.
pub const MIN_CHUNK_SEGMENTS: u64 = 3;

/// Ladders encoding at most this many pixels a second (720p30 + 360p30 is 34.6 M) have
/// every chunk after the first encoded whole, in one job: measured on a 2-core worker,
/// such a chunk job takes well under half its chunk's play time (a 60 s chunk of a
/// 720p lecture, v720 + v360: 17.6 s alone, 22-26 s beside the lecture's audio job), so
/// it keeps ahead of a viewer even on a worker half as fast. Larger ladders keep their
/// lowest rungs in jobs of their own. The bound is per worker: chunks spread over `n`
/// workers are encoded `n` at a time, so `n` times the pixels keep ahead as well.
pub const WHOLE_CHUNK_PIXELS_PER_SEC: f64 = 40e6;

/// The pixels a second `ladder` encodes at the source's frame rate.
fn pixel_rate(source: &SourceFacts, ladder: &[lectern_seams::messages::Rung]) -> f64 {
    ladder
        .iter()
        .map(|r| r.width as f64 * r.height as f64 * source.fps())
        .sum()
}

/// The jobs that make a lecture, in the order they should run. One chunk or none: the
/// `whole` job alone. Otherwise, so that the lecture plays soon and a student who starts
/// early never catches up with the encoders:
/// 1. the lowest rungs (the two lowest of three or more) of the first chunk;
/// 2. the audio of the whole lecture: it stores and reports its segments as it goes
///    (about a minute of audio a second), so on one worker the lecture plays once the
///    first of them are in, not after an hour of audio;
/// 3. the rest of the video. For a small ladder (`WHOLE_CHUNK_PIXELS_PER_SEC` times
///    `workers`, the workers the chunks are spread over): the
///    other rungs of the first chunk, then every other chunk with all its rungs, from the
///    start, so each chunk is decoded once (a two-rung ladder split in two jobs per
///    chunk did 1.36x the work of one job). Otherwise: the lowest rungs of every other
///    chunk, from the start, then the other rungs of every chunk, from the start;
/// 4. the poster and storyboard, which nobody waits for.
pub fn schedule(
    whole: &TranscodeJob,
    ranges: &[TimeRange],
    workers: u32,
    mut new_id: impl FnMut() -> String,
) -> Vec<TranscodeJob> {
    if ranges.len() < 2 || whole.ladder.is_empty() {
        return vec![whole.clone()];
    }
    let mut part =
        |part: JobPart, range: TimeRange, ladder: &[lectern_seams::messages::Rung]| TranscodeJob {
            job_id: new_id(),
            part,
            range,
            ladder: ladder.to_vec(),
            ..whole.clone()
        };
    let everything = TimeRange {
        start_secs: 0.0,
        end_secs: None,
        first_segment: 0,
    };
    // The ladder is ordered highest first.
    let low_count = if whole.ladder.len() >= 3 { 2 } else { 1 };
    let (high, low) = whole.ladder.split_at(whole.ladder.len() - low_count);
    let mut jobs = Vec::new();
    if pixel_rate(&whole.source, &whole.ladder)
        <= WHOLE_CHUNK_PIXELS_PER_SEC * workers.max(1) as f64
    {
        jobs.push(part(JobPart::VideoChunk, ranges[0].clone(), low));
        if !high.is_empty() {
            jobs.push(part(JobPart::VideoChunk, ranges[0].clone(), high));
        }
        for range in &ranges[1..] {
            jobs.push(part(JobPart::VideoChunk, range.clone(), &whole.ladder));
        }
    } else {
        for rungs in [low, high].into_iter().filter(|r| !r.is_empty()) {
            for range in ranges {
                jobs.push(part(JobPart::VideoChunk, range.clone(), rungs));
            }
        }
    }
    if whole.source.has_audio {
        jobs.insert(1, part(JobPart::Audio, everything.clone(), &[]));
    }
    jobs.push(part(JobPart::Stills, everything, &[]));
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;
    use lectern_seams::ids::{AssetId, LectureId};

    fn source(secs: f64, fps: (u32, u32), video: bool) -> SourceFacts {
        SourceFacts {
            duration_secs: secs,
            has_video: video,
            has_audio: true,
            width: 1280,
            height: 720,
            fps_num: fps.0,
            fps_den: fps.1,
            audio_channels: 2,
            container: "video/quicktime".into(),
            video_codec: None,
            audio_codec: None,
        }
    }

    fn edges(ranges: &[TimeRange]) -> Vec<(f64, Option<f64>, u64)> {
        ranges
            .iter()
            .map(|r| (r.start_secs, r.end_secs, r.first_segment))
            .collect()
    }

    #[test]
    fn whole_minutes_at_30_fps() {
        let plan = plan(&source(150.0, (30, 1), true), 6, 2, 60, 1);
        assert_eq!(
            edges(&plan),
            vec![
                (0.0, Some(60.0), 0),
                (60.0, Some(120.0), 10),
                (120.0, None, 20)
            ]
        );
    }

    #[test]
    fn ntsc_edges_are_whole_segments_of_frames() {
        // 180-frame segments (6.006 s), ten per chunk: 1800 frames = 60.06 s.
        let plan = plan(&source(250.0, (30000, 1001), true), 6, 2, 60, 1);
        assert_eq!(
            edges(&plan),
            vec![
                (0.0, Some(60.06), 0),
                (60.06, Some(120.12), 10),
                (120.12, Some(180.18), 20),
                (180.18, None, 30)
            ]
        );
    }

    #[test]
    fn a_short_tail_joins_the_chunk_before_it() {
        // 125 s: the third chunk would hold 4.9 s, so the second runs to the end.
        let plan = plan(&source(125.0, (30000, 1001), true), 6, 2, 60, 1);
        assert_eq!(edges(&plan), vec![(0.0, Some(60.06), 0), (60.06, None, 10)]);
        // 150 s at 25 fps: a 30 s tail is half a chunk and keeps its own.
        assert_eq!(plan_len(150.0, (25, 1)), 3);
    }

    fn plan_len(secs: f64, fps: (u32, u32)) -> usize {
        plan(&source(secs, fps, true), 6, 2, 60, 1).len()
    }

    #[test]
    fn one_job_when_chunks_would_not_help() {
        assert!(
            plan(&source(89.0, (30, 1), true), 6, 2, 60, 1).is_empty(),
            "one chunk and a short tail"
        );
        assert!(
            plan(&source(3600.0, (30, 1), false), 6, 2, 60, 1).is_empty(),
            "audio only"
        );
        assert!(
            plan(&source(3600.0, (0, 1), true), 6, 2, 60, 1).is_empty(),
            "unknown rate"
        );
        assert!(
            plan(&source(f64::NAN, (30, 1), true), 6, 2, 60, 1).is_empty(),
            "unknown length"
        );
        assert!(
            plan(&source(3600.0, (30, 1), true), 6, 2, 0, 1).is_empty(),
            "chunking off"
        );
    }

    #[test]
    fn chunks_are_never_shorter_than_a_segment() {
        // A 1 s chunk length still cuts whole segments.
        let plan = plan(&source(30.0, (24000, 1001), true), 6, 2, 1, 1);
        assert_eq!(plan.len(), 5);
        assert!(
            plan.windows(2)
                .all(|w| w[1].first_segment == w[0].first_segment + 1)
        );
        assert!(
            (plan[1].start_secs - 144.0 * 1001.0 / 24000.0).abs() < 1e-9,
            "{:?}",
            plan[1]
        );
    }

    fn whole_job(source: SourceFacts, rungs: &[&str]) -> TranscodeJob {
        TranscodeJob {
            job_id: "whole".into(),
            lecture_id: LectureId::new(),
            asset_id: AssetId::parse("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa").unwrap(),
            source_key: "uploads/u".into(),
            output_prefix: "assets/a".into(),
            source,
            part: JobPart::Whole,
            range: TimeRange {
                start_secs: 0.0,
                end_secs: None,
                first_segment: 0,
            },
            ladder: rungs
                .iter()
                .map(|n| {
                    let height: u32 = n[1..].parse().unwrap();
                    let width = (height * 16 / 9 + 1) & !1;
                    lectern_seams::messages::Rung {
                        name: n.to_string(),
                        width,
                        height,
                        video_kbps: 0,
                        crf: None,
                    }
                })
                .collect(),
            audio_kbps: 128,
            segment_secs: 6,
            keyframe_secs: 2,
            screen_languages: None,
            traceparent: None,
        }
    }

    #[test]
    fn lowest_rungs_of_every_chunk_come_before_the_rest() {
        let whole = whole_job(
            source(150.0, (30, 1), true),
            &["v720", "v480", "v360", "v240"],
        );
        let ranges = plan(&whole.source, 6, 2, 60, 1);
        let mut n = 0;
        let jobs = schedule(&whole, &ranges, 1, || {
            n += 1;
            format!("j{n}")
        });
        let summary: Vec<String> = jobs.iter().map(lectern_seams::messages::part_key).collect();
        assert_eq!(
            summary,
            [
                "video-00000-v360-v240",
                "audio",
                "video-00010-v360-v240",
                "video-00020-v360-v240",
                "video-00000-v720-v480",
                "video-00010-v720-v480",
                "video-00020-v720-v480",
                "stills"
            ]
        );
        let ids: std::collections::HashSet<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
        assert_eq!(ids.len(), jobs.len(), "every job has its own id");
        assert_eq!(jobs[3].range, ranges[2]);
        assert!(
            jobs.iter()
                .all(|j| j.asset_id == jobs[0].asset_id && j.output_prefix == "assets/a")
        );
    }

    #[test]
    fn one_chunk_or_one_rung_ladders_schedule_as_expected() {
        let whole = whole_job(source(150.0, (30, 1), true), &["v240"]);
        assert_eq!(schedule(&whole, &[], 1, || "x".into()), vec![whole.clone()]);
        let mut silent = whole_job(source(150.0, (60, 1), true), &["v720", "v240"]);
        silent.source.has_audio = false;
        let ranges = plan(&silent.source, 6, 2, 60, 1);
        let keys: Vec<String> = schedule(&silent, &ranges, 1, || "x".into())
            .iter()
            .map(lectern_seams::messages::part_key)
            .collect();
        assert_eq!(keys[0], "video-00000-v240");
        assert_eq!(keys[3], "video-00000-v720");
        assert_eq!(keys.last().map(String::as_str), Some("stills"));
        assert!(!keys.contains(&"audio".to_string()));
    }

    #[test]
    fn a_small_ladder_encodes_each_chunk_after_the_first_whole() {
        let keys = |whole: &TranscodeJob| -> Vec<String> {
            let ranges = plan(&whole.source, 6, 2, 60, 1);
            schedule(whole, &ranges, 1, || "x".into())
                .iter()
                .map(lectern_seams::messages::part_key)
                .collect()
        };
        // 720p30 + 360p30: 34.6 M pixels a second.
        let small = whole_job(source(150.0, (30, 1), true), &["v720", "v360"]);
        assert!(pixel_rate(&small.source, &small.ladder) <= WHOLE_CHUNK_PIXELS_PER_SEC);
        assert_eq!(
            keys(&small),
            [
                "video-00000-v360",
                "audio",
                "video-00000-v720",
                "video-00010-v720-v360",
                "video-00020-v720-v360",
                "stills"
            ]
        );
        // The same rungs at 60 fps are twice the work: each chunk's lowest rung first.
        let fast = whole_job(source(150.0, (60, 1), true), &["v720", "v360"]);
        assert_eq!(
            keys(&fast),
            [
                "video-00000-v360",
                "audio",
                "video-00010-v360",
                "video-00020-v360",
                "video-00000-v720",
                "video-00010-v720",
                "video-00020-v720",
                "stills"
            ]
        );
        // One rung: its first chunk, then the others, all of one kind.
        let single = whole_job(source(150.0, (30, 1), true), &["v480"]);
        assert_eq!(
            keys(&single),
            [
                "video-00000-v480",
                "audio",
                "video-00010-v480",
                "video-00020-v480",
                "stills"
            ]
        );
    }

    #[test]
    fn more_workers_encode_larger_ladders_whole() {
        // 720p30 in four rungs: 49.9 M pixels a second, split on one worker.
        let whole = whole_job(
            source(150.0, (30, 1), true),
            &["v720", "v480", "v360", "v240"],
        );
        let ranges = plan(&whole.source, 6, 2, 60, 1);
        let keys = |workers| -> Vec<String> {
            schedule(&whole, &ranges, workers, || "x".into())
                .iter()
                .map(lectern_seams::messages::part_key)
                .collect()
        };
        assert_eq!(keys(0), keys(1));
        assert_eq!(keys(1)[2], "video-00010-v360-v240");
        assert_eq!(
            keys(2),
            [
                "video-00000-v360-v240",
                "audio",
                "video-00000-v720-v480",
                "video-00010-v720-v480-v360-v240",
                "video-00020-v720-v480-v360-v240",
                "stills"
            ]
        );
    }

    #[test]
    fn chunks_for_several_workers_fill_whole_rounds_evenly() {
        let lengths = |secs: f64, workers: u32, chunk_secs: u32| -> Vec<u64> {
            let ranges = plan(&source(secs, (30, 1), true), 6, 2, chunk_secs, workers);
            let mut firsts: Vec<u64> = ranges.iter().map(|r| r.first_segment).collect();
            firsts.push((secs / 6.0).ceil() as u64);
            firsts.windows(2).map(|w| w[1] - w[0]).collect()
        };
        // 10 min on 8 workers: 15 chunks of 6 or 7 segments, not 10 of 10; with the
        // first chunk's two jobs, two rounds.
        let ten = lengths(600.0, 8, 60);
        assert_eq!(ten.len(), 15, "{ten:?}");
        assert!(
            ten.iter().all(|&n| n == 6 || n == 7) && ten.iter().sum::<u64>() == 100,
            "{ten:?}"
        );
        // The ranges join up: each ends where the next starts, the last at the source's end.
        let ranges = plan(&source(600.0, (30000, 1001), true), 6, 2, 60, 8);
        assert!(
            ranges
                .windows(2)
                .all(|w| w[0].end_secs == Some(w[1].start_secs))
        );
        assert_eq!(ranges.last().unwrap().end_secs, None);
        assert!(
            (ranges[1].start_secs - 7.0 * 180.0 * 1001.0 / 30000.0).abs() < 1e-9,
            "{:?}",
            ranges[1]
        );
        // One worker, or none counted: the configured length.
        assert_eq!(lengths(600.0, 1, 60), vec![10; 10]);
        assert_eq!(plan(&source(600.0, (30, 1), true), 6, 2, 60, 0).len(), 10);
        // Never longer than configured: 60 min on 8 workers is 63 chunks of 9-10 segments.
        let hour = lengths(3600.0, 8, 60);
        assert_eq!(hour.len(), 63);
        assert!(hour.iter().all(|&n| n == 9 || n == 10), "{hour:?}");
        // Never shorter than MIN_CHUNK_SEGMENTS: 5 min (50 segments) on 64 workers is 16
        // chunks of 3 or 4 segments.
        let many = lengths(300.0, 64, 60);
        assert_eq!(many.len(), 16);
        assert!(many.iter().all(|&n| n == 3 || n == 4), "{many:?}");
        // Unless the configured length is shorter still.
        assert_eq!(lengths(36.0, 4, 6), vec![1; 6]);
        // A probed length a little over whole seconds changes nothing: 36.02 s on two
        // workers in chunks of up to 24 s is two of 18 s.
        assert_eq!(lengths(36.02, 2, 24), vec![3, 4]);
        assert_eq!(
            plan(&source(36.02, (30, 1), true), 6, 2, 24, 2)[1].first_segment,
            3
        );
        // Too short to share: one job.
        assert!(plan(&source(20.0, (30, 1), true), 6, 2, 60, 8).is_empty());
        // Whatever the workers and the length: whole rounds, chunks of 3 to 10 segments
        // (the last may hold half of one more, or be a little short), within a segment
        // and a half of each other.
        for workers in 2..40 {
            for secs in [75.0, 121.0, 300.0, 600.0, 601.5, 1800.0, 3600.0, 5400.0] {
                let ranges = plan(&source(secs, (30, 1), true), 6, 2, 60, workers);
                let got: Vec<f64> = ranges
                    .iter()
                    .map(|r| (r.end_secs.unwrap_or(secs) - r.start_secs) / 6.0)
                    .collect();
                let rounds = ((secs / 60.0 + 1.0) / workers as f64).ceil() as usize;
                assert!(
                    got.len() > 1 && got.len() < workers as usize * rounds,
                    "{workers} workers, {secs} s: {got:?}"
                );
                let (min, max) = got
                    .iter()
                    .fold((f64::MAX, 0.0f64), |(lo, hi), &n| (lo.min(n), hi.max(n)));
                let inner_min = got[..got.len() - 1]
                    .iter()
                    .cloned()
                    .fold(f64::MAX, f64::min);
                assert!(
                    inner_min >= 3.0 && max <= 10.5 + 1e-9 && max - min <= 1.5 + 1e-9,
                    "{workers} workers, {secs} s: {got:?}"
                );
            }
        }
    }
}
