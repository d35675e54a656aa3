//! The real GStreamer pipeline over synthetic sources made with gst-launch-1.0, and a
//! worker running it against a real file store and the embedded queue.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lectern_seams::ids::{AssetId, LectureId};
use lectern_seams::messages::{
    JobEvent, JobPart, Rung, SourceFacts, TimeRange, TranscodeJob, grid_frames,
};
use lectern_seams::queue::{EmbeddedQueue, SharedQueue, Topic};
use lectern_seams::storage::SharedStore;
use lectern_transcoder::pipeline::{PipelineError, Watchdog, transcode};
use lectern_transcoder::{Worker, WorkerConfig};

mod common;
use common::psnr_with;

fn watchdog(stall_secs: u64) -> Watchdog {
    Watchdog {
        stall: Duration::from_secs(stall_secs),
        total: Duration::from_secs(600),
        max_gap: Duration::from_secs(600),
    }
}

fn make_source(path: &Path, video: Option<(u32, u32, &str)>, audio: bool, secs: u32, mux: &str) {
    let mut desc = format!("{mux} name=mux ! filesink location={} ", path.display());
    if let Some((w, h, rate)) = video {
        let frames = secs * rate.split('/').next().unwrap().parse::<u32>().unwrap()
            / rate
                .split('/')
                .nth(1)
                .unwrap_or("1")
                .parse::<u32>()
                .unwrap();
        desc += &format!(
            "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width={w},height={h},framerate={rate} ! x264enc speed-preset=ultrafast ! h264parse ! queue ! mux. "
        );
    }
    if audio {
        let buffers = secs * 48000 / 1024;
        desc += &format!(
            "audiotestsrc num-buffers={buffers} samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! aacparse ! queue ! mux. "
        );
    }
    gst_launch(&desc);
}

/// Runs a gst-launch-1.0 pipeline that makes a test source; panics if it fails.
fn gst_launch(desc: &str) {
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(desc.split_whitespace())
        .status()
        .expect("gst-launch-1.0 runs");
    assert!(status.success(), "making a test source failed: {desc}");
}

fn job(facts: SourceFacts, ladder: Vec<Rung>) -> TranscodeJob {
    TranscodeJob {
        job_id: "j".into(),
        lecture_id: LectureId::new(),
        asset_id: AssetId::new(),
        source_key: "s".into(),
        output_prefix: "assets/a".into(),
        source: facts,
        part: JobPart::Whole,
        range: TimeRange {
            start_secs: 0.0,
            end_secs: None,
            first_segment: 0,
        },
        ladder,
        audio_kbps: 128,
        segment_secs: 6,
        keyframe_secs: 2,
        screen_languages: None,
        traceparent: None,
    }
}

fn facts(w: u32, h: u32, fps: (u32, u32), secs: f64, video: bool, audio: bool) -> SourceFacts {
    SourceFacts {
        duration_secs: secs,
        has_video: video,
        has_audio: audio,
        width: w,
        height: h,
        fps_num: fps.0,
        fps_den: fps.1,
        audio_channels: if audio { 2 } else { 0 },
        container: "video/quicktime".into(),
        video_codec: None,
        audio_codec: None,
    }
}

fn rung(name: &str, w: u32, h: u32, kbps: u32) -> Rung {
    Rung {
        name: name.into(),
        width: w,
        height: h,
        video_kbps: kbps,
        crf: None,
    }
}

#[test]
fn ladder_segments_are_aligned_and_measured() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mp4");
    make_source(&src, Some((640, 360, "25/1")), true, 15, "mp4mux");
    let job = job(
        facts(640, 360, (25, 1), 15.0, true, true),
        vec![rung("v360", 640, 360, 800), rung("v240", 426, 240, 400)],
    );
    let mut progress = Vec::new();
    let out = transcode(
        &job,
        &src,
        &dir.path().join("out"),
        watchdog(15),
        &Default::default(),
        |p| progress.push(p.fraction),
    )
    .unwrap();
    assert_eq!(out.video.len(), 2);
    for r in &out.video {
        let durations: Vec<f64> = r.segments.iter().map(|s| s.duration).collect();
        // 15 s at 6 s segments of 2 s GOPs: 6, 6, 3.
        assert_eq!(durations.len(), 3, "{}: {durations:?}", r.name);
        assert!(
            (durations[0] - 6.0).abs() < 1e-6 && (durations[1] - 6.0).abs() < 1e-6,
            "{durations:?}"
        );
        assert!((durations[2] - 3.0).abs() < 0.05, "{durations:?}");
        assert!(
            r.codec.as_deref().unwrap().starts_with("avc1.64"),
            "{:?}",
            r.codec
        );
        assert!(r.segments.iter().all(|s| s.bytes > 0));
    }
    // PAT and PMT open every segment, once: mpegtsmux's default repeated them every
    // 0.1 s, 30 kbit/s in every rendition.
    for name in out.video.iter().map(|r| r.name.as_str()).chain(["audio"]) {
        for seg in std::fs::read_dir(dir.path().join("out").join(name)).unwrap() {
            let pids = ts_pids(&seg.unwrap().path());
            let pmt = pids[1];
            assert_eq!(pids[0], 0, "{name}: a segment opens with the PAT");
            assert!(
                pmt != 0 && pmt < 0x1fff,
                "{name}: then the PMT, not PID {pmt:#x}"
            );
            assert_eq!(
                pids.iter().filter(|&&p| p == 0 || p == pmt).count(),
                2,
                "{name}: tables once a segment"
            );
        }
    }
    let a = out.audio.as_ref().expect("audio rendition");
    let total: f64 = a.segments.iter().map(|s| s.duration).sum();
    assert!((total - 15.0).abs() < 0.2, "audio {total}");
    assert!(out.poster.is_some());
    assert!(
        out.thumbnails.len() >= 14,
        "{} thumbnails",
        out.thumbnails.len()
    );
    assert!((out.duration_secs - 15.0).abs() < 0.05);
    assert!(
        progress.last().copied().unwrap_or(0.0) > 0.3,
        "{progress:?}"
    );
}

/// PSNR of a rendition against the source scaled to its size by ffmpeg's bicubic
/// scaler (frames paired by their order: the rendition starts at 3600 s).
fn psnr_against_ffmpeg_scaled(rendition: &Path, source: &Path, w: u32, h: u32) -> f64 {
    psnr_with(
        rendition,
        source,
        &format!(
            "[0:v]setpts=N/30/TB[r];[1:v]setpts=N/30/TB,scale={w}:{h}:flags=bicubic[s];[r][s]psnr"
        ),
    )
}

/// The PID of every packet of an MPEG-TS file.
fn ts_pids(path: &Path) -> Vec<u16> {
    let data = std::fs::read(path).unwrap();
    assert_eq!(data.len() % 188, 0, "{}: whole TS packets", path.display());
    data.chunks(188)
        .map(|p| {
            assert_eq!(p[0], 0x47, "{}: sync byte", path.display());
            u16::from_be_bytes([p[1] & 0x1f, p[2]])
        })
        .collect()
}

fn frames_in(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    // MPEG-TS lists the stream again under its program: the first line is enough.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn rungs_far_below_the_source_keep_every_frame_and_the_picture() {
    // From a 1080p source, 480p, 360p and 240p go through the rung scaler.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mp4");
    // HD colour bars: sharp edges across the frame, where a crop, shift or stretch shows
    // (GStreamer's 4-tap scaler, the one used before, is 28-37 dB from ffmpeg's bicubic
    // on bars before any encoding).
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "smptehdbars=size=1920x1080:rate=30",
            "-t",
            "4",
            "-c:v",
            "libx264",
        ])
        .args(["-preset", "ultrafast", "-crf", "18"])
        .arg(&src)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let ladder = vec![
        rung("v480", 854, 480, 1400),
        rung("v360", 640, 360, 800),
        rung("v240", 426, 240, 400),
    ];
    let job = job(facts(1920, 1080, (30, 1), 4.0, true, false), ladder.clone());
    let out = transcode(
        &job,
        &src,
        &dir.path().join("out"),
        watchdog(60),
        &Default::default(),
        |_| {},
    )
    .unwrap();
    assert_eq!(out.video.len(), 3);
    for (r, rung) in out.video.iter().zip(&ladder) {
        assert_eq!(r.segments.len(), 1, "{}: {:?}", r.name, r.segments);
        assert!(
            (r.segments[0].duration - 4.0).abs() < 0.05,
            "{}: {:?}",
            r.name,
            r.segments
        );
        let segment = dir
            .path()
            .join("out")
            .join(&r.name)
            .join(lectern_packager::segment_name(0));
        assert_eq!(frames_in(&segment), 120, "{}", r.name);
        let db = psnr_against_ffmpeg_scaled(&segment, &src, rung.width, rung.height);
        // Measured 61-65 dB.
        assert!(
            db > 50.0,
            "{} is {db} dB from the source scaled by ffmpeg",
            r.name
        );
    }
}

#[test]
fn audio_only_source_gives_one_audio_rendition() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.m4a");
    make_source(&src, None, true, 4, "mp4mux");
    let job = job(facts(0, 0, (0, 1), 4.0, false, true), vec![]);
    let out = transcode(
        &job,
        &src,
        &dir.path().join("out"),
        watchdog(60),
        &Default::default(),
        |_| {},
    )
    .unwrap();
    assert!(out.video.is_empty());
    assert!(out.poster.is_none());
    assert!(!out.audio.unwrap().segments.is_empty());
}

/// The PES packets of one PID of an MPEG-TS file: their PTS (90 kHz) and payloads.
fn pes_packets(path: &Path, pid: u16) -> Vec<(u64, Vec<u8>)> {
    let data = std::fs::read(path).unwrap();
    let mut packets: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for p in data.chunks(188) {
        if u16::from_be_bytes([p[1] & 0x1f, p[2]]) != pid || p[3] & 0x10 == 0 {
            continue;
        }
        let start = if p[3] & 0x20 != 0 {
            5 + p[4] as usize
        } else {
            4
        };
        if p[1] & 0x40 != 0 {
            if let Some(pes) = current.take() {
                packets.push(split_pes(&pes));
            }
            current = Some(Vec::new());
        }
        if let Some(pes) = current.as_mut() {
            pes.extend_from_slice(&p[start..]);
        }
    }
    packets.extend(current.map(|pes| split_pes(&pes)));
    packets
}

fn split_pes(pes: &[u8]) -> (u64, Vec<u8>) {
    assert_eq!(&pes[..3], &[0, 0, 1], "a PES start code");
    assert!(pes[7] & 0x80 != 0, "every audio PES carries a PTS");
    let t = &pes[9..14];
    let pts = ((t[0] as u64 >> 1) & 7) << 30
        | (t[1] as u64) << 22
        | (t[2] as u64 >> 1) << 15
        | (t[3] as u64) << 7
        | t[4] as u64 >> 1;
    (pts, pes[9 + pes[8] as usize..].to_vec())
}

/// How many whole ADTS frames `payload` holds (None if it does not end on a frame).
fn adts_frames(payload: &[u8]) -> Option<usize> {
    let (mut at, mut frames) = (0, 0);
    while at < payload.len() {
        let h = payload.get(at..at + 7)?;
        if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
            return None;
        }
        at += ((h[3] as usize & 3) << 11) | (h[4] as usize) << 3 | (h[5] as usize) >> 5;
        frames += 1;
    }
    (at == payload.len()).then_some(frames)
}

#[test]
fn audio_frames_go_out_in_groups_timed_back_to_back() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.m4a");
    make_source(&src, None, true, 15, "mp4mux");
    let job = job(facts(0, 0, (0, 1), 15.0, false, true), vec![]);
    let out = transcode(
        &job,
        &src,
        &dir.path().join("out"),
        watchdog(60),
        &Default::default(),
        |_| {},
    )
    .unwrap();
    let mut pes = Vec::new();
    for segment in &out.audio.unwrap().segments {
        let path = dir
            .path()
            .join("out/audio")
            .join(lectern_packager::segment_name(segment.index));
        let pmt = ts_pids(&path)[1];
        let audio_pid = *ts_pids(&path)
            .iter()
            .find(|&&p| p != 0 && p != pmt && p != 0x1fff)
            .expect("an audio PID");
        pes.extend(pes_packets(&path, audio_pid));
    }
    let frames: Vec<usize> = pes
        .iter()
        .map(|(_, payload)| adts_frames(payload).expect("whole ADTS frames in every PES"))
        .collect();
    let total: usize = frames.iter().sum();
    assert!(
        (total as f64 * 1024.0 / 48000.0 - 15.0).abs() < 0.1,
        "{total} frames for 15 s"
    );
    // One PES per 21 ms frame cost a 128k rendition a quarter of its size; ffmpeg's
    // muxer fills PES packets up to 2930 bytes.
    assert!(
        pes.iter().all(|(_, payload)| payload.len() <= 2930),
        "PES payloads within 2930 bytes"
    );
    assert!(
        total >= 5 * pes.len(),
        "{total} frames in {} PES packets",
        pes.len()
    );
    // A player times the frames of a PES from its PTS, 1024 samples apart: each PES
    // must start where the frames before it end.
    for (i, pair) in pes.windows(2).enumerate() {
        let expected = pair[0].0 + frames[i] as u64 * 1024 * 90_000 / 48_000;
        assert!(
            pair[1].0.abs_diff(expected) <= 2,
            "PES {}: PTS {} where the frames before end at {expected}",
            i + 1,
            pair[1].0
        );
    }
}

#[test]
fn a_lecture_a_fraction_of_a_second_long_is_still_read_as_mpeg_ts() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("blip.m4a");
    // Four frames of silence (0.09 s): an audio segment of eight TS packets as muxed.
    let desc = format!(
        "audiotestsrc wave=silence num-buffers=4 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! aacparse ! mp4mux ! filesink location={}",
        src.display()
    );
    gst_launch(&desc);
    let job = job(facts(0, 0, (0, 1), 0.09, false, true), vec![]);
    let out = transcode(
        &job,
        &src,
        &dir.path().join("out"),
        watchdog(60),
        &Default::default(),
        |_| {},
    )
    .unwrap();
    let segments = out.audio.unwrap().segments;
    assert_eq!(segments.len(), 1);
    let seg = dir
        .path()
        .join("out/audio")
        .join(lectern_packager::segment_name(segments[0].index));
    assert_eq!(
        segments[0].bytes,
        std::fs::metadata(&seg).unwrap().len(),
        "the size stored is the padded one"
    );
    // ffmpeg's probe, which its HLS reader runs on a rendition's first segment, took
    // fewer than eleven 204-byte blocks for MPEG-PS and refused the lecture.
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=format_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&seg)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout).trim(),
        "mpegts",
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let decoded = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&seg)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decoded.status.success() && decoded.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
}

#[test]
fn garbage_fails_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("x.mp4");
    std::fs::write(&src, vec![7u8; 100_000]).unwrap();
    let job = job(
        facts(640, 360, (25, 1), 4.0, true, true),
        vec![rung("v360", 640, 360, 800)],
    );
    let err = transcode(
        &job,
        &src,
        &dir.path().join("out"),
        watchdog(30),
        &Default::default(),
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("could not be decoded"), "{err}");
}

#[test]
fn the_watchdog_stops_a_run_past_its_time_budget() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("long.mp4");
    make_source(&src, Some((640, 360, "30/1")), false, 30, "mp4mux");
    let job = job(
        facts(640, 360, (30, 1), 30.0, true, false),
        vec![rung("v360", 640, 360, 800), rung("v240", 426, 240, 400)],
    );
    let started = std::time::Instant::now();
    let limit = Watchdog {
        stall: Duration::from_secs(60),
        total: Duration::from_secs(1),
        max_gap: Duration::from_secs(600),
    };
    let err = transcode(
        &job,
        &src,
        &dir.path().join("out"),
        limit,
        &Default::default(),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, PipelineError::TooLong(1)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped after {:?}",
        started.elapsed()
    );
}

/// The PTS (90 kHz) of the first video PES in an MPEG-TS file.
fn first_video_pts(path: &Path) -> u64 {
    let data = std::fs::read(path).unwrap();
    for packet in data.chunks_exact(188) {
        let unit_start = packet[1] & 0x40 != 0;
        let adaptation = (packet[3] >> 4) & 0x3;
        if !unit_start || adaptation & 0x1 == 0 {
            continue;
        }
        let at = if adaptation == 3 {
            5 + packet[4] as usize
        } else {
            4
        };
        let pes = &packet[at..];
        if pes.len() > 14
            && pes[..3] == [0, 0, 1]
            && (0xE0..=0xEF).contains(&pes[3])
            && pes[7] & 0x80 != 0
        {
            let p = &pes[9..14];
            return ((p[0] as u64 >> 1) & 0x7) << 30
                | (p[1] as u64) << 22
                | (p[2] as u64 >> 1) << 15
                | (p[3] as u64) << 7
                | p[4] as u64 >> 1;
        }
    }
    panic!("no video PES with a PTS in {}", path.display());
}

/// Makes a 16 s 640x360 source at `fps` in `mux`, encodes it in one pass and as chunks
/// cut at `edges` (frame numbers on the grid of 2 s GOPs and 4 s segments), and checks
/// every chunk segment's number, length and first PTS against the single pass's.
fn assert_chunks_match_a_single_pass(mux: &str, file_name: &str, fps: (u32, u32), edges: &[u64]) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join(file_name);
    make_source(
        &src,
        Some((640, 360, &format!("{}/{}", fps.0, fps.1))),
        true,
        16,
        mux,
    );
    assert_source_chunks_match_a_single_pass(tmp.path(), &src, fps, edges);
}

fn assert_source_chunks_match_a_single_pass(
    dir: &Path,
    src: &Path,
    fps: (u32, u32),
    edges: &[u64],
) {
    let src = src.to_path_buf();
    let ladder = vec![rung("v360", 640, 360, 800)];
    let mut whole = job(facts(640, 360, fps, 16.0, true, true), ladder);
    whole.segment_secs = 4;
    let single = transcode(
        &whole,
        &src,
        &dir.join("single"),
        watchdog(30),
        &Default::default(),
        |_| {},
    )
    .unwrap();
    let (_, segment_frames) = grid_frames(fps.0, fps.1, whole.segment_secs, whole.keyframe_secs);
    let at = |frame: u64| frame as f64 * fps.1 as f64 / fps.0 as f64;

    let mut starts = vec![0u64];
    starts.extend_from_slice(edges);
    let mut chunks = Vec::new();
    for (k, start) in starts.iter().enumerate() {
        let mut chunk = whole.clone();
        chunk.part = JobPart::VideoChunk;
        let end = starts.get(k + 1).map(|&e| at(e));
        chunk.range = TimeRange {
            start_secs: at(*start),
            end_secs: end,
            first_segment: start / segment_frames,
        };
        let out_dir = dir.join(format!("chunk{k}"));
        let out = transcode(
            &chunk,
            &src,
            &out_dir,
            watchdog(30),
            &Default::default(),
            |_| {},
        )
        .unwrap();
        assert!(
            out.audio.is_none() && out.poster.is_none() && out.thumbnails.is_empty(),
            "chunk {k} made more than video"
        );
        chunks.push((out_dir, out));
    }

    let single_v = &single.video[0];
    let stitched: Vec<_> = chunks
        .iter()
        .flat_map(|(dir, out)| {
            out.video[0]
                .segments
                .iter()
                .map(move |s| (dir.clone(), s.clone()))
        })
        .collect();
    let indices: Vec<u64> = stitched.iter().map(|(_, s)| s.index).collect();
    assert_eq!(
        indices,
        single_v
            .segments
            .iter()
            .map(|s| s.index)
            .collect::<Vec<_>>()
    );
    for ((chunk_dir, ours), theirs) in stitched.iter().zip(&single_v.segments) {
        assert!(
            (ours.duration - theirs.duration).abs() < 1e-6,
            "segment {}: {} vs {}",
            ours.index,
            ours.duration,
            theirs.duration
        );
        let name = lectern_packager::segment_name(ours.index);
        let (a, b) = (
            first_video_pts(&chunk_dir.join("v360").join(&name)),
            first_video_pts(&single_v.dir.join(&name)),
        );
        // One 90 kHz tick of rounding at most: the same timeline, no per-chunk restart.
        assert!(
            a.abs_diff(b) <= 1,
            "segment {} starts at PTS {a} in its chunk but {b} in a single pass",
            ours.index
        );
    }
}

#[test]
fn chunks_cut_the_segments_a_single_pass_cuts() {
    // 4 s segments are 100 frames: chunks [0, 8 s), [8, 12 s), [12 s, end).
    assert_chunks_match_a_single_pass("mp4mux", "src.mp4", (25, 1), &[200, 300]);
}

#[test]
fn chunks_of_ntsc_rate_mpeg_ts_keep_their_edges() {
    // 29.97 fps: GOPs of 60 frames (2.002 s), segments of 120; edges at 8.008 and 12.012 s.
    assert_chunks_match_a_single_pass("mpegtsmux", "src.ts", (30000, 1001), &[240, 360]);
}

#[test]
fn chunks_of_a_variable_rate_source_keep_the_grid() {
    // A screen recording's kind of timestamps: frames missing around both edges (8 and
    // 12 s at 25 fps), so each chunk's first decoded frame comes after its start.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("vfr.mp4");
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x360:rate=25",
            "-t",
            "16",
            "-vf",
        ])
        .arg(r"select='not(between(n\,190\,215))*not(between(n\,290\,310))'")
        .args([
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&src)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let packets = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets",
            "-of",
            "csv=p=0",
        ])
        .arg(&src)
        .output()
        .expect("ffprobe runs");
    assert_eq!(
        String::from_utf8_lossy(&packets.stdout).trim(),
        "353",
        "47 of 400 frames are missing"
    );
    assert_source_chunks_match_a_single_pass(tmp.path(), &src, (25, 1), &[200, 300]);
}

/// PSNR (dB) of the video of `a` against `b`, frames paired by index.
fn psnr(a: &Path, b: &Path) -> f64 {
    psnr_with(a, b, "[0:v][1:v]psnr")
}

#[test]
fn chunks_of_a_b_frame_mp4_with_an_edit_list_keep_every_frame_in_place() {
    // ffmpeg's MP4 with B-frames: an edit list shifts buffer times from stream times by
    // the reorder delay, and the decoder reorders frames past a chunk's stop.
    let tmp = tempfile::tempdir().unwrap();
    let y4m = tmp.path().join("ball.y4m");
    let desc = format!(
        "videotestsrc pattern=ball num-buffers=400 ! video/x-raw,width=640,height=360,framerate=25/1,format=I420 ! y4menc ! filesink location={}",
        y4m.display()
    );
    gst_launch(&desc);
    let src = tmp.path().join("bframes.mp4");
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-i",
            y4m.to_str().unwrap(),
            "-c:v",
            "libx264",
            "-preset",
            "fast",
            "-bf",
            "3",
            "-g",
            "50",
        ])
        .arg(&src)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    assert_source_chunks_match_a_single_pass(tmp.path(), &src, (25, 1), &[200, 300]);
    // The same pictures: a moving ball one frame off costs some 10 dB.
    for (chunk, segment) in [("chunk1", 2), ("chunk2", 3)] {
        let name = lectern_packager::segment_name(segment);
        let db = psnr(
            &tmp.path().join(chunk).join("v360").join(&name),
            &tmp.path().join("single").join("v360").join(&name),
        );
        assert!(
            db > 35.0,
            "segment {segment} of {chunk} is {db} dB from the single pass's"
        );
    }
}

/// A stills job over 400 s of tiny video with a keyframe every `gop` frames (30 fps):
/// thumbnails are wanted every 2 s.
fn stills_of(gop: u32) -> lectern_transcoder::pipeline::TranscodeOutput {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mp4");
    let desc = format!(
        "videotestsrc num-buffers=12000 pattern=ball ! video/x-raw,width=160,height=90,framerate=30/1 ! x264enc speed-preset=ultrafast key-int-max={gop} ! h264parse ! mp4mux ! filesink location={}",
        src.display()
    );
    gst_launch(&desc);
    let mut stills = job(facts(160, 90, (30, 1), 400.0, true, false), vec![]);
    stills.part = JobPart::Stills;
    transcode(
        &stills,
        &src,
        &dir.path().join("out"),
        watchdog(60),
        &Default::default(),
        |_| {},
    )
    .unwrap()
}

#[test]
fn a_stills_job_decodes_only_keyframes_when_they_are_close_enough() {
    // Keyframes every 2 s, as often as thumbnails: only they are decoded.
    let out = stills_of(60);
    assert!(out.stills_from_keyframes);
    assert!(out.video.is_empty() && out.audio.is_none());
    let poster = out.poster.expect("a poster");
    assert!(
        (poster.pts_secs - 10.0).abs() < 0.05,
        "poster at {}",
        poster.pts_secs
    );
    let times: Vec<f64> = out.thumbnails.iter().map(|t| t.pts_secs).collect();
    assert!(
        times.len() >= 190 && times.last().is_some_and(|t| *t >= 396.0),
        "{} thumbnails: {times:?}",
        times.len()
    );
    // Keyframes 10 s apart would leave the storyboard a thumbnail in five: every frame
    // is decoded instead.
    let sparse = stills_of(300);
    assert!(!sparse.stills_from_keyframes);
    assert!(
        sparse.thumbnails.len() >= 190,
        "{} thumbnails",
        sparse.thumbnails.len()
    );
}

/// An audio part of a lecture: the whole-length audio job of a chunked lecture.
fn audio_part(secs: u32) -> (tempfile::TempDir, std::path::PathBuf, TranscodeJob) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mp4");
    make_source(&src, None, true, secs, "mp4mux");
    let mut audio = job(facts(0, 0, (30, 1), secs as f64, false, true), vec![]);
    audio.part = JobPart::Audio;
    (dir, src, audio)
}

#[test]
fn an_audio_part_hands_over_its_segments_as_they_are_finished() {
    let (dir, src, audio) = audio_part(300);
    let mut handed = Vec::new();
    let out = transcode(
        &audio,
        &src,
        &dir.path().join("out"),
        watchdog(60),
        &Default::default(),
        |p| {
            if let Some(finished) = p.audio_finished {
                handed.push((p.fraction, finished));
            }
        },
    )
    .unwrap();
    let all = out.audio.expect("an audio rendition").segments;
    // 300 s in segments of whole AAC frames just under 6 s: 50 and a short one.
    assert_eq!(all.len(), 51, "{all:?}");
    assert!(handed.len() >= 3, "handed over {} times", handed.len());
    // The first come early, long before the end; each list holds every segment so far,
    // exactly as the final measure has them.
    assert!(
        handed[0].0 < 0.5,
        "first handed over at {:.2} of the run",
        handed[0].0
    );
    let mut before = 0;
    for (_, finished) in &handed {
        assert!(finished.len() > before);
        before = finished.len();
        assert_eq!(finished[..], all[..finished.len()]);
    }
    assert!(
        before >= all.len() - 2,
        "{before} of {} handed over",
        all.len()
    );
}

/// A file store and the embedded queue under `dir`, with `jobs` (and their sources,
/// under their `source_key`) published as ingest publishes them.
async fn queued(dir: &Path, jobs: &[(&TranscodeJob, &Path)]) -> (SharedStore, SharedQueue) {
    let store =
        lectern_seams::storage::open_storage(&format!("file://{}", dir.join("store").display()))
            .await
            .unwrap();
    let url = format!("sqlite://{}", dir.join("queue.db").display());
    let queue: SharedQueue = std::sync::Arc::new(
        EmbeddedQueue::open(&url, EmbeddedQueue::LEASE)
            .await
            .unwrap(),
    );
    for (job, source) in jobs {
        store.put_file(&job.source_key, source).await.unwrap();
        queue
            .publish(Topic::for_job(job), serde_json::to_vec(job).unwrap())
            .await
            .unwrap();
    }
    (store, queue)
}

/// The `lectern` binary the worker starts its fenced children from: built beside this
/// test (`cargo build --workspace --all-targets`, or nextest with the workspace).
fn lectern_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("lectern");
    assert!(
        bin.exists(),
        "build the lectern binary first: {} is missing",
        bin.display()
    );
    bin
}

/// One worker on `store` and `queue`; send true to stop it.
fn start_worker(
    dir: &Path,
    store: &SharedStore,
    queue: &SharedQueue,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let config = WorkerConfig {
        scratch_dir: dir.join("scratch"),
        max_attempts: 1,
        retry_base: Duration::from_secs(1),
        stall_timeout: Duration::from_secs(60),
        job_time_base: Duration::from_secs(300),
        job_time_per_source_sec: 1.0,
        shutdown_grace: Duration::from_secs(1),
        max_gap: Duration::from_secs(600),
        fence: lectern_gate::fence::Fence::new(lectern_binary(), Default::default()),
        ocr: lectern_transcoder::screen::Engine::find(),
    };
    (
        stop,
        tokio::spawn(
            Worker {
                store: store.clone(),
                queue: queue.clone(),
                config,
                shutdown,
            }
            .run(),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stores_and_reports_an_audio_part_as_it_grows() {
    let (dir, src, mut audio) = audio_part(300);
    audio.source_key = "sources/s".into();
    let (store, queue) = queued(dir.path(), &[(&audio, &src)]).await;
    let (stop, worker) = start_worker(dir.path(), &store, &queue);

    let mut events = queue.consumer(Topic::Events).await.unwrap();
    let mut partials = Vec::new();
    let last = loop {
        let delivery = tokio::time::timeout(Duration::from_secs(120), events.next())
            .await
            .expect("an event in time")
            .unwrap();
        let event: JobEvent = serde_json::from_slice(&delivery.payload).unwrap();
        delivery.ack().await.unwrap();
        let JobEvent::PartStored { report, .. } = event else {
            panic!("not a part: {event:?}")
        };
        assert_eq!(report.key, "audio");
        if !report.partial {
            break report;
        }
        // What a partial report lists is stored already, as listed.
        for s in &report.renditions[0].segments {
            let key = format!("assets/a/audio/{}", lectern_packager::segment_name(s.index));
            assert_eq!(
                store.head(&key).await.map(|m| m.size).ok(),
                Some(s.bytes),
                "{key}"
            );
        }
        partials.push(report);
    };
    stop.send(true).unwrap();
    worker.await.unwrap();

    let all = &last.renditions[0].segments;
    assert_eq!(all.len(), 51);
    assert!(
        !partials.is_empty(),
        "no partial report came before the final one"
    );
    let mut before = 0;
    for p in &partials {
        let listed = &p.renditions[0].segments;
        assert!(
            listed.len() > before && listed.len() < all.len(),
            "{} after {before}",
            listed.len()
        );
        before = listed.len();
        assert_eq!(listed[..], all[..listed.len()]);
    }
    for s in all {
        let key = format!("assets/a/audio/{}", lectern_packager::segment_name(s.index));
        assert_eq!(store.head(&key).await.unwrap().size, s.bytes, "{key}");
    }
    assert!(
        store.head("assets/a/parts/audio.json").await.is_ok(),
        "the final report is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_takes_an_audio_job_beside_its_video_job() {
    let (dir, audio_src, mut audio) = audio_part(300);
    let video_src = dir.path().join("video.mp4");
    make_source(&video_src, Some((640, 360, "30/1")), false, 120, "mp4mux");
    audio.source_key = "sources/audio".into();
    let mut video = job(
        facts(640, 360, (30, 1), 120.0, true, false),
        vec![rung("v360", 640, 360, 800), rung("v180", 320, 180, 300)],
    );
    video.source_key = "sources/video".into();
    video.asset_id = AssetId::new();
    video.output_prefix = "assets/b".into();
    // The video job is first in the queue.
    let (store, queue) = queued(dir.path(), &[(&video, &video_src), (&audio, &audio_src)]).await;
    let (stop, worker) = start_worker(dir.path(), &store, &queue);

    let mut events = queue.consumer(Topic::Events).await.unwrap();
    // What came in: "audio stored" for every report of the audio part (its partial
    // reports start with its first segment), "video ready" for the video job.
    let mut order = Vec::new();
    while !order.contains(&"audio done") || !order.contains(&"video ready") {
        let delivery = tokio::time::timeout(Duration::from_secs(300), events.next())
            .await
            .expect("an event in time")
            .unwrap();
        let event: JobEvent = serde_json::from_slice(&delivery.payload).unwrap();
        delivery.ack().await.unwrap();
        match event {
            JobEvent::PartStored { report, .. } => order.push(if report.partial {
                "audio stored"
            } else {
                "audio done"
            }),
            JobEvent::Ready { .. } => order.push("video ready"),
            JobEvent::Failed { reason, .. } => panic!("a job failed: {reason}"),
            _ => {}
        }
    }
    stop.send(true).unwrap();
    worker.await.unwrap();
    // One worker, video first in the queue: audio segments were stored while the video
    // job ran. (Which of the two finishes first depends on the machine's load; a worker
    // with one lane would report no audio before the video is ready.)
    let video_ready = order.iter().position(|e| *e == "video ready").unwrap();
    assert!(
        order[..video_ready].iter().any(|e| e.starts_with("audio")),
        "no audio stored before the video was ready: {order:?}"
    );
}
